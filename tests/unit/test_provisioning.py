"""The provisioning use cases' decisions, against in-memory fakes of the record store, secrets, Zus and
vending, wired as ``zus_m2m.wiring`` wires them."""

from __future__ import annotations

import json
import time

import pytest
from fake_deployment import FakeDeployment
from fake_records import FakeClientRecords, FakePageTokens
from fakes import ADMIN, RECORD_FIELDS, Crash, crash_at, create_at_once

from zus_m2m import errors
from zus_m2m.admin_values import CreateRequest
from zus_m2m.ports import Checkpoint, Clock, Runtime, Sleep, no_checkpoint
from zus_m2m.provisioning.create import CreateCheckpoints
from zus_m2m.provisioning.policy import ProvisioningPolicy
from zus_m2m.provisioning.retire import RetireCheckpoints
from zus_m2m.provisioning.secret_keeper import idempotency_key
from zus_m2m.rotation.policy import RotationPolicy
from zus_m2m.rotation.repair import RotationRepair
from zus_m2m.rotation.steps import RotationSteps
from zus_m2m.tokens import budget
from zus_m2m.values import AWSCURRENT, CachedToken, ClientCredentials, ClientRecord, RecordItem
from zus_m2m.wiring import Provisioning, ProvisioningPorts, provisioning_use_cases

NAME = "billing-service"


class World(FakeDeployment):
    def __init__(self, **policy: object) -> None:
        super().__init__()
        self.records = FakeClientRecords()
        self.policy = ProvisioningPolicy(
            naming=self.naming,
            audience="https://api.sandbox.zusapi.com",
            kms_key_id="alias/zus-m2m-test",
            **policy,  # type: ignore[arg-type]
        )

    def provisioning(
        self, checkpoint: Checkpoint = no_checkpoint, *, clock: Clock | None = None, sleep: Sleep | None = None
    ) -> Provisioning:
        ports = ProvisioningPorts(
            self.records, self.records, self.secrets, self.table, self.admin, self.issuer, FakePageTokens()
        )
        rotation = RotationPolicy(self.naming, self.policy.rotation_function_arn)
        steps = RotationSteps(self.secrets, self.admin, self.issuer, self.failures, rotation, Runtime(self.metrics))
        runtime = Runtime(self.metrics, clock or self.clock, sleep or self.clock.sleep, checkpoint)
        repair = RotationRepair(self.secrets, steps, self.issuer, self.failures, rotation, Runtime(self.metrics))
        return provisioning_use_cases(ports, self.policy, runtime, repair=repair)

    def secret_id(self, name: str) -> str:
        return self.naming.secret_id(name)

    def item(self, name: str = NAME) -> RecordItem:
        item = self.records.get(name)
        assert item is not None
        return item

    def record(self, name: str = NAME) -> ClientRecord:
        record = self.item(name).record
        assert record is not None
        return record

    def stored(self, name: str = NAME) -> ClientCredentials | None:
        return self.secrets.read(self.secret_id(name), AWSCURRENT)

    def assert_usable(self, name: str = NAME) -> None:
        """Exactly one Zus client of that name, and the stored secret is its current secret."""
        [client] = self.zus.named(name)
        stored = self.stored(name)
        assert stored is not None
        assert stored.app_client_id == client.id
        assert stored.client_secret == self.zus.secret_of(client.id)


@pytest.fixture
def world() -> World:
    return World()


# --- create -----------------------------------------------------------------------------------


