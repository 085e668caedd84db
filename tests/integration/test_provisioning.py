"""Provisioning against moto server and the Zus emulator, over real HTTP (no mocks of boto3 or requests)."""

from __future__ import annotations

import base64
import dataclasses
import json
import time
from typing import TYPE_CHECKING, Any

import pytest
from fakes import Crash, crash_at, create_at_once
from integration_support import Aws

from zus_emulator.config import OLD_THEN_NEW
from zus_local.secrets_manager_rotation import drive_rotation, find_started_rotations
from zus_m2m import errors
from zus_m2m.admin_values import CreateRequest
from zus_m2m.aws.table import client_key
from zus_m2m.provisioning.create import CreateCheckpoints
from zus_m2m.provisioning.retire import RetireCheckpoints
from zus_m2m.tokens.vendor import TokenVendor

if TYPE_CHECKING:
    from integration_support import ProvisioningStack as Stack

NAME = "billing-service"


@pytest.fixture
def stack(provisioning_stack: Stack) -> Stack:
    assert provisioning_stack.CLIENT == NAME
    return provisioning_stack


def test_a_created_secret_gets_the_stacks_resource_policy_before_it_is_used(stack: Stack) -> None:
    stack.provisioning().create_client(CreateRequest(NAME, consumers=(stack.CONSUMER_ROLE,)))

    stored = stack.aws.secretsmanager.get_resource_policy(SecretId="zus-m2m/test/billing-service")
    assert json.loads(stored["ResourcePolicy"]) == json.loads(stack.settings.secret_policy)
    readers = json.loads(stored["ResourcePolicy"])["Statement"][0]
    assert readers["Action"] == ["secretsmanager:GetSecretValue"]
    assert len(readers["Condition"]["StringNotEquals"]["aws:PrincipalArn"]) == 5  # the function roles


def test_the_guides_flow_end_to_end(stack: Stack) -> None:
    record, created = stack.provisioning().create_client(CreateRequest(NAME, consumers=(stack.CONSUMER_ROLE,)))

    assert created is True
    # step 2 happened once, with the role of step 1
    [client] = stack.zus_clients_named(NAME)
    assert record.app_client_id == client.id
    assert record.client_id == client.client_id
    assert record.role_id == client.role_id == stack.zus_client.find_role("Builder Admin", stack.admin_token).id
    # the credentials went straight into Secrets Manager, tagged as managed, under the stage's name
    description = stack.aws.secretsmanager.describe_secret(SecretId="zus-m2m/test/billing-service")
    assert description["ARN"] == record.secret_arn
    tags = {t["Key"]: t["Value"] for t in description["Tags"]}
    assert tags == {"zus-m2m:managed": "true", "zus-m2m:stage": "test", "zus-m2m:client": NAME}
    stored = stack.assert_usable()
    assert stored["audience"] == "https://api.sandbox.zusapi.com"
    assert stored["roleName"] == "Builder Admin"
    # steps 3-4 went through token vending: the token is cached, and vending it costs no new request
    assert stack.item(NAME, "token") is not None
    before = stack.stats()["tokenRequests"][client.client_id]
    stack.vendor().vend(stack.CONSUMER, NAME, 60)
    assert stack.stats()["tokenRequests"][client.client_id] == before
    # the record is in the table, and nowhere is the secret
    item = stack.item(NAME, "record")
    assert item is not None
    assert item["status"]["S"] == "active"
    assert item["appClientId"]["S"] == client.id
    assert stored["clientSecret"] not in json.dumps(item)
    assert stored["clientSecret"] not in json.dumps(record.to_json())


def test_the_same_request_again_answers_the_same_record_and_creates_nothing(stack: Stack) -> None:
    first, _ = stack.provisioning().create_client(CreateRequest(NAME))
    clients = stack.stats()["appClients"]

    again, created = stack.provisioning().create_client(CreateRequest(NAME))

    assert created is False
    assert again == first
    assert stack.stats()["appClients"] == clients == 2  # the admin and ours


def test_the_same_name_with_another_role_is_409(stack: Stack) -> None:
    stack.provisioning().create_client(CreateRequest(NAME))

    with pytest.raises(errors.ResourceConflict) as caught:
        stack.provisioning().create_client(CreateRequest(NAME, "Care Team User"))

    assert caught.value.http_status == 409
    assert len(stack.zus_clients_named(NAME)) == 1


