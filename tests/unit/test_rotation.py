"""The rotation steps and the sweep's decisions, against in-memory fakes of the store, Zus and the vendor."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import pytest
from fakes import FakeClock, FakeMetrics, FakeRotationStore, FakeVerifier, FakeZusAdmin

from zus_m2m import errors
from zus_m2m.aws.secrets import managed_tags
from zus_m2m.credentials import ClientCredentials
from zus_m2m.ports import AWSCURRENT, AWSPENDING, AWSPREVIOUS, CachedToken
from zus_m2m.rotation import STEPS, Checkpoints, RotationPolicy, Rotator

STAGE = "test"
CLIENT = "billing"
SECRET = f"zus-m2m/{STAGE}/{CLIENT}"
ADMIN = "zus-m2m-admin"
ADMIN_SECRET = f"zus-m2m/{STAGE}/{ADMIN}"
FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:rotation"


@dataclass
class ScriptedVerifier(FakeVerifier):
    """FakeVerifier that refuses the next ``refusals`` requests (a secret still propagating)."""

    refusals: int = 0
    attempts: list[str] = field(default_factory=list)

    def issue_with(self, client: str, credentials: ClientCredentials) -> CachedToken:
        self.attempts.append(client)
        if self.refusals > 0:
            self.refusals -= 1
            raise errors.ZusInvalidClient("token request", 401, "invalid_client")
        return super().issue_with(client, credentials)


class World:
    def __init__(self) -> None:
        self.clock = FakeClock()
        self.zus = FakeZusAdmin(clock=self.clock)
        self.store = FakeRotationStore(clock=self.clock)
        self.verifier = ScriptedVerifier(self.zus)
        self.metrics = FakeMetrics()
        self.checkpoints: list[str] = []
        self.admin_tokens_taken = 0
        self.policy = RotationPolicy(
            stage=STAGE, admin_secret_name=ADMIN_SECRET, admin_client_name=ADMIN, rotation_function_arn=FUNCTION_ARN
        )
        self.app_ids: dict[str, str] = {}
        self.add_client(CLIENT)

    def secret_id(self, name: str) -> str:
        return ADMIN_SECRET if name == ADMIN else f"zus-m2m/{STAGE}/{name}"

    def add_client(self, name: str, *, tags: dict[str, str] | None = None) -> ClientCredentials:
        created = self.zus.add_client(name, "role-builder-admin", int(self.clock()))
        credentials = ClientCredentials(
            name, created.app_client.id, created.app_client.client_id, created.client_secret
        )
        self.app_ids[name] = created.app_client.id
        self.store.create(
            self.secret_id(name),
            credentials,
            kms_key_id="",
            tags=managed_tags(STAGE, name) if tags is None else tags,
            request_token=f"{name}-v1",
        )
        return credentials

    def admin_token(self) -> str:
        self.admin_tokens_taken += 1
        return self.zus.admin_token

    def rotator(self, **policy: float) -> Rotator:
        return Rotator(
            self.store,
            self.zus,
            self.verifier,
            admin_token=self.admin_token,
            secret_id=self.secret_id,
            policy=RotationPolicy(**{**self.policy.__dict__, **policy}),
            metrics=self.metrics,
            clock=self.clock,
            sleep=self.clock.sleep,
            checkpoint=self.checkpoints.append,
        )

    def start(self, name: str = CLIENT) -> str:
        self.store.start_rotation(self.secret_id(name), FUNCTION_ARN)
        token = self.store.pending_version(self.secret_id(name))
        assert token is not None
        return token

    def rotate(self, name: str = CLIENT) -> str:
        token = self.start(name)
        rotator = self.rotator()
        for step in STEPS:
            rotator.run_step(step, self.secret_id(name), token)
        return token

    def stored(self, stage: str, name: str = CLIENT) -> ClientCredentials | None:
        return self.store.read(self.secret_id(name), stage)

    def zus_secret(self, name: str = CLIENT) -> str:
        return self.zus.secret_of(self.app_ids[name])

    def stages(self, name: str = CLIENT) -> dict[str, list[str]]:
        description = self.store.describe(self.secret_id(name))
        assert description is not None
        return {version: sorted(stages) for version, stages in description.versions.items() if stages}

    def rotate_calls(self) -> int:
        return self.zus.calls.count("rotate secret")


@pytest.fixture
def world() -> World:
    return World()


# --- the four steps ---------------------------------------------------------------------------------


def test_the_four_steps_in_order_rotate_the_secret(world: World) -> None:
    old = world.stored(AWSCURRENT)
    token = world.start()

    outcomes = [world.rotator().run_step(step, SECRET, token) for step in STEPS]

    assert outcomes == ["created", "nothing-to-set", "tested", "finished"]
    assert world.stages() == {"billing-v1": [AWSPREVIOUS], token: [AWSCURRENT]}
    current = world.stored(AWSCURRENT)
    assert current is not None
    assert old is not None
    assert current.client_secret == world.zus_secret() != old.client_secret
    assert current.app_client_id == old.app_client_id
    assert current.client_id == old.client_id
    assert world.rotate_calls() == 1
    assert world.verifier.issued == [CLIENT]  # the test's token went to the cache
    assert world.checkpoints == [
        Checkpoints.ZUS_ROTATED,
        Checkpoints.PENDING_STORED,
        Checkpoints.TESTED,
        Checkpoints.CURRENT_MOVED,
        Checkpoints.PENDING_REMOVED,
    ]
    assert world.metrics.counts["RotationStep"] == 4
    assert world.metrics.counts["RotationFailed"] == 0


def test_each_step_run_twice_does_its_work_once(world: World) -> None:
    token = world.start()
    rotator = world.rotator()

    outcomes = [(rotator.run_step(step, SECRET, token), rotator.run_step(step, SECRET, token)) for step in STEPS]

    assert outcomes == [
        ("created", "already-created"),
        ("nothing-to-set", "nothing-to-set"),
        ("tested", "tested"),
        ("finished", "already-current"),
    ]
    assert world.rotate_calls() == 1
    assert world.stored(AWSCURRENT).client_secret == world.zus_secret()  # type: ignore[union-attr]
    assert world.stages() == {"billing-v1": [AWSPREVIOUS], token: [AWSCURRENT]}


def test_a_finished_rotations_steps_return_quietly(world: World) -> None:
    token = world.rotate()
    calls = list(world.store.calls)

    outcomes = [world.rotator().run_step(step, SECRET, token) for step in STEPS]

    assert outcomes == ["already-current"] * 4
    assert world.store.calls == calls
    assert world.rotate_calls() == 1


def test_a_stale_token_is_refused_and_changes_nothing(world: World) -> None:
    first = world.rotate()
    second = world.start()
    rotator = world.rotator()

    with pytest.raises(errors.ResourceConflict, match="stale"):
        rotator.run_step("createSecret", SECRET, "billing-v1")  # now AWSPREVIOUS
    with pytest.raises(errors.ResourceConflict, match="not a version"):
        rotator.run_step("createSecret", SECRET, "no-such-version")

    assert rotator.run_step("finishSecret", SECRET, first) == "already-current"
    assert world.rotate_calls() == 1
    assert world.store.pending_version(SECRET) == second
    assert world.metrics.counts["RotationFailed"] == 2


def test_a_superseded_pending_token_is_refused(world: World) -> None:
    # Given a rotation whose AWSPENDING label was dropped, and a newer rotation started
    abandoned = world.start()
    world.store.remove_stage(SECRET, AWSPENDING, abandoned)
    newer = world.start()

    with pytest.raises(errors.ResourceConflict, match="stale"):
        world.rotator().run_step("createSecret", SECRET, abandoned)

    assert world.rotate_calls() == 0
    assert world.store.pending_version(SECRET) == newer


@pytest.mark.parametrize(
    "tags",
    [
        {},
        {"zus-m2m:managed": "false", "zus-m2m:stage": STAGE, "zus-m2m:client": "other"},
        managed_tags("prod", "other"),
        managed_tags(STAGE, "someone-else"),  # its client's secret is another secret
    ],
)
def test_a_secret_that_is_not_ours_is_refused(world: World, tags: dict[str, str]) -> None:
    world.add_client("other", tags=tags)
    token = world.start("other")

    with pytest.raises(errors.ResourceConflict, match="not managed by zus-m2m"):
        world.rotator().run_step("createSecret", world.secret_id("other"), token)

    assert world.rotate_calls() == 0


def test_rotation_not_enabled_and_none_in_progress_is_refused(world: World) -> None:
    world.rotate()
    world.store.secrets[SECRET].rotation_arn = None  # an operator turned rotation off

    with pytest.raises(errors.ResourceConflict, match="not enabled"):
        world.rotator().run_step("createSecret", SECRET, "billing-v1")


def test_rotation_not_reported_enabled_is_accepted_while_it_is_in_progress(world: World) -> None:
    # moto reports RotationEnabled false unless rotation rules were set
    token = world.start()
    world.store.secrets[SECRET].rotation_arn = None

    assert world.rotator().run_step("createSecret", SECRET, token) == "created"


def test_a_secret_scheduled_for_deletion_is_refused(world: World) -> None:
    token = world.start()
    world.store.secrets[SECRET].deleted = True

    with pytest.raises(errors.ResourceNotFound):
        world.rotator().run_step("createSecret", SECRET, token)


def test_an_unknown_step_is_refused(world: World) -> None:
    with pytest.raises(errors.InvalidRequest, match="unknown rotation step"):
        world.rotator().run_step("deleteSecret", SECRET, "billing-v1")


def test_the_bootstrap_admin_rotates_with_a_token_taken_before_its_secret_changes(world: World) -> None:
    world.add_client(ADMIN, tags={})  # created by an operator, without our tags
    taken_before_rotation: list[int] = []
    rotate = world.zus.rotate_secret

    def rotate_and_note(app_client_id: str, bearer: str):
        taken_before_rotation.append(world.admin_tokens_taken)
        return rotate(app_client_id, bearer)

    world.zus.rotate_secret = rotate_and_note  # type: ignore[method-assign]

    world.rotate(ADMIN)

    assert taken_before_rotation == [1]
    assert world.stored(AWSCURRENT, ADMIN).client_secret == world.zus_secret(ADMIN)  # type: ignore[union-attr]


def test_an_admin_secret_without_app_client_id_is_refused_before_zus_is_asked(world: World) -> None:
    credentials = world.add_client(ADMIN, tags={})
    version = world.store.secrets[ADMIN_SECRET].versions[f"{ADMIN}-v1"]
    world.store.secrets[ADMIN_SECRET].versions[f"{ADMIN}-v1"] = (
        ClientCredentials(ADMIN, "", credentials.client_id, credentials.client_secret),
        version[1],
    )
    token = world.start(ADMIN)

    with pytest.raises(errors.ConfigurationError, match="lacks appClientId"):
        world.rotator().run_step("createSecret", ADMIN_SECRET, token)

    assert world.rotate_calls() == 0


def test_a_crash_after_zus_rotated_is_repaired_by_the_retry(world: World) -> None:
    token = world.start()
    rotator = world.rotator()
    rotator.checkpoint = crash_at(Checkpoints.ZUS_ROTATED)

    with pytest.raises(Crash):
        rotator.run_step("createSecret", SECRET, token)
    lost = world.zus_secret()
    assert world.store.read_version(SECRET, token) is None

    rotator.checkpoint = lambda _: None
    for step in STEPS:
        rotator.run_step(step, SECRET, token)

    assert world.rotate_calls() == 2
    assert world.stored(AWSCURRENT).client_secret == world.zus_secret() != lost  # type: ignore[union-attr]


def test_a_crash_after_the_stage_move_leaves_the_retry_to_remove_the_pending_label(world: World) -> None:
    token = world.start()
    rotator = world.rotator()
    for step in STEPS[:3]:
        rotator.run_step(step, SECRET, token)
    rotator.checkpoint = crash_at(Checkpoints.CURRENT_MOVED)

    with pytest.raises(Crash):
        rotator.run_step("finishSecret", SECRET, token)
    assert world.stages()[token] == [AWSCURRENT, AWSPENDING]

    rotator.checkpoint = lambda _: None
    assert rotator.run_step("finishSecret", SECRET, token) == "pending-label-removed"
    assert world.stages() == {"billing-v1": [AWSPREVIOUS], token: [AWSCURRENT]}


def test_test_secret_waits_for_a_propagating_secret(world: World) -> None:
    token = world.start()
    rotator = world.rotator()
    rotator.run_step("createSecret", SECRET, token)
    world.verifier.refusals = 4
    started = world.clock()

    assert rotator.run_step("testSecret", SECRET, token) == "tested"

    assert world.clock() - started == 1 + 2 + 4 + 8
    assert world.verifier.issued == [CLIENT]


def test_test_secret_gives_up_after_a_minute(world: World) -> None:
    token = world.start()
    rotator = world.rotator()
    rotator.run_step("createSecret", SECRET, token)
    world.verifier.refusals = 1000
    started = world.clock()

    with pytest.raises(errors.ZusInvalidClient):
        rotator.run_step("testSecret", SECRET, token)

    assert 50 <= world.clock() - started <= 60
    assert world.metrics.counts["RotationFailed"] == 1
    assert world.stages()[token] == [AWSPENDING]


def test_a_value_less_pending_version_is_never_tested_nor_promoted(world: World) -> None:
    # Secrets Manager's test of a rotation configuration invokes testSecret alone
    token = world.start()
    rotator = world.rotator()

    assert rotator.run_step("testSecret", SECRET, token) == "nothing-to-test"
    with pytest.raises(errors.ResourceConflict, match="holds no value"):
        rotator.run_step("finishSecret", SECRET, token)

    assert world.stages()["billing-v1"] == [AWSCURRENT]
    assert world.verifier.attempts == []


def test_no_log_line_carries_a_secret(world: World, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    old = world.stored(AWSCURRENT)
    world.rotate()
    world.verifier.refusals = 1000
    token = world.start()
    rotator = world.rotator()
    rotator.run_step("createSecret", SECRET, token)
    with pytest.raises(errors.ZusInvalidClient):
        rotator.run_step("testSecret", SECRET, token)

    text = "\n".join(f"{record.getMessage()} {record.__dict__}" for record in caplog.records)
    assert "rotation step done" in text
    for secret in (old.client_secret, world.stored(AWSCURRENT).client_secret, world.zus_secret()):  # type: ignore[union-attr]
        assert secret not in text


# --- the sweep ----------------------------------------------------------------------------------------


def test_the_sweep_leaves_a_healthy_client_alone_and_caches_its_token(world: World) -> None:
    report = world.rotator().sweep()

    assert report["secrets"] == {SECRET: "healthy", ADMIN_SECRET: "absent"}
    assert world.store.rotations_started == []
    assert world.verifier.issued == [CLIENT]


def test_the_sweep_starts_a_due_rotation_with_the_rotation_function(world: World) -> None:
    world.clock.now += 30 * 86400

    report = world.rotator().sweep()

    assert report["secrets"][SECRET] == "rotation-started"
    assert world.store.rotations_started == [(SECRET, FUNCTION_ARN)]


def test_the_sweep_visits_the_bootstrap_admin(world: World) -> None:
    world.add_client(ADMIN, tags={})
    world.clock.now += 30 * 86400

    report = world.rotator().sweep()

    assert report["secrets"] == {SECRET: "rotation-started", ADMIN_SECRET: "rotation-started"}
    assert report["counts"] == {"rotation-started": 2}


def test_the_sweep_never_starts_a_rotation_in_progress(world: World) -> None:
    world.clock.now += 30 * 86400
    token = world.start()
    world.clock.now += 60

    report = world.rotator().sweep()

    assert report["secrets"][SECRET] == "in-progress"
    assert world.store.pending_version(SECRET) == token
    assert len(world.store.rotations_started) == 1


def test_the_sweep_rolls_a_stuck_rotation_forward_when_its_secret_works(world: World) -> None:
    token = world.start()
    world.rotator().run_step("createSecret", SECRET, token)  # ... and the rotation died here
    world.clock.now += 16 * 60

    report = world.rotator().sweep()

    assert report["secrets"][SECRET] == "rolled-forward"
    assert world.stages() == {"billing-v1": [AWSPREVIOUS], token: [AWSCURRENT]}
    assert world.stored(AWSCURRENT).client_secret == world.zus_secret()  # type: ignore[union-attr]


def test_the_sweep_restarts_a_rotation_that_died_before_storing_anything(world: World) -> None:
    stuck = world.start()
    world.clock.now += 16 * 60

    report = world.rotator().sweep()

    assert report["secrets"][SECRET] == "rotation-restarted"
    restarted = world.store.pending_version(SECRET)
    assert restarted not in (None, stuck)
    assert stuck not in world.stages()  # its label is gone


def test_the_sweep_drops_a_stale_pending_secret_zus_refuses_while_the_current_works(world: World) -> None:
    token = world.start()
    current = world.stored(AWSCURRENT)
    assert current is not None
    world.store.put_pending(SECRET, current.with_secret("never-held-by-zus"), token)
    world.clock.now += 16 * 60

    report = world.rotator().sweep()

    assert report["secrets"][SECRET] == "pending-dropped"
    assert world.stages() == {"billing-v1": [AWSCURRENT]}


def test_the_sweep_starts_a_recovery_rotation_for_a_lost_secret(world: World) -> None:
    world.zus.rotate_secret(world.app_ids[CLIENT], world.zus.admin_token)  # the new secret was lost

    report = world.rotator().sweep()

    assert report["secrets"][SECRET] == "recovery-started"
    assert world.metrics.counts["SecretRecoveryStarted"] == 1
    token = world.store.pending_version(SECRET)
    assert token is not None
    rotator = world.rotator()
    for step in STEPS:
        rotator.run_step(step, SECRET, token)
    assert world.stored(AWSCURRENT).client_secret == world.zus_secret()  # type: ignore[union-attr]


def test_the_sweep_recovers_when_only_the_previous_secret_still_works(world: World) -> None:
    world.rotate()
    previous = world.stored(AWSPREVIOUS)
    assert previous is not None
    world.zus.clients[world.app_ids[CLIENT]] = (world.zus.clients[world.app_ids[CLIENT]][0], previous.client_secret)

    report = world.rotator().sweep()

    assert report["secrets"][SECRET] == "recovery-started"
    assert world.metrics.counts["SecretRecoveryStarted"] == 1


def test_the_sweep_recovers_a_stuck_rotation_whose_every_secret_is_refused(world: World) -> None:
    token = world.start()
    current = world.stored(AWSCURRENT)
    assert current is not None
    world.store.put_pending(SECRET, current.with_secret("never-held-by-zus"), token)
    world.zus.rotate_secret(world.app_ids[CLIENT], world.zus.admin_token)
    world.clock.now += 16 * 60

    report = world.rotator().sweep()

    assert report["secrets"][SECRET] == "recovery-started"
    assert world.store.pending_version(SECRET) not in (None, token)


def test_zus_down_during_the_sweep_fails_that_client_only(world: World) -> None:
    world.add_client("other")
    world.clock.now += 30 * 86400
    world.verifier.refusals = 0
    failing = world.verifier.issue_with

    def down_for_billing(client: str, credentials: ClientCredentials) -> CachedToken:
        if client == CLIENT:
            raise errors.ZusUnavailable("token request", 503, "Service Unavailable")
        return failing(client, credentials)

    world.verifier.issue_with = down_for_billing  # type: ignore[method-assign]

    report = world.rotator().sweep()

    assert report["secrets"] == {SECRET: "failed", world.secret_id("other"): "rotation-started", ADMIN_SECRET: "absent"}
    assert world.metrics.counts["SecretRecoveryStarted"] == 0
    assert world.store.rotations_started == [(world.secret_id("other"), FUNCTION_ARN)]


class Crash(Exception):
    pass


def crash_at(name: str):
    def checkpoint(reached: str) -> None:
        if reached == name:
            raise Crash(name)

    return checkpoint