def test_create_follows_the_guide_and_answers_the_record_without_the_secret(world: World) -> None:
    record, created = world.provisioning().create_client(CreateRequest(NAME))

    assert created is True
    [client] = world.zus.named(NAME)
    assert record.app_client_id == client.id
    assert record.client_id == client.client_id
    assert (record.role_id, record.role_name) == ("role-builder-admin", "Builder Admin")
    assert record.secret_arn == world.secrets.secrets[world.secret_id(NAME)].arn
    assert record.created_at == int(world.clock())
    assert set(record.to_json()) == RECORD_FIELDS
    assert record.consumers == ()
    assert world.zus.secret_of(client.id) not in json.dumps(record.to_json())
    # stored with the stack's key, the managed tags and a deterministic request token
    secret = world.secrets.secrets[world.secret_id(NAME)]
    assert secret.kms_key_id == "alias/zus-m2m-test"
    assert secret.tags["zus-m2m:client"] == NAME
    assert secret.idempotency_key == idempotency_key(NAME, client.id)
    stored = world.stored()
    assert stored is not None
    assert stored.audience == "https://api.sandbox.zusapi.com"
    assert stored.role_name == "Builder Admin"
    world.assert_usable()
    # verified: a token from the stored secret, then the guide's step 4 read with it
    assert world.issuer.issued == [NAME]
    assert world.zus.calls == ["role lookup", "create app client", "get app client"]
    assert world.item().status == "active"


def test_the_same_request_again_returns_the_same_record_and_creates_nothing(world: World) -> None:
    first, _ = world.provisioning().create_client(CreateRequest(NAME))
    calls = list(world.zus.calls)

    again, created = world.provisioning().create_client(CreateRequest(NAME, "Builder Admin"))

    assert created is False
    assert again == first
    assert world.zus.calls == calls


def test_the_same_name_with_another_role_is_a_conflict(world: World) -> None:
    world.provisioning().create_client(CreateRequest(NAME))

    with pytest.raises(errors.ResourceConflict) as caught:
        world.provisioning().create_client(CreateRequest(NAME, "Care Team User"))

    assert caught.value.http_status == 409
    assert "Builder Admin" in caught.value.detail
    assert len(world.zus.named(NAME)) == 1


def test_an_unknown_role_is_422_and_leaves_no_claim_behind() -> None:
    world = World(allowed_roles=("Builder Admin", "Care Team User", "Janitor"))
    with pytest.raises(errors.UnknownRole) as caught:
        world.provisioning().create_client(CreateRequest(NAME, "Janitor"))

    assert caught.value.http_status == 422
    assert "Builder Admin" in caught.value.detail
    assert "Care Team User" in caught.value.detail
    assert world.records.get(NAME) is None
    _, created = world.provisioning().create_client(CreateRequest(NAME, "Care Team User"))
    assert created is True


def test_the_bootstrap_admins_name_cannot_be_provisioned(world: World) -> None:
    with pytest.raises(errors.ResourceConflict):
        world.provisioning().create_client(CreateRequest(ADMIN))

    assert world.zus.calls == []


def test_a_care_team_user_admin_surfaces_zus_403_naming_the_call(world: World) -> None:
    world.admin_tokens.token = "care-team-token"

    with pytest.raises(errors.AdminForbidden) as caught:
        world.provisioning().create_client(CreateRequest(NAME))

    assert caught.value.http_status == 503
    assert caught.value.retry_after is not None
    assert "role lookup" in caught.value.detail
    assert "403" in caught.value.detail
    assert "Builder Admin role" in caught.value.detail
    assert world.records.get(NAME) is None


def test_a_missing_admin_secret_is_a_configuration_error_not_a_404(world: World) -> None:
    world.admin_tokens.missing = True

    with pytest.raises(errors.ConfigurationError) as caught:
        world.provisioning().create_client(CreateRequest(NAME))

    assert caught.value.http_status == 503
    assert "bootstrap admin secret" in caught.value.detail