def test_twenty_parallel_creates_in_twenty_containers_make_one_zus_client(stack: Stack) -> None:
    containers = [stack.provisioning() for _ in range(20)]
    answers = create_at_once(containers, NAME)

    assert stack.stats()["appClients"] == 2
    assert len(stack.zus_clients_named(NAME)) == 1
    assert len({record for record, _ in answers}) == 1
    assert sorted(created for _, created in answers) == [False] * 19 + [True]
    stack.assert_usable()


@pytest.mark.parametrize(
    "checkpoint",
    [CreateCheckpoints.APP_CLIENT_CREATED, CreateCheckpoints.SECRET_RECOVERED, CreateCheckpoints.SECRET_STORED],
)
def test_a_crash_between_zus_create_and_the_secret_store_is_recovered_by_the_retry(
    stack: Stack, dialect: str, checkpoint: str
) -> None:
    if checkpoint == CreateCheckpoints.SECRET_RECOVERED:  # the first retry dies too, after rotating the secret
        with pytest.raises(Crash):
            stack.provisioning(crash_at(CreateCheckpoints.APP_CLIENT_CREATED), claim_seconds=1.0).create_client(
                CreateRequest(NAME)
            )
        time.sleep(1.0)  # the dead attempt's claim expires
    with pytest.raises(Crash):
        stack.provisioning(crash_at(checkpoint), claim_seconds=1.0).create_client(CreateRequest(NAME))
    [orphan] = stack.zus_clients_named(NAME)
    assert stack.record_status(NAME) == "creating"
    if checkpoint != CreateCheckpoints.SECRET_STORED:
        with pytest.raises(stack.aws.secretsmanager.exceptions.ResourceNotFoundException):
            stack.stored()
    time.sleep(1.0)  # the dead attempt's claim expires

    record, created = stack.provisioning(claim_seconds=1.0).create_client(CreateRequest(NAME))

    assert created is True
    assert record.app_client_id == orphan.id
    assert stack.stats()["appClients"] == 2
    stack.assert_usable()
    assert stack.record_status(NAME) == "active"


def test_a_recovered_secret_still_taking_effect_at_zus_is_proven_patiently(stack: Stack, dialect: str) -> None:
    # The retry of a create that died recovers the lost secret with rotate-secret; Zus refuses the new
    # secret (and accepts the lost one) for 2 s.
    stack.emulator("config", secretPropagationSeconds=2, propagationMode=OLD_THEN_NEW)
    with pytest.raises(Crash):
        stack.provisioning(crash_at(CreateCheckpoints.APP_CLIENT_CREATED), claim_seconds=0.1).create_client(
            CreateRequest(NAME)
        )
    time.sleep(0.2)  # the dead attempt's claim expires

    _, created = stack.provisioning(claim_seconds=0.1).create_client(CreateRequest(NAME))

    assert created is True
    assert stack.stats()["appClients"] == 2
    stack.assert_usable()


def test_a_create_works_when_zus_tokens_live_no_longer_than_a_minute(stack: Stack) -> None:
    stack.emulator("config", tokenLifetimeSeconds=60)

    _, created = stack.provisioning().create_client(CreateRequest(NAME))

    assert created is True
    stack.assert_usable()


def test_a_retry_while_the_dead_attempts_claim_is_live_answers_503_with_retry_after(stack: Stack) -> None:
    with pytest.raises(Crash):
        stack.provisioning(crash_at(CreateCheckpoints.APP_CLIENT_CREATED)).create_client(CreateRequest(NAME))

    with pytest.raises(errors.TemporarilyUnavailable) as caught:
        stack.provisioning(wait_seconds=0.3).create_client(CreateRequest(NAME))

    assert caught.value.http_status == 503
    assert 20 < caught.value.retry_after <= 40
    assert len(stack.zus_clients_named(NAME)) == 1


def test_zus_failing_the_create_is_503_with_retry_after_then_the_retry_succeeds(stack: Stack) -> None:
    stack.emulator("faults", status=503, rate=1.0, paths=["/auth/app-clients"])

    with pytest.raises(errors.ZusM2MError) as caught:
        stack.provisioning().create_client(CreateRequest(NAME))

    assert caught.value.http_status == 503
    assert caught.value.retry_after is not None
    assert caught.value.retry_after >= 1
    stack.emulator("faults")
    assert stack.zus_clients_named(NAME) == []
    with pytest.raises(stack.aws.secretsmanager.exceptions.ResourceNotFoundException):
        stack.stored()

    _, created = stack.provisioning().create_client(CreateRequest(NAME))

    assert created is True
    assert stack.stats()["appClients"] == 2
    stack.assert_usable()


