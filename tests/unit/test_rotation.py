"""The rotation steps' and the sweep's decisions, against in-memory fakes of the store, Zus and the vendor."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest
from fake_deployment import FakeDeployment
from fakes import ADMIN, NAMING, Crash, crash_at

from zus_m2m import errors
from zus_m2m.admin_values import AppClientSecret, RotationFailure
from zus_m2m.ports import Runtime
from zus_m2m.rotation.policy import RotationPolicy
from zus_m2m.rotation.repair import RotationRepair
from zus_m2m.rotation.steps import STEPS, RotationCheckpoints, RotationSteps
from zus_m2m.rotation.sweep import RotationCheck, RotationSweep
from zus_m2m.values import AWSCURRENT, AWSPENDING, AWSPREVIOUS, CachedToken, ClientCredentials, managed_tags

STAGE = NAMING.stage
CLIENT = "billing"
SECRET = NAMING.secret_id(CLIENT)
ADMIN_SECRET = NAMING.admin_secret_name
FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:rotation"


class World(FakeDeployment):
    def __init__(self) -> None:
        super().__init__()
        self.checkpoints: list[str] = []
        self.policy = RotationPolicy(naming=self.naming, rotation_function_arn=FUNCTION_ARN)
        self.app_ids: dict[str, str] = {}
        self.add_client(CLIENT)

    def secret_id(self, name: str) -> str:
        return self.naming.secret_id(name)

    def add_client(self, name: str, *, tags: dict[str, str] | None = None) -> ClientCredentials:
        credentials = super().add_client(name, tags=tags)
        self.app_ids[name] = credentials.app_client_id
        return credentials

    def steps(self) -> RotationSteps:
        runtime = Runtime(self.metrics, self.clock, self.clock.sleep, self.checkpoints.append)
        return RotationSteps(self.secrets, self.admin, self.issuer, self.failures, self.policy, runtime)

    def repair(self) -> RotationRepair:
        return RotationRepair(
            self.secrets, self.steps(), self.issuer, self.failures, self.policy, Runtime(self.metrics, clock=self.clock)
        )

    def sweep(self) -> RotationSweep:
        return RotationSweep(self.secrets, self.repair(), self.policy, self.metrics, self.table, clock=self.clock)

    def start(self, name: str = CLIENT) -> str:
        self.secrets.start_rotation(self.secret_id(name), FUNCTION_ARN)
        version = self.secrets.pending_version(self.secret_id(name))
        assert version is not None
        return version

    def rotate(self, name: str = CLIENT) -> str:
        version = self.start(name)
        steps = self.steps()
        for step in STEPS:
            steps.run(step, self.secret_id(name), version)
        return version

    def created(self) -> tuple[RotationSteps, str]:
        """A rotation whose createSecret ran: the steps of its container, and its version."""
        version = self.start()
        steps = self.steps()
        steps.run("createSecret", SECRET, version)
        return steps, version

    def store_a_pending_secret_zus_never_held(self, version: str) -> None:
        """createSecret's value, but Zus never held it (a rotation whose new secret Zus lost)."""
        current = self.stored(AWSCURRENT)
        assert current is not None
        self.secrets.put_pending(SECRET, current.with_secret("never-held-by-zus"), version)

    def stored(self, stage: str, name: str = CLIENT) -> ClientCredentials | None:
        return self.secrets.read(self.secret_id(name), stage)

    def zus_secret(self, name: str = CLIENT) -> str:
        return self.zus.secret_of(self.app_ids[name])

    def stages(self, name: str = CLIENT) -> dict[str, list[str]]:
        description = self.secrets.describe(self.secret_id(name))
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
    version = world.start()

    outcomes = [world.steps().run(step, SECRET, version) for step in STEPS]

    assert outcomes == ["created", "nothing-to-set", "tested", "finished"]
    assert world.stages() == {"billing-v1": [AWSPREVIOUS], version: [AWSCURRENT]}
    current = world.stored(AWSCURRENT)
    assert current is not None
    assert old is not None
    assert current.client_secret == world.zus_secret() != old.client_secret
    assert current.app_client_id == old.app_client_id
    assert current.client_id == old.client_id
    assert world.rotate_calls() == 1
    assert world.issuer.issued == [CLIENT]  # the test's token went to the cache
    assert world.checkpoints == [
        RotationCheckpoints.ZUS_ROTATED,
        RotationCheckpoints.PENDING_STORED,
        RotationCheckpoints.TESTED,
        RotationCheckpoints.CURRENT_MOVED,
        RotationCheckpoints.PENDING_REMOVED,
    ]
    assert world.metrics.counts["RotationStep"] == 4
    assert world.metrics.counts["RotationFailed"] == 0