@pytest.mark.parametrize(
    "failure",
    [
        errors.ZusUnavailable("create app client", 503, "Service Unavailable", retry_after=7),
        errors.ZusRateLimited("create app client", 429, "too_many_requests", retry_after=42),
    ],
    ids=["503", "429"],
)
def test_zus_refusing_the_create_is_503_with_retry_after_and_the_retry_completes_at_once(
    world: World, failure: errors.ZusError
) -> None:
    world.zus.fail["create app client"] = [failure]

    with pytest.raises(errors.TemporarilyUnavailable) as caught:
        world.provisioning().create_client(CreateRequest(NAME))

    assert caught.value.http_status == 503
    assert caught.value.retry_after == failure.retry_after
    assert world.zus.named(NAME) == []
    assert world.records.get(NAME) is None  # nothing half-created is left behind
    record, created = world.provisioning().create_client(CreateRequest(NAME))
    assert created is True
    world.assert_usable()
    assert world.item().record == record


@pytest.mark.parametrize(
    "failure",
    [
        errors.ZusUnavailable("create app client", None, "timed out"),
        errors.ZusUnavailable("create app client", 502, "Bad Gateway"),
    ],
    ids=["timeout", "502"],
)
def test_after_a_create_of_unknown_outcome_retries_wait_until_it_can_no_longer_land(
    world: World, failure: errors.ZusError
) -> None:
    # Given a create whose answer says nothing about whether Zus made the client
    world.zus.fail["create app client"] = [failure]
    with pytest.raises(errors.TemporarilyUnavailable):
        world.provisioning().create_client(CreateRequest(NAME))

    # When a retry comes before that create could still land, it waits (503) rather than make another
    with pytest.raises(errors.TemporarilyUnavailable) as early:
        world.provisioning().create_client(CreateRequest(NAME))
    assert 0 < early.value.retry_after <= 15
    assert world.zus.named(NAME) == []

    # Then once it cannot land any more, the retry creates the one client
    world.clock.now += 15
    record, created = world.provisioning().create_client(CreateRequest(NAME))
    assert created is True
    assert [client.id for client in world.zus.named(NAME)] == [record.app_client_id]
    world.assert_usable()


def test_a_create_whose_answer_was_lost_adopts_the_client_zus_made(world: World) -> None:
    # Zus created the client but the answer never arrived (a read timeout)
    def lose_the_answer() -> None:
        world.zus.after.pop("create app client")
        raise errors.ZusUnavailable("create app client", None, "timed out")

    world.zus.after["create app client"] = lose_the_answer
    with pytest.raises(errors.TemporarilyUnavailable):
        world.provisioning().create_client(CreateRequest(NAME))
    assert len(world.zus.named(NAME)) == 1

    record, created = world.provisioning().create_client(CreateRequest(NAME))

    assert created is True
    world.assert_usable()
    assert record.app_client_id == world.zus.named(NAME)[0].id
    assert "rotate secret" in world.zus.calls
    assert world.zus.calls.count("create app client") == 1


def test_a_crash_between_zus_create_and_the_secret_store_is_recovered_with_rotate_secret(world: World) -> None:
    with pytest.raises(Crash):
        world.provisioning(crash_at(CreateCheckpoints.APP_CLIENT_CREATED)).create_client(CreateRequest(NAME))
    assert world.stored() is None
    lost_secret = world.zus.secret_of(world.zus.named(NAME)[0].id)

    # A retry while the dead attempt's claim is live waits, then answers 503 with Retry-After
    with pytest.raises(errors.TemporarilyUnavailable) as waiting:
        world.provisioning().create_client(CreateRequest(NAME))
    assert waiting.value.retry_after >= 1
    # Once the claim has expired, the next retry takes over and completes
    world.clock.now += world.policy.claim_seconds
    record, created = world.provisioning().create_client(CreateRequest(NAME))

    assert created is True
    world.assert_usable()
    stored = world.stored()
    assert stored is not None
    assert stored.client_secret != lost_secret
    assert world.zus.calls.count("create app client") == 1
    assert world.zus.calls.count("rotate secret") == 1
    assert record.app_client_id == world.zus.named(NAME)[0].id