def test_a_zus_429_during_create_is_503_not_429(stack: Stack) -> None:
    stack.emulator("faults", status=429, rate=1.0, retryAfter=17, paths=["/auth/app-clients"])

    with pytest.raises(errors.TemporarilyUnavailable) as caught:
        stack.provisioning().create_client(CreateRequest(NAME))

    assert caught.value.http_status == 503
    assert caught.value.retry_after == 17


def test_an_unknown_role_is_422_listing_the_roles(stack: Stack) -> None:
    allowed = ("Builder Admin", "Care Team User", "Janitor")  # the stack allows it; Zus does not have it
    with pytest.raises(errors.UnknownRole) as caught:
        stack.provisioning(allowed_roles=allowed).create_client(CreateRequest(NAME, "Janitor"))

    assert caught.value.http_status == 422
    assert "'Janitor'" in caught.value.detail
    assert "Builder Admin, Care Team User" in caught.value.detail
    assert stack.item(NAME, "record") is None
    assert stack.stats()["appClients"] == 1


def test_a_care_team_user_admin_surfaces_zus_403_as_a_clear_error(stack: Stack) -> None:
    role = stack.zus_client.find_role("Care Team User", stack.admin_token)
    weak = stack.zus_client.create_app_client("weak-admin", role.id, stack.admin_token)
    stack.store_admin(weak.app_client.id, weak.app_client.client_id, weak.client_secret, "Care Team User")

    with pytest.raises(errors.AdminForbidden) as caught:
        stack.provisioning().create_client(CreateRequest(NAME))

    assert caught.value.http_status == 503
    assert "role lookup" in caught.value.detail
    assert "403" in caught.value.detail
    assert "Builder Admin role" in caught.value.detail
    assert weak.client_secret not in caught.value.detail
    assert stack.zus_clients_named(NAME) == []
    assert stack.item(NAME, "record") is None


def test_get_shows_rotation_token_expiry_and_budget_never_a_secret(stack: Stack) -> None:
    provisioning = stack.provisioning()
    provisioning.create_client(CreateRequest(NAME))

    shown = provisioning.queries.get(NAME)

    token_item = stack.item(NAME, "token")
    assert token_item is not None
    assert shown["token"] == {"cached": True, "expiresAt": int(float(token_item["expiresAt"]["N"]))}
    assert shown["budget"] == {"usedLastHour": 1, "limit": 100}
    assert shown["lastRotation"] is None
    assert shown["nextRotation"] >= int(time.time()) + 29 * 86400
    text = json.dumps(shown)
    assert stack.stored()["clientSecret"] not in text
    assert token_item["accessToken"]["S"] not in text
    records, _ = provisioning.queries.list_page(50)
    assert [r.name for r in records] == [NAME, "zus-m2m-admin"]


def test_start_rotation_starts_one_and_refuses_while_one_is_in_progress(stack: Stack) -> None:
    provisioning = stack.provisioning()
    record, _ = provisioning.create_client(CreateRequest(NAME))
    secret_id = "zus-m2m/test/billing-service"

    answer = provisioning.start_rotation(NAME)

    assert answer["secretArn"] == record.secret_arn
    assert stack.aws.secretsmanager.describe_secret(SecretId=secret_id).get("LastRotatedDate") is not None
    # A rotation whose createSecret step stored AWSPENDING and has not finished
    stack.aws.secretsmanager.put_secret_value(
        SecretId=secret_id,
        SecretString=json.dumps({"clientId": "x", "clientSecret": "y"}),
        VersionStages=["AWSPENDING"],
    )
    with pytest.raises(errors.ResourceConflict):
        provisioning.start_rotation(NAME)
    with pytest.raises(errors.ResourceNotFound):
        provisioning.start_rotation("nobody")


def test_delete_retires_the_client_with_its_recovery_window(stack: Stack) -> None:
    provisioning = stack.provisioning()
    record, _ = provisioning.create_client(CreateRequest(NAME))
    assert stack.item(NAME, "token") is not None

    retired_at = time.time()
    provisioning.retire_client(NAME)

    description = stack.aws.secretsmanager.describe_secret(SecretId="zus-m2m/test/billing-service")
    assert description.get("DeletedDate") is not None
    days = (description["DeletedDate"].timestamp() - time.time()) / 86400
    assert 6.9 < days <= 7.0
    with pytest.raises(errors.ZusNotFound):
        stack.zus_client.get_app_client(record.app_client_id, stack.admin_token)
    _assert_tombstone(stack.item(NAME, "token"), retired_at)
    assert stack.item(NAME, "budget") is None
    assert stack.item(NAME, "record") is None
    with pytest.raises(errors.ResourceNotFound):
        provisioning.queries.get(NAME)
    with pytest.raises(errors.ResourceNotFound):
        provisioning.retire_client(NAME)