def test_each_step_run_twice_does_its_work_once(world: World) -> None:
    version = world.start()
    steps = world.steps()

    outcomes = [(steps.run(step, SECRET, version), steps.run(step, SECRET, version)) for step in STEPS]

    assert outcomes == [
        ("created", "already-created"),
        ("nothing-to-set", "nothing-to-set"),
        ("tested", "tested"),
        ("finished", "already-current"),
    ]
    assert world.rotate_calls() == 1
    assert world.stored(AWSCURRENT).client_secret == world.zus_secret()  # type: ignore[union-attr]
    assert world.stages() == {"billing-v1": [AWSPREVIOUS], version: [AWSCURRENT]}


def test_a_finished_rotations_steps_return_quietly(world: World) -> None:
    version = world.rotate()
    calls = list(world.secrets.calls)

    outcomes = [world.steps().run(step, SECRET, version) for step in STEPS]

    assert outcomes == ["already-current"] * 4
    assert world.secrets.calls == calls
    assert world.rotate_calls() == 1


def test_a_stale_version_is_refused_and_changes_nothing(world: World) -> None:
    first = world.rotate()
    second = world.start()
    steps = world.steps()

    with pytest.raises(errors.ResourceConflict, match="stale"):
        steps.run("createSecret", SECRET, "billing-v1")  # now AWSPREVIOUS
    with pytest.raises(errors.ResourceConflict, match="not a version"):
        steps.run("createSecret", SECRET, "no-such-version")

    assert steps.run("finishSecret", SECRET, first) == "already-current"
    assert world.rotate_calls() == 1
    assert world.secrets.pending_version(SECRET) == second
    assert world.metrics.counts["RotationFailed"] == 2


def test_a_superseded_pending_version_is_refused(world: World) -> None:
    # Given a rotation whose AWSPENDING label was dropped, and a newer rotation started
    abandoned = world.start()
    world.secrets.remove_stage(SECRET, AWSPENDING, abandoned)
    newer = world.start()

    with pytest.raises(errors.ResourceConflict, match="stale"):
        world.steps().run("createSecret", SECRET, abandoned)

    assert world.rotate_calls() == 0
    assert world.secrets.pending_version(SECRET) == newer


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
    version = world.start("other")

    with pytest.raises(errors.ResourceConflict, match="not managed by zus-m2m"):
        world.steps().run("createSecret", world.secret_id("other"), version)

    assert world.rotate_calls() == 0


def test_rotation_not_enabled_and_none_in_progress_is_refused(world: World) -> None:
    world.rotate()
    world.secrets.secrets[SECRET].rotation_arn = None  # an operator turned rotation off

    with pytest.raises(errors.ResourceConflict, match="not enabled"):
        world.steps().run("createSecret", SECRET, "billing-v1")


def test_rotation_not_reported_enabled_is_accepted_while_it_is_in_progress(world: World) -> None:
    # An operator cancelled it mid-way: CancelRotateSecret turns RotationEnabled off, leaves AWSPENDING
    version = world.start()
    world.secrets.secrets[SECRET].rotation_arn = None

    assert world.steps().run("createSecret", SECRET, version) == "created"


def test_a_secret_scheduled_for_deletion_is_refused(world: World) -> None:
    version = world.start()
    world.secrets.secrets[SECRET].deleted = True

    with pytest.raises(errors.ResourceNotFound):
        world.steps().run("createSecret", SECRET, version)


def test_an_unknown_step_is_refused(world: World) -> None:
    with pytest.raises(errors.InvalidRequest, match="unknown rotation step"):
        world.steps().run("deleteSecret", SECRET, "billing-v1")


def test_the_bootstrap_admin_rotates_with_a_token_taken_before_its_secret_changes(world: World) -> None:
    world.add_client(ADMIN, tags={})  # created by an operator, without our tags
    taken_before_rotation: list[int] = []
    rotate = world.zus.rotate_secret

    def rotate_and_note(app_client_id: str, bearer: str) -> AppClientSecret:
        taken_before_rotation.append(world.admin_tokens.taken)
        return rotate(app_client_id, bearer)

    world.zus.rotate_secret = rotate_and_note  # type: ignore[method-assign]

    world.rotate(ADMIN)

    assert taken_before_rotation == [1]
    assert world.stored(AWSCURRENT, ADMIN).client_secret == world.zus_secret(ADMIN)  # type: ignore[union-attr]