def test_a_retry_waiting_for_a_dead_claim_takes_it_over_when_it_expires(world: World) -> None:
    world = World(claim_seconds=5.0, wait_seconds=20.0)
    with pytest.raises(Crash):
        world.provisioning(crash_at(CreateCheckpoints.APP_CLIENT_CREATED)).create_client(CreateRequest(NAME))

    _, created = world.provisioning().create_client(CreateRequest(NAME))

    assert created is True
    world.assert_usable()
    assert world.metrics.counts["ProvisioningClaimWait"] > 0


@pytest.mark.parametrize("step", [CreateCheckpoints.SECRET_STORED, CreateCheckpoints.VERIFIED])
def test_a_crash_after_the_secret_was_stored_reuses_it_without_rotating(world: World, step: str) -> None:
    with pytest.raises(Crash):
        world.provisioning(crash_at(step)).create_client(CreateRequest(NAME))
    stored = world.stored()
    world.clock.now += world.policy.claim_seconds

    _, created = world.provisioning().create_client(CreateRequest(NAME))

    assert created is True
    world.assert_usable()
    assert world.stored() == stored
    assert "rotate secret" not in world.zus.calls
    assert world.zus.calls.count("create app client") == 1


def test_a_crash_after_the_secret_was_recovered_recovers_again(world: World) -> None:
    with pytest.raises(Crash):
        world.provisioning(crash_at(CreateCheckpoints.APP_CLIENT_CREATED)).create_client(CreateRequest(NAME))
    world.clock.now += world.policy.claim_seconds
    with pytest.raises(Crash):
        world.provisioning(crash_at(CreateCheckpoints.SECRET_RECOVERED)).create_client(CreateRequest(NAME))
    world.clock.now += world.policy.claim_seconds

    world.provisioning().create_client(CreateRequest(NAME))

    world.assert_usable()
    assert world.zus.calls.count("rotate secret") == 2


def test_a_same_named_client_created_before_the_claim_is_never_adopted(world: World) -> None:
    # Someone made a client of the same name at Zus by hand, an hour ago
    theirs = world.zus.add_client(NAME, "role-builder-admin", int(world.clock() - 3600))
    world.clock.now += 1
    # Our create dies after Zus made our client, before it was noted anywhere
    with pytest.raises(Crash):
        world.provisioning(crash_at(CreateCheckpoints.APP_CLIENT_CREATED)).create_client(CreateRequest(NAME))
    world.clock.now += world.policy.claim_seconds

    record, _ = world.provisioning().create_client(CreateRequest(NAME))

    assert record.app_client_id != theirs.app_client.id
    assert world.zus.secret_of(theirs.app_client.id) == theirs.client_secret  # never rotated
    assert len(world.zus.named(NAME)) == 2


def test_an_old_same_named_client_is_not_adopted_after_a_failed_create(world: World) -> None:
    theirs = world.zus.add_client(NAME, "role-builder-admin", int(world.clock() - 3600))
    world.zus.fail["create app client"] = [errors.ZusUnavailable("create app client", 502, "Bad Gateway")]
    with pytest.raises(errors.TemporarilyUnavailable):
        world.provisioning().create_client(CreateRequest(NAME))
    world.clock.now += 15  # past the window in which the failed create could still land

    record, _ = world.provisioning().create_client(CreateRequest(NAME))

    assert record.app_client_id != theirs.app_client.id
    assert world.zus.secret_of(theirs.app_client.id) == theirs.client_secret
    world_clients = world.zus.named(NAME)
    assert len(world_clients) == 2


def test_twenty_parallel_identical_creates_make_one_zus_client() -> None:
    world = World(wait_seconds=10.0)
    world.zus.delay = 0.2  # the creator is slow, so the others really wait
    containers = [world.provisioning(clock=time.time, sleep=time.sleep) for _ in range(20)]
    answers = create_at_once(containers, NAME)

    assert len(world.zus.named(NAME)) == 1
    assert world.zus.calls.count("create app client") == 1
    assert len({record for record, _ in answers}) == 1
    assert sorted(created for _, created in answers) == [False] * 19 + [True]