def test_a_delete_interrupted_after_zus_is_finished_by_the_retry(stack: Stack) -> None:
    stack.provisioning().create_client(CreateRequest(NAME))
    with pytest.raises(Crash):
        stack.provisioning(crash_at(RetireCheckpoints.APP_CLIENT_DELETED)).retire_client(NAME)

    stack.provisioning().retire_client(NAME)

    assert stack.zus_clients_named(NAME) == []
    assert stack.aws.secretsmanager.describe_secret(SecretId="zus-m2m/test/billing-service").get("DeletedDate")
    assert stack.item(NAME, "record") is None


def test_the_bootstrap_admin_cannot_be_deleted(stack: Stack) -> None:
    with pytest.raises(errors.ResourceConflict):
        stack.provisioning().retire_client("zus-m2m-admin")

    assert stack.stats()["appClients"] == 1


def test_a_deleted_name_can_be_provisioned_again_within_the_recovery_window(stack: Stack) -> None:
    first, _ = stack.provisioning().create_client(CreateRequest(NAME))
    stack.provisioning().retire_client(NAME)

    second, created = stack.provisioning().create_client(CreateRequest(NAME))

    assert created is True
    assert second.app_client_id != first.app_client_id
    assert second.secret_arn == first.secret_arn
    description = stack.aws.secretsmanager.describe_secret(SecretId="zus-m2m/test/billing-service")
    assert description.get("DeletedDate") is None
    stack.assert_usable()


def test_with_a_rotation_function_create_schedules_rotation_and_a_start_leaves_it_pending(
    aws: Aws, provisioning_stack_with_rotation: Stack, rotation_function_arn: str
) -> None:
    stack = provisioning_stack_with_rotation
    provisioning = stack.provisioning()
    record, _ = provisioning.create_client(CreateRequest(NAME))
    secret_id = "zus-m2m/test/billing-service"

    description = aws.secretsmanager.describe_secret(SecretId=secret_id)
    assert description["RotationEnabled"] is True
    assert description["RotationLambdaARN"] == rotation_function_arn
    assert description["RotationRules"]["AutomaticallyAfterDays"] == 30
    assert [stages for stages in description["VersionIdsToStages"].values() if "AWSPENDING" in stages] == []
    assert isinstance(provisioning.queries.get(NAME)["nextRotation"], int)

    provisioning.start_rotation(NAME)

    assert [arn for arn, _ in find_started_rotations(aws.secretsmanager)] == [record.secret_arn]
    with pytest.raises(errors.ResourceConflict):
        provisioning.start_rotation(NAME)
    stack.assert_usable()  # AWSCURRENT is untouched until the rotation function runs


def _labels(stack: Stack) -> list[list[str]]:
    versions = stack.aws.secretsmanager.describe_secret(SecretId="zus-m2m/test/billing-service")["VersionIdsToStages"]
    return [sorted(stages) for stages in versions.values() if stages]


@pytest.mark.parametrize("stuck_after", ["RotateSecret", "createSecret"])
def test_a_client_deleted_while_its_rotation_is_stuck_can_be_created_again_at_once(
    provisioning_stack_with_rotation: Stack, stuck_after: str
) -> None:
    # Given a client whose rotation started and stopped moving: before createSecret ran (a value-less
    # AWSPENDING version), or after it stored the new secret
    stack = provisioning_stack_with_rotation
    first, _ = stack.provisioning().create_client(CreateRequest(NAME))
    stack.provisioning().start_rotation(NAME)
    if stuck_after == "createSecret":
        [(arn, version)] = find_started_rotations(stack.aws.secretsmanager)
        stack.steps().run("createSecret", arn, version)

    # When it is deleted
    stack.provisioning().retire_client(NAME)

    # Then the rotation is cancelled and cleaned: no AWSPENDING left, scheduled rotation off
    description = stack.aws.secretsmanager.describe_secret(SecretId="zus-m2m/test/billing-service")
    assert description["RotationEnabled"] is False
    assert _labels(stack) == [["AWSCURRENT"]]
    assert find_started_rotations(stack.aws.secretsmanager) == []

    # And the name can be created again at once: one new Zus client, its secret current, one AWSCURRENT
    second, created = stack.provisioning().create_client(CreateRequest(NAME))

    assert created is True
    assert second.app_client_id != first.app_client_id
    stack.assert_usable()
    assert stack.record_status(NAME) == "active"
    assert sorted(_labels(stack)) == [["AWSCURRENT"], ["AWSPREVIOUS"]]
    assert stack.aws.secretsmanager.describe_secret(SecretId="zus-m2m/test/billing-service")["RotationEnabled"]
    # ... and it rotates like any client
    stack.provisioning().start_rotation(NAME)
    [rotation] = find_started_rotations(stack.aws.secretsmanager)
    before = stack.stored()
    steps = stack.steps()
    drive_rotation(lambda event: steps.run(event["Step"], event["SecretId"], event["ClientRequestToken"]), *rotation)
    assert stack.assert_usable()["clientSecret"] != before["clientSecret"]
    assert sorted(_labels(stack)) == [["AWSCURRENT"], ["AWSPREVIOUS"]]