def test_an_admin_secret_without_app_client_id_is_refused_before_zus_is_asked(world: World) -> None:
    credentials = world.add_client(ADMIN, tags={})
    _, stages = world.secrets.secrets[ADMIN_SECRET].versions[f"{ADMIN}-v1"]
    world.secrets.secrets[ADMIN_SECRET].versions[f"{ADMIN}-v1"] = (
        ClientCredentials(ADMIN, "", credentials.client_id, credentials.client_secret),
        stages,
    )
    version = world.start(ADMIN)

    with pytest.raises(errors.ConfigurationError, match="lacks appClientId"):
        world.steps().run("createSecret", ADMIN_SECRET, version)

    assert world.rotate_calls() == 0


def test_a_crash_after_zus_rotated_is_repaired_by_the_retry(world: World) -> None:
    version = world.start()
    steps = world.steps()
    steps.runtime = replace(steps.runtime, checkpoint=crash_at(RotationCheckpoints.ZUS_ROTATED))

    with pytest.raises(Crash):
        steps.run("createSecret", SECRET, version)
    lost = world.zus_secret()
    assert world.secrets.read_version(SECRET, version) is None

    steps.runtime = replace(steps.runtime, checkpoint=world.checkpoints.append)
    for step in STEPS:
        steps.run(step, SECRET, version)

    assert world.rotate_calls() == 2
    assert world.stored(AWSCURRENT).client_secret == world.zus_secret() != lost  # type: ignore[union-attr]


class FlakyStore:
    """The fake store whose pending writes fail ``failures`` times first (a throttled Secrets Manager)."""

    def __init__(self, store: object, failures: int) -> None:
        self._store, self.failures = store, failures

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)

    def put_pending(self, *arguments: object) -> None:
        if self.failures:
            self.failures -= 1
            raise errors.StoreUnavailable("storing the pending client secret failed: ThrottlingException")
        self._store.put_pending(*arguments)  # type: ignore[attr-defined]


def test_a_failed_pending_write_after_zus_rotated_is_tried_again_within_the_step(world: World) -> None:
    """The new secret exists only in memory until it is stored: createSecret keeps it, and Zus is asked
    to rotate once."""
    version = world.start()
    steps = world.steps()
    steps.secrets = FlakyStore(world.secrets, failures=3)  # type: ignore[assignment]

    assert steps.run("createSecret", SECRET, version) == "created"

    assert world.rotate_calls() == 1
    assert world.stored(AWSPENDING).client_secret == world.zus_secret()  # type: ignore[union-attr]


def test_a_crash_after_the_stage_move_leaves_the_retry_to_remove_the_pending_label(world: World) -> None:
    version = world.start()
    steps = world.steps()
    for step in STEPS[:3]:
        steps.run(step, SECRET, version)
    steps.runtime = replace(steps.runtime, checkpoint=crash_at(RotationCheckpoints.CURRENT_MOVED))

    with pytest.raises(Crash):
        steps.run("finishSecret", SECRET, version)
    assert world.stages()[version] == [AWSCURRENT, AWSPENDING]

    steps.runtime = replace(steps.runtime, checkpoint=world.checkpoints.append)
    assert steps.run("finishSecret", SECRET, version) == "pending-label-removed"
    assert world.stages() == {"billing-v1": [AWSPREVIOUS], version: [AWSCURRENT]}


def test_test_secret_waits_for_a_propagating_secret(world: World) -> None:
    steps, version = world.created()
    world.issuer.refusals = 4
    started = world.clock()

    assert steps.run("testSecret", SECRET, version) == "tested"

    assert world.clock() - started == 1 + 2 + 4 + 8
    assert world.issuer.issued == [CLIENT]


def test_test_secret_gives_up_after_a_minute(world: World) -> None:
    steps, version = world.created()
    world.issuer.refusals = 1000
    started = world.clock()

    with pytest.raises(errors.ZusCredentialsRefused):
        steps.run("testSecret", SECRET, version)

    assert 50 <= world.clock() - started <= 60
    assert world.metrics.counts["RotationFailed"] == 1
    assert world.stages()[version] == [AWSPENDING]