def test_rotation_is_configured_when_a_rotation_function_is_set() -> None:
    world = World(
        rotation_function_arn="arn:aws:lambda:us-east-1:123456789012:function:rotation", rotation_interval_days=14
    )

    world.provisioning().create_client(CreateRequest(NAME))

    secret = world.secrets.secrets[world.secret_id(NAME)]
    assert secret.rotation_arn == "arn:aws:lambda:us-east-1:123456789012:function:rotation"
    assert secret.rotation_days == 14


def test_no_rotation_is_configured_without_a_rotation_function(world: World) -> None:
    world.provisioning().create_client(CreateRequest(NAME))

    assert ("configure_rotation", world.secret_id(NAME)) not in world.secrets.calls


# --- read -------------------------------------------------------------------------------------


def test_get_shows_rotation_dates_token_expiry_and_budget_but_no_secret_or_token(world: World) -> None:
    provisioning = world.provisioning()
    record, _ = provisioning.create_client(CreateRequest(NAME))
    world.table.put_token(NAME, CachedToken("the-access-token", "Bearer", world.clock() + 1800), None)
    budget.spend(world.table, NAME, world.clock(), 100)

    shown = provisioning.queries.get(NAME)

    assert {k: shown[k] for k in record.to_json()} == record.to_json()
    assert shown["lastRotation"] is None
    assert shown["nextRotation"] == int(world.clock()) + 30 * 86400
    assert shown["token"] == {"cached": True, "expiresAt": int(world.clock()) + 1800}
    assert shown["budget"] == {"usedLastHour": 1, "limit": 100}
    text = json.dumps(shown)
    assert "the-access-token" not in text
    assert world.zus.secret_of(record.app_client_id) not in text


def test_get_reports_an_expired_token_as_not_cached(world: World) -> None:
    provisioning = world.provisioning()
    provisioning.create_client(CreateRequest(NAME))
    world.table.put_token(NAME, CachedToken("old", "Bearer", world.clock() - 1), None)

    assert provisioning.queries.get(NAME)["token"] == {"cached": False, "expiresAt": None}


def test_get_and_rotate_of_an_unknown_name_are_404(world: World) -> None:
    with pytest.raises(errors.ResourceNotFound):
        world.provisioning().queries.get("nobody")
    with pytest.raises(errors.ResourceNotFound):
        world.provisioning().start_rotation("nobody")


def test_a_half_created_client_is_not_listed_or_shown(world: World) -> None:
    with pytest.raises(Crash):
        world.provisioning(crash_at(CreateCheckpoints.SECRET_STORED)).create_client(CreateRequest(NAME))

    assert world.provisioning().queries.list_page(50) == ([], None)
    with pytest.raises(errors.ResourceNotFound):
        world.provisioning().queries.get(NAME)


def test_list_shows_the_managed_clients_and_the_bootstrap_admin(world: World) -> None:
    world.secrets.create(
        world.secret_id(ADMIN),
        world_admin_credentials(),
        kms_key_id="",
        tags={},
        idempotency_key="admin-version",
    )
    provisioning = world.provisioning()
    a, _ = provisioning.create_client(CreateRequest("a-service"))
    b, _ = provisioning.create_client(CreateRequest("b-service", "Care Team User"))

    listed, next_token = provisioning.queries.list_page(50)

    assert [r.name for r in listed] == ["a-service", "b-service", ADMIN]
    assert listed[:2] == [a, b]
    assert listed[2].client_id == "local-admin"
    assert next_token is None
    assert "local-admin-secret" not in json.dumps([record.to_json() for record in listed])