def test_next_rotation_counts_from_the_last_rotation_not_the_creation(provisioning_stack_with_rotation: Stack) -> None:
    stack = provisioning_stack_with_rotation
    provisioning = stack.provisioning()
    record, _ = provisioning.create_client(CreateRequest(NAME))
    scheduled = provisioning.queries.get(NAME)["nextRotation"]
    assert scheduled >= record.created_at + 30 * 86400  # the creation put it under rotation
    while int(time.time()) <= scheduled - 30 * 86400:  # Secrets Manager's dates are whole seconds here
        time.sleep(0.05)

    provisioning.start_rotation(NAME)

    shown = provisioning.queries.get(NAME)
    assert shown["nextRotation"] > scheduled
    assert shown["nextRotation"] == shown["lastRotation"] + 30 * 86400


# --- what containers may still serve after a delete or a re-create (issue 17) -----------------------------


def _subject(access_token: str) -> str:
    """The client a Zus token was issued to (its ``sub`` claim, ``<clientId>@clients``)."""
    payload = access_token.split(".")[1]
    return str(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["sub"])


def _bound_passes(vendor: TokenVendor) -> None:
    """As if the container's revalidation bound had passed since it last read the record."""
    vendor.policy = dataclasses.replace(vendor.policy, revalidate_seconds=0.0)


def test_a_deleted_client_stops_being_served_by_every_container_within_the_bound(stack: Stack) -> None:
    stack.provisioning().create_client(CreateRequest(NAME, consumers=(stack.CONSUMER_ROLE,)))
    container = stack.vendor()
    container.vend(stack.CONSUMER, NAME, 60)

    retired_at = time.time()
    stack.provisioning().retire_client(NAME)
    _assert_tombstone(stack.item(NAME, "token"), retired_at)  # the table is purged at once
    _bound_passes(container)

    with pytest.raises(errors.Forbidden):
        container.vend(stack.CONSUMER, NAME, 60)
    with pytest.raises(errors.ResourceNotFound):
        container.vend(stack.ADMIN_CALLER, NAME, 60)


def test_a_recreated_name_is_never_served_the_deleted_clients_token(stack: Stack) -> None:
    # Given a container that served the first client of the name
    first, _ = stack.provisioning().create_client(CreateRequest(NAME, consumers=(stack.CONSUMER_ROLE,)))
    container = stack.vendor()
    old = container.vend(stack.CONSUMER, NAME, 60)
    assert _subject(old.access_token) == f"{first.client_id}@clients"

    # When the name is deleted and created again (another Zus app client)
    stack.provisioning().retire_client(NAME)
    second, _ = stack.provisioning().create_client(CreateRequest(NAME, consumers=(stack.CONSUMER_ROLE,)))
    assert second.app_client_id != first.app_client_id
    _bound_passes(container)

    # Then the container serves the new client's token, which Zus accepts; the table's is bound to it
    served = container.vend(stack.CONSUMER, NAME, 60)
    assert _subject(served.access_token) == f"{second.client_id}@clients"
    assert stack.zus_client.get_app_client(second.app_client_id, served.access_token).id == second.app_client_id
    item = stack.item(NAME, "token")
    assert item is not None
    assert item["appClientId"]["S"] == second.app_client_id