def test_a_value_less_pending_version_is_never_tested_nor_promoted(world: World) -> None:
    # Secrets Manager's test of a rotation configuration invokes testSecret alone
    version = world.start()
    steps = world.steps()

    assert steps.run("testSecret", SECRET, version) == "nothing-to-test"
    with pytest.raises(errors.ResourceConflict, match="holds no value"):
        steps.run("finishSecret", SECRET, version)

    assert world.stages()["billing-v1"] == [AWSCURRENT]
    assert world.issuer.attempts == []


def test_no_log_line_carries_a_secret(world: World, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    old = world.stored(AWSCURRENT)
    world.rotate()
    world.issuer.refusals = 1000
    steps, version = world.created()
    with pytest.raises(errors.ZusCredentialsRefused):
        steps.run("testSecret", SECRET, version)

    text = "\n".join(f"{record.getMessage()} {record.__dict__}" for record in caplog.records)
    assert "rotation step done" in text
    for secret in (old.client_secret, world.stored(AWSCURRENT).client_secret, world.zus_secret()):  # type: ignore[union-attr]
        assert secret not in text


# --- a client's rotation check (the sweep's per-client work) -------------------------------------------


def test_a_check_leaves_a_healthy_client_alone_caches_its_token_and_comes_back_within_the_interval(
    world: World,
) -> None:
    check = world.sweep().check(CLIENT)

    assert check == RotationCheck("healthy", world.clock.now + world.policy.check_interval)
    assert world.secrets.rotations_started == []
    assert world.issuer.issued == [CLIENT]
    assert world.table.get(CLIENT).token is not None  # cached, with the version that minted it


def test_a_check_with_a_valid_token_of_the_current_version_costs_no_token_request(world: World) -> None:
    world.sweep().check(CLIENT)  # an idle client: its check mints one token
    world.clock.now += 1800  # the token has half an hour left

    again = world.sweep().check(CLIENT)

    assert again.outcome == "healthy"
    assert world.issuer.attempts == [CLIENT]  # the cached token proves the current version works
    assert world.metrics.counts["HealthCheckTokenReused"] == 1


def test_a_token_of_another_version_or_an_expired_one_proves_nothing(world: World) -> None:
    world.sweep().check(CLIENT)
    world.rotate()  # AWSCURRENT is another version now; the rotation's test cached a token of it
    world.table.states.clear()

    world.sweep().check(CLIENT)
    world.clock.now += 3600  # that token expired
    world.sweep().check(CLIENT)

    assert world.issuer.attempts.count(CLIENT) == 3 + 1  # three checks' tokens and the rotation's test


def test_a_check_starts_a_due_rotation_with_the_rotation_function_and_looks_again_when_it_could_be_stuck(
    world: World,
) -> None:
    world.clock.now += 30 * 86400

    check = world.sweep().check(CLIENT)

    assert check == RotationCheck("rotation-started", world.clock.now + world.policy.stuck_after)
    assert world.secrets.rotations_started == [(SECRET, FUNCTION_ARN)]


def test_a_healthy_check_comes_back_when_the_rotation_is_due_if_that_is_sooner(world: World) -> None:
    world.clock.now += 30 * 86400 - 600

    check = world.sweep().check(CLIENT)

    assert check.outcome == "healthy"
    assert check.next_check_at == world.secrets.secrets[SECRET].created + 30 * 86400


def test_the_bootstrap_admins_check_rotates_its_secret(world: World) -> None:
    world.add_client(ADMIN, tags={})
    world.clock.now += 30 * 86400

    assert world.sweep().check(ADMIN).outcome == "rotation-started"
    assert world.secrets.rotations_started == [(ADMIN_SECRET, FUNCTION_ARN)]


def test_a_client_without_a_secret_is_absent_and_looked_at_again_later(world: World) -> None:
    check = world.sweep().check("gone")

    assert check == RotationCheck("absent", world.clock.now + world.policy.check_interval)


def test_a_check_never_starts_a_rotation_in_progress(world: World) -> None:
    world.clock.now += 30 * 86400
    version = world.start()
    world.clock.now += 60

    check = world.sweep().check(CLIENT)

    assert check.outcome == "in-progress"
    assert world.secrets.pending_version(SECRET) == version
    assert len(world.secrets.rotations_started) == 1


def test_a_check_rolls_a_stuck_rotation_forward_when_its_secret_works(world: World) -> None:
    version = world.start()
    world.steps().run("createSecret", SECRET, version)  # ... and the rotation died here
    world.clock.now += 16 * 60

    check = world.sweep().check(CLIENT)

    assert check.outcome == "rolled-forward"
    assert world.stages() == {"billing-v1": [AWSPREVIOUS], version: [AWSCURRENT]}
    assert world.stored(AWSCURRENT).client_secret == world.zus_secret()  # type: ignore[union-attr]


def test_a_check_restarts_a_rotation_that_died_before_storing_anything(world: World) -> None:
    stuck = world.start()
    world.clock.now += 16 * 60

    check = world.sweep().check(CLIENT)

    assert check.outcome == "rotation-restarted"
    restarted = world.secrets.pending_version(SECRET)
    assert restarted not in (None, stuck)
    assert stuck not in world.stages()  # its label is gone


def test_a_check_restarts_a_rotation_whose_pending_secret_zus_refuses_while_the_current_works(world: World) -> None:
    version = world.start()
    world.store_a_pending_secret_zus_never_held(version)
    world.clock.now += 16 * 60

    check = world.sweep().check(CLIENT)

    assert check.outcome == "rotation-restarted"
    restarted = world.secrets.pending_version(SECRET)
    assert restarted not in (None, version)
    assert world.stages() == {"billing-v1": [AWSCURRENT], restarted: [AWSPENDING]}  # the stale one has no label


def test_a_check_starts_a_recovery_rotation_for_a_lost_secret(world: World) -> None:
    world.clock.now += world.policy.settle_seconds  # stored long ago
    world.zus.rotate_secret(world.app_ids[CLIENT], world.zus.admin_token)  # the new secret was lost

    check = world.sweep().check(CLIENT)

    assert check.outcome == "recovery-started"
    assert world.metrics.counts["SecretRecoveryStarted"] == 1
    assert world.metrics.counts["SecretChangedAtZus"] == 1  # no rotation of ours stored the refused secret
    version = world.secrets.pending_version(SECRET)
    assert version is not None
    steps = world.steps()
    for step in STEPS:
        steps.run(step, SECRET, version)
    assert world.stored(AWSCURRENT).client_secret == world.zus_secret()  # type: ignore[union-attr]


def test_a_refusal_of_a_secret_stored_moments_ago_is_recovered_but_not_called_changed_at_zus(world: World) -> None:
    world.zus.rotate_secret(world.app_ids[CLIENT], world.zus.admin_token)  # within the settling time

    check = world.sweep().check(CLIENT)

    assert check.outcome == "recovery-started"
    assert world.metrics.counts["SecretChangedAtZus"] == 0


def test_a_check_recovers_when_only_the_previous_secret_still_works(world: World) -> None:
    world.rotate()
    world.table.states.clear()  # no cached token of the current version to prove it
    previous = world.stored(AWSPREVIOUS)
    assert previous is not None
    world.zus.clients[world.app_ids[CLIENT]] = (world.zus.clients[world.app_ids[CLIENT]][0], previous.client_secret)

    check = world.sweep().check(CLIENT)

    assert check.outcome == "recovery-started"
    assert world.metrics.counts["SecretRecoveryStarted"] == 1


def test_a_check_recovers_a_stuck_rotation_whose_every_secret_is_refused(world: World) -> None:
    version = world.start()
    world.store_a_pending_secret_zus_never_held(version)
    world.zus.rotate_secret(world.app_ids[CLIENT], world.zus.admin_token)
    world.clock.now += 16 * 60

    check = world.sweep().check(CLIENT)

    assert check.outcome == "recovery-started"
    assert world.secrets.pending_version(SECRET) not in (None, version)


def test_zus_down_fails_the_check_and_starts_nothing(world: World) -> None:
    world.clock.now += 30 * 86400
    world.zus.fail["token"] = []

    def down(client: str, credentials: ClientCredentials) -> CachedToken:
        raise errors.ZusUnavailable("token request", 503, "Service Unavailable")

    world.issuer.issue_with = down  # type: ignore[method-assign]

    with pytest.raises(errors.ZusUnavailable):
        world.sweep().check(CLIENT)
    assert world.metrics.counts["SecretRecoveryStarted"] == 0
    assert world.secrets.rotations_started == []


# --- recorded failures and the repair job --------------------------------------------------------------


def fail_create_secret(world: World) -> str:
    """A rotation whose createSecret failed (Zus refused rotate-secret): its version."""
    version = world.start()
    world.zus.fail["rotate secret"] = [errors.ZusUnavailable("rotate secret", 500, "Internal Server Error")]
    with pytest.raises(errors.ZusUnavailable):
        world.steps().run("createSecret", SECRET, version)
    return version


def test_a_failed_step_is_recorded_without_anything_secret(world: World) -> None:
    version = fail_create_secret(world)

    [failure] = world.failures.list()

    assert (failure.client, failure.version, failure.step, failure.seen_at) == (CLIENT, version, "createSecret", None)
    assert failure.failed_at == world.clock()
    assert failure.reason == "Zus rotate secret failed (HTTP 500): Internal Server Error"


def test_without_the_admins_secret_create_secret_fails_with_the_admin_tokens_own_error(world: World) -> None:
    # The steps take the admin's token as its port raises, not as provisioning words it for its callers.
    version = world.start()
    world.admin_tokens.missing = True

    with pytest.raises(errors.ResourceNotFound):
        world.steps().run("createSecret", SECRET, version)

    [failure] = world.failures.list()
    assert failure.reason == f"no managed app client named {ADMIN!r}"
    assert world.rotate_calls() == 0


def test_a_refused_invocation_of_a_stale_version_is_not_a_failure_to_repair(world: World) -> None:
    world.rotate()
    previous = next(v for v, stages in world.stages().items() if stages == [AWSPREVIOUS])

    with pytest.raises(errors.ResourceConflict):
        world.steps().run("createSecret", SECRET, previous)

    assert world.failures.list() == []


def test_a_failure_retried_and_failed_again_waits_another_run(world: World) -> None:
    version = fail_create_secret(world)
    repair = world.repair()
    assert repair.run()["clients"] == {CLIENT: "waiting"}
    world.clock.now += 120
    # Secrets Manager retries the rotation, and it fails again: recorded afresh
    world.zus.fail["rotate secret"] = [errors.ZusUnavailable("rotate secret", 500, "Internal Server Error")]
    with pytest.raises(errors.ZusUnavailable):
        world.steps().run("createSecret", SECRET, version)

    assert repair.run()["clients"] == {CLIENT: "waiting"}
    assert repair.run()["clients"] == {CLIENT: "rotation-restarted"}
    assert world.failures.list() == []


def test_a_failure_whose_rotation_finished_or_whose_client_is_gone_is_forgotten(world: World) -> None:
    version = fail_create_secret(world)
    steps = world.steps()
    steps.run("createSecret", SECRET, version)  # Secrets Manager's retry gets through ...
    assert world.failures.list() == []  # ... and clears the record
    for step in ("setSecret", "testSecret", "finishSecret"):
        steps.run(step, SECRET, version)
    # A record that outlived its rotation, and one of a client deleted since
    world.failures.record(RotationFailure(CLIENT, version, "testSecret", world.clock(), "recorded late"))
    world.add_client("gone")
    world.failures.record(RotationFailure("gone", "some-version", "createSecret", world.clock(), "x"))
    world.secrets.schedule_deletion(world.secret_id("gone"), 7)

    report = world.repair().run()

    assert report["clients"] == {CLIENT: "resolved", "gone": "absent"}
    assert world.failures.list() == []


def test_zus_down_during_a_repair_keeps_the_failure_for_the_next_run(world: World) -> None:
    fail_create_secret(world)
    repair = world.repair()
    repair.run()
    world.issuer.issue_with = lambda client, credentials: (_ for _ in ()).throw(  # type: ignore[method-assign]
        errors.ZusUnavailable("token request", 503, "Service Unavailable")
    )

    assert repair.run()["clients"] == {CLIENT: "failed"}
    assert len(world.failures.list()) == 1
    del world.issuer.issue_with  # Zus is back
    assert repair.run()["clients"] == {CLIENT: "rotation-restarted"}


def test_a_repair_on_request_rolls_forward_at_once(world: World) -> None:
    steps, version = world.created()

    outcome = world.repair().repair(steps.target_of(world.secrets.describe(SECRET)))  # type: ignore[arg-type]

    assert outcome == "rolled-forward"
    assert world.stages()[version] == [AWSCURRENT]
    assert world.metrics.counts["RotationRepaired"] == 1