def test_the_list_comes_in_pages_the_bootstrap_admin_on_the_first(world: World) -> None:
    world.secrets.create(
        world.secret_id(ADMIN), world_admin_credentials(), kms_key_id="", tags={}, idempotency_key="admin-version"
    )
    provisioning = world.provisioning()
    for name in ("a-service", "b-service", "c-service"):
        provisioning.create_client(CreateRequest(name))

    first, token = provisioning.queries.list_page(2)
    second, last = provisioning.queries.list_page(2, token)

    assert [r.name for r in first] == ["a-service", "b-service", ADMIN]
    assert [r.name for r in second] == ["c-service"]
    assert token is not None
    assert last is None


def world_admin_credentials() -> ClientCredentials:
    return ClientCredentials(
        ADMIN, "app-admin", "local-admin", "local-admin-secret", "role-builder-admin", "Builder Admin"
    )


# --- rotate -----------------------------------------------------------------------------------


def test_start_rotation_asks_secrets_manager_and_refuses_a_second_while_in_progress() -> None:
    world = World(rotation_function_arn="arn:aws:lambda:us-east-1:123456789012:function:rotation")
    provisioning = world.provisioning()
    record, _ = provisioning.create_client(CreateRequest(NAME))

    answer = provisioning.start_rotation(NAME)

    assert answer == {"name": NAME, "secretArn": record.secret_arn, "rotation": "started"}
    assert world.secrets.rotations_started == [
        (world.secret_id(NAME), "arn:aws:lambda:us-east-1:123456789012:function:rotation")
    ]
    with pytest.raises(errors.ResourceConflict):
        provisioning.start_rotation(NAME)


def test_start_rotation_without_a_rotation_function_passes_none(world: World) -> None:
    provisioning = world.provisioning()
    provisioning.create_client(CreateRequest(NAME))

    provisioning.start_rotation(NAME)

    assert world.secrets.rotations_started == [(world.secret_id(NAME), None)]


# --- delete -----------------------------------------------------------------------------------


def test_delete_removes_the_zus_client_schedules_the_secret_and_purges_tokens(world: World) -> None:
    provisioning = world.provisioning()
    provisioning.create_client(CreateRequest(NAME))
    world.table.put_token(NAME, CachedToken("t", "Bearer", world.clock() + 600), None)

    provisioning.retire_client(NAME)

    assert world.zus.named(NAME) == []
    secret = world.secrets.secrets[world.secret_id(NAME)]
    assert secret.deleted is True
    assert secret.recovery_window_days == 7
    assert NAME not in world.table.states
    assert NAME in world.table.retired
    assert world.records.get(NAME) is None
    with pytest.raises(errors.ResourceNotFound):
        provisioning.retire_client(NAME)


def test_deleting_the_bootstrap_admin_is_a_conflict(world: World) -> None:
    with pytest.raises(errors.ResourceConflict) as caught:
        world.provisioning().retire_client(ADMIN)

    assert caught.value.http_status == 409


@pytest.mark.parametrize(
    "step",
    [
        RetireCheckpoints.DELETE_MARKED,
        RetireCheckpoints.ROTATION_CANCELLED,
        RetireCheckpoints.APP_CLIENT_DELETED,
        RetireCheckpoints.SECRET_DELETION_SCHEDULED,
        RetireCheckpoints.TOKENS_PURGED,
    ],
)
def test_a_delete_interrupted_anywhere_is_finished_by_a_retry(step: str) -> None:
    # A client whose rotation started and stopped moving
    world = World(rotation_function_arn="arn:aws:lambda:us-east-1:123456789012:function:rotation")
    world.provisioning().create_client(CreateRequest(NAME))
    world.provisioning().start_rotation(NAME)
    with pytest.raises(Crash):
        world.provisioning(crash_at(step)).retire_client(NAME)
    with pytest.raises(errors.ResourceNotFound):
        world.provisioning().queries.get(NAME)  # no longer shown while being deleted

    world.provisioning().retire_client(NAME)

    assert world.zus.named(NAME) == []
    description = world.secrets.describe(world.secret_id(NAME))
    assert description is not None
    assert description.deleted is True
    assert not description.rotation_in_progress
    assert not description.rotation_enabled
    assert world.records.get(NAME) is None
    # ... and the name can be provisioned again at once
    world.provisioning().create_client(CreateRequest(NAME))
    world.assert_usable()