def test_a_consumer_removed_by_patch_is_refused_at_once(stack: Stack) -> None:
    # Given a consumer served from the table (its token item carries the record's copy)
    other = "arn:aws:iam::123456789012:role/reporting"
    stack.provisioning().create_client(CreateRequest(NAME, consumers=(stack.CONSUMER_ROLE, other)))
    container = stack.vendor()
    container.vend(stack.CONSUMER, NAME, 60)

    # When a PATCH removes it
    stack.provisioning().update_consumers(NAME, (other,))

    # Then the token item says so as the PATCH answers, and the next read refuses it: a new container's,
    # and this one's once its bound has passed
    item = stack.item(NAME, "token")
    assert item is not None
    assert [entry["S"] for entry in item["consumers"]["L"]] == [other]
    with pytest.raises(errors.Forbidden):
        stack.vendor().vend(stack.CONSUMER, NAME, 60)
    _bound_passes(container)
    with pytest.raises(errors.Forbidden):
        container.vend(stack.CONSUMER, NAME, 60)


def test_work_in_flight_when_a_client_is_deleted_writes_nothing_of_it_after(stack: Stack) -> None:
    # Given a fetch of a client's token in flight (its lease taken: a pre-refresh, a vend call) when the
    # client is deleted
    first, _ = stack.provisioning().create_client(CreateRequest(NAME, consumers=(stack.CONSUMER_ROLE,)))
    old = stack.vendor().vend(stack.CONSUMER, NAME, 60)
    now = time.time()
    assert stack.table.acquire_lease(NAME, "worker/1", now, now + 30).taken
    stack.provisioning().retire_client(NAME)

    # When that work goes on: it stores its token, another call takes the lease, one marks the client in
    # use, one records Zus's pause
    stack.table.put_token(NAME, old, "worker/1")
    stack.table.put_token(NAME, old, None)
    with pytest.raises(errors.ResourceNotFound, match="is being deleted"):
        stack.table.acquire_lease(NAME, "vend/2", now, now + 30)
    stack.table.mark_requested(NAME, now)
    stack.table.block(NAME, now + 60)

    # Then the token item is still the tombstone the delete left
    _assert_tombstone(stack.item(NAME, "token"), now)

    # and the name created again (another Zus app client) is served its own client's token
    second, _ = stack.provisioning().create_client(CreateRequest(NAME, consumers=(stack.CONSUMER_ROLE,)))
    assert second.app_client_id != first.app_client_id
    served = stack.vendor().vend(stack.CONSUMER, NAME, 60)
    assert _subject(served.access_token) == f"{second.client_id}@clients"
    item = stack.item(NAME, "token")
    assert item is not None
    assert item["recordStatus"]["S"] == "active"
    assert item["recordAppClientId"]["S"] == item["appClientId"]["S"] == second.app_client_id


def _assert_tombstone(item: dict[str, Any] | None, retired_at: float) -> None:
    """A deleted client's token item: nothing but its keys, the copy's status "deleting" and a TTL within
    the hour after the delete."""
    assert item is not None
    assert set(item) == {"pk", "sk", "recordStatus", "ttl"}, sorted(item)
    assert item["recordStatus"]["S"] == "deleting"
    assert retired_at - 1 <= float(item["ttl"]["N"]) - 3600 <= time.time()


def test_a_cached_token_of_another_app_client_is_never_served(stack: Stack) -> None:
    # Given the table still holds a token minted for a client deleted under this name (e.g. one a
    # refresh wrote after the delete's tombstone expired)
    record, _ = stack.provisioning().create_client(CreateRequest(NAME, consumers=(stack.CONSUMER_ROLE,)))
    stack.aws.dynamodb.update_item(
        TableName=stack.aws.table_name,
        Key=client_key(NAME, "token"),
        UpdateExpression="SET accessToken = :token, appClientId = :app, expiresAt = :expires",
        ExpressionAttributeValues={
            ":token": {"S": "a-deleted-clients-token"},
            ":app": {"S": "a-deleted-app-client"},
            ":expires": {"N": str(int(time.time()) + 3000)},
        },
    )

    served = stack.vendor().vend(stack.CONSUMER, NAME, 60)

    assert served.access_token != "a-deleted-clients-token"
    assert _subject(served.access_token) == f"{record.client_id}@clients"


def test_the_bootstrap_admins_token_lives_in_its_own_partition(stack: Stack) -> None:
    stack.provisioning().create_client(CreateRequest(NAME))

    admin = stack.aws.dynamodb.get_item(
        TableName=stack.aws.table_name, Key={"pk": {"S": "admin#zus-m2m-admin"}, "sk": {"S": "token"}}
    )
    assert "accessToken" in admin["Item"]
    assert stack.item("zus-m2m-admin", "token") is None