def test_a_create_of_a_name_being_deleted_is_a_conflict(world: World) -> None:
    world.provisioning().create_client(CreateRequest(NAME))
    with pytest.raises(Crash):
        world.provisioning(crash_at(RetireCheckpoints.APP_CLIENT_DELETED)).retire_client(NAME)

    with pytest.raises(errors.ResourceConflict):
        world.provisioning().create_client(CreateRequest(NAME))


def test_a_zus_failure_during_delete_is_503_and_the_retry_finishes(world: World) -> None:
    world.provisioning().create_client(CreateRequest(NAME))
    world.zus.fail["delete app client"] = [errors.ZusRateLimited("delete app client", 429, "slow down", 30)]

    with pytest.raises(errors.TemporarilyUnavailable) as caught:
        world.provisioning().retire_client(NAME)
    assert caught.value.http_status == 503
    assert caught.value.retry_after == 30

    world.provisioning().retire_client(NAME)
    assert world.records.get(NAME) is None


def test_a_name_can_be_provisioned_again_within_the_recovery_window(world: World) -> None:
    provisioning = world.provisioning()
    first, _ = provisioning.create_client(CreateRequest(NAME))
    provisioning.retire_client(NAME)

    second, created = provisioning.create_client(CreateRequest(NAME))

    assert created is True
    assert second.app_client_id != first.app_client_id
    assert second.secret_arn == first.secret_arn
    assert ("restore", world.secret_id(NAME)) in world.secrets.calls
    world.assert_usable()


# --- consumers, allowed roles, rotation requests ------------------------------------------------------


CONSUMER = "arn:aws:iam::123456789012:role/billing-service"
OTHER_CONSUMER = "arn:aws:iam::123456789012:role/reporting"


def test_a_create_stores_the_consumers_on_the_record(world: World) -> None:
    record, _ = world.provisioning().create_client(CreateRequest(NAME, consumers=(CONSUMER,)))

    assert record.consumers == (CONSUMER,)
    assert world.record().consumers == (CONSUMER,)
    assert record.to_json()["consumers"] == [CONSUMER]


def test_a_repeated_create_with_the_same_consumers_or_none_named_is_200(world: World) -> None:
    first, _ = world.provisioning().create_client(CreateRequest(NAME, consumers=(CONSUMER,)))

    same, created = world.provisioning().create_client(CreateRequest(NAME, consumers=(CONSUMER,)))
    unnamed, _ = world.provisioning().create_client(CreateRequest(NAME))

    assert created is False
    assert same == unnamed == first
    assert len(world.zus.named(NAME)) == 1


def test_a_repeated_create_with_other_consumers_is_a_conflict_and_changes_nothing(world: World) -> None:
    world.provisioning().create_client(CreateRequest(NAME, consumers=(CONSUMER,)))

    with pytest.raises(errors.ResourceConflict) as caught:
        world.provisioning().create_client(CreateRequest(NAME, consumers=(OTHER_CONSUMER,)))

    assert caught.value.http_status == 409
    assert "PATCH" in caught.value.detail
    assert world.record().consumers == (CONSUMER,)


def test_a_role_the_stack_does_not_allow_is_422_before_anything_is_claimed() -> None:
    world = World(allowed_roles=("Care Team User",))

    with pytest.raises(errors.UnprocessableRequest) as caught:
        world.provisioning().create_client(CreateRequest(NAME, "Builder Admin"))

    assert caught.value.http_status == 422
    assert "Care Team User" in caught.value.detail
    assert world.records.items == {}
    assert world.zus.calls == []


def test_update_consumers_replaces_the_list(world: World) -> None:
    world.provisioning().create_client(CreateRequest(NAME, consumers=(CONSUMER,)))

    record = world.provisioning().update_consumers(NAME, (OTHER_CONSUMER,))

    assert record.consumers == (OTHER_CONSUMER,)
    assert world.record().consumers == (OTHER_CONSUMER,)
    assert world.provisioning().update_consumers(NAME, ()).consumers == ()


def test_update_consumers_of_an_unknown_a_half_made_or_the_admin_client_changes_nothing(world: World) -> None:
    with pytest.raises(errors.ResourceNotFound):
        world.provisioning().update_consumers("nobody", (CONSUMER,))
    with pytest.raises(errors.ResourceConflict):
        world.provisioning().update_consumers(ADMIN, (CONSUMER,))
    with pytest.raises(Crash):
        world.provisioning(crash_at(CreateCheckpoints.APP_CLIENT_CREATED)).create_client(CreateRequest(NAME))
    with pytest.raises(errors.ResourceConflict, match="being created"):
        world.provisioning().update_consumers(NAME, (CONSUMER,))
    assert world.item().record is None


def test_a_record_of_the_old_shape_has_no_consumers_until_an_admin_grants_some(world: World) -> None:
    record, _ = world.provisioning().create_client(CreateRequest(NAME))
    assert record.consumers == ()

    assert world.provisioning().update_consumers(NAME, (CONSUMER,)).consumers == (CONSUMER,)


def test_rotations_on_demand_are_at_least_the_minimum_gap_apart(world: World) -> None:
    provisioning = world.provisioning()
    provisioning.create_client(CreateRequest(NAME))
    provisioning.start_rotation(NAME)
    finish_rotation(world, NAME)
    world.clock.now += 299

    with pytest.raises(errors.Throttled) as caught:
        provisioning.start_rotation(NAME)

    assert caught.value.http_status == 429
    assert caught.value.retry_after == pytest.approx(1)
    assert len(world.secrets.rotations_started) == 1
    world.clock.now += 1
    provisioning.start_rotation(NAME)
    assert len(world.secrets.rotations_started) == 2


def test_the_bootstrap_admins_rotations_are_rate_limited_too(world: World) -> None:
    world.add_client(ADMIN)
    provisioning = world.provisioning()
    provisioning.start_rotation(ADMIN)
    finish_rotation(world, ADMIN)

    with pytest.raises(errors.Throttled):
        provisioning.start_rotation(ADMIN)


def test_a_rotation_that_did_not_start_does_not_count_against_the_gap(world: World) -> None:
    provisioning = world.provisioning()
    provisioning.create_client(CreateRequest(NAME))
    world.secrets.start_rotation = failing_start  # type: ignore[method-assign]

    with pytest.raises(errors.StoreUnavailable):
        provisioning.start_rotation(NAME)

    assert world.records.rotation_requests == {}


def failing_start(secret_id: str, rotation_function_arn: str | None) -> None:
    raise errors.StoreUnavailable("starting a rotation failed: InternalServiceError")


def finish_rotation(world: World, name: str) -> None:
    """Secrets Manager's finishSecret, as the rotation function leaves the secret: no rotation pending."""
    secret = world.secrets.secrets[world.secret_id(name)]
    for version, (value, stages) in list(secret.versions.items()):
        secret.versions[version] = (value, [stage for stage in stages if stage != "AWSPENDING"])


def test_a_minimum_gap_of_zero_lets_every_rotation_request_through() -> None:
    world = World(rotation_request_min_gap_seconds=0)
    provisioning = world.provisioning()
    provisioning.create_client(CreateRequest(NAME))
    for _ in range(3):
        provisioning.start_rotation(NAME)
        finish_rotation(world, NAME)

    assert len(world.secrets.rotations_started) == 3
    assert world.records.rotation_requests == {}
