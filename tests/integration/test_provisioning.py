"""Provisioning against moto server and the Zus emulator, over real HTTP (no mocks of boto3 or requests)."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from aws_lambda_powertools import Metrics

from zus_local.aws_setup import store_admin_secret
from zus_m2m import errors, wiring
from zus_m2m.aws.token_table import client_key
from zus_m2m.provisioning import AdminForbidden, CreateRequest, Provisioner, Steps
from zus_m2m.settings import Settings
from zus_m2m.zus.client import ZusClient

NAME = "billing-service"
ADMIN_SECRET = "zus-m2m/test/zus-m2m-admin"
ADMIN_ID, ADMIN_PASSWORD = "local-admin", "local-admin-secret"


class Crash(BaseException):
    """The function dying mid-flow: no except clause in the flow sees it."""


def crash_at(step: str):
    def checkpoint(reached: str) -> None:
        if reached == step:
            raise Crash(step)

    return checkpoint


class Stack:
    """Provisioning wired to moto and the emulator, with the bootstrap admin secret stored."""

    def __init__(self, aws, zus) -> None:
        self.aws = aws
        self.zus = zus
        self.settings = Settings.from_env(
            {
                "TABLE_NAME": aws.table_name,
                "ADMIN_SECRET_NAME": ADMIN_SECRET,
                "STAGE": "test",
                "ZUS_API_BASE_URL": zus.url,
                "ZUS_AUTH_BASE_URL": zus.url,
            }
        )
        self.zus_client = ZusClient(self.settings.zus, timeout=(1.0, 2.0))
        self.admin_token = self.zus_client.request_token(ADMIN_ID, ADMIN_PASSWORD).access_token
        admin = next(c for c in self.zus_client.list_app_clients(self.admin_token) if c.client_id == ADMIN_ID)
        self.store_admin(admin.id, ADMIN_ID, ADMIN_PASSWORD, "Builder Admin")

    def store_admin(self, app_client_id: str, client_id: str, client_secret: str, role_name: str) -> None:
        store_admin_secret(
            self.aws.secretsmanager,
            ADMIN_SECRET,
            {
                "name": "zus-m2m-admin",
                "appClientId": app_client_id,
                "clientId": client_id,
                "clientSecret": client_secret,
                "roleName": role_name,
            },
        )

    def container(self, checkpoint=None, **policy) -> Provisioner:
        """What one new Lambda container builds: its own boto3 clients, Zus session and caches."""
        provisioner = wiring.provisioner(
            self.settings,
            Metrics(namespace="ZusM2MTest", service="test"),
            dynamodb=self.aws.client("dynamodb"),
            secretsmanager=self.aws.client("secretsmanager"),
            zus=ZusClient(self.settings.zus, timeout=(1.0, 2.0)),
            checkpoint=checkpoint,
        )
        if policy:
            provisioner.policy = dataclasses.replace(provisioner.policy, **policy)
        return provisioner

    def stats(self) -> dict:
        return requests.get(f"{self.zus.url}/_emulator/stats", timeout=5).json()

    def emulator(self, route: str, **body) -> None:
        requests.post(f"{self.zus.url}/_emulator/{route}", json=body, timeout=5).raise_for_status()

    def zus_clients_named(self, name: str) -> list:
        return [c for c in self.zus_client.list_app_clients(self.admin_token) if c.name == name]

    def stored(self, name: str = NAME) -> dict:
        value = self.aws.secretsmanager.get_secret_value(SecretId=f"zus-m2m/test/{name}", VersionStage="AWSCURRENT")
        return json.loads(value["SecretString"])

    def assert_usable(self, name: str = NAME) -> dict:
        """One Zus client of that name, and the stored secret obtains a token that can read it."""
        [client] = self.zus_clients_named(name)
        stored = self.stored(name)
        assert stored["appClientId"] == client.id
        token = self.zus_client.request_token(stored["clientId"], stored["clientSecret"]).access_token
        assert self.zus_client.get_app_client(client.id, token).id == client.id
        return stored

    def item(self, name: str, kind: str) -> dict | None:
        return self.aws.dynamodb.get_item(
            TableName=self.aws.table_name, Key=client_key(name, kind), ConsistentRead=True
        ).get("Item")


@pytest.fixture
def stack(aws, zus) -> Stack:
    return Stack(aws, zus)


def test_the_guides_flow_end_to_end(stack: Stack) -> None:
    record, created = stack.container().create(CreateRequest(NAME))

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
    wiring.token_vendor(
        stack.settings,
        Metrics(namespace="ZusM2MTest", service="test"),
        dynamodb=stack.aws.client("dynamodb"),
        secretsmanager=stack.aws.client("secretsmanager"),
        zus=ZusClient(stack.settings.zus),
    ).vend(NAME, 60)
    assert stack.stats()["tokenRequests"][client.client_id] == before
    # the record is in the table, and nowhere is the secret
    item = stack.item(NAME, "record")
    assert item is not None
    assert item["status"]["S"] == "active"
    assert item["appClientId"]["S"] == client.id
    assert stored["clientSecret"] not in json.dumps(item)
    assert stored["clientSecret"] not in json.dumps(record.to_json())


def test_the_same_request_again_answers_the_same_record_and_creates_nothing(stack: Stack) -> None:
    first, _ = stack.container().create(CreateRequest(NAME))
    clients = stack.stats()["appClients"]

    again, created = stack.container().create(CreateRequest(NAME))

    assert created is False
    assert again == first
    assert stack.stats()["appClients"] == clients == 2  # the admin and ours


def test_the_same_name_with_another_role_is_409(stack: Stack) -> None:
    stack.container().create(CreateRequest(NAME))

    with pytest.raises(errors.ResourceConflict) as caught:
        stack.container().create(CreateRequest(NAME, "Care Team User"))

    assert caught.value.http_status == 409
    assert len(stack.zus_clients_named(NAME)) == 1


def test_twenty_parallel_creates_in_twenty_containers_make_one_zus_client(stack: Stack) -> None:
    containers = [stack.container() for _ in range(20)]
    start = threading.Barrier(20)

    def create(provisioner: Provisioner):
        start.wait()
        return provisioner.create(CreateRequest(NAME))

    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(create, containers))

    assert stack.stats()["appClients"] == 2
    assert len(stack.zus_clients_named(NAME)) == 1
    assert len({record for record, _ in answers}) == 1
    assert sorted(created for _, created in answers) == [False] * 19 + [True]
    stack.assert_usable()


def test_a_crash_between_zus_create_and_the_secret_store_is_recovered_by_the_retry(stack: Stack) -> None:
    with pytest.raises(Crash):
        stack.container(crash_at(Steps.APP_CLIENT_CREATED), claim_seconds=1.0).create(CreateRequest(NAME))
    [orphan] = stack.zus_clients_named(NAME)
    assert stack.item(NAME, "record")["status"]["S"] == "creating"
    with pytest.raises(stack.aws.secretsmanager.exceptions.ResourceNotFoundException):
        stack.stored()

    record, created = stack.container(claim_seconds=1.0).create(CreateRequest(NAME))

    assert created is True
    assert record.app_client_id == orphan.id
    assert stack.stats()["appClients"] == 2
    stack.assert_usable()
    assert stack.item(NAME, "record")["status"]["S"] == "active"


def test_a_retry_while_the_dead_attempts_claim_is_live_answers_503_with_retry_after(stack: Stack) -> None:
    with pytest.raises(Crash):
        stack.container(crash_at(Steps.APP_CLIENT_CREATED)).create(CreateRequest(NAME))

    with pytest.raises(errors.TemporarilyUnavailable) as caught:
        stack.container(wait_seconds=0.3).create(CreateRequest(NAME))

    assert caught.value.http_status == 503
    assert 20 < caught.value.retry_after <= 40
    assert len(stack.zus_clients_named(NAME)) == 1


def test_zus_failing_the_create_is_503_with_retry_after_then_the_retry_succeeds(stack: Stack) -> None:
    stack.emulator("faults", status=503, rate=1.0, paths=["/auth/app-clients"])

    with pytest.raises(errors.ZusM2MError) as caught:
        stack.container().create(CreateRequest(NAME))

    assert caught.value.http_status == 503
    assert caught.value.retry_after is not None
    assert caught.value.retry_after >= 1
    stack.emulator("faults")
    assert stack.zus_clients_named(NAME) == []
    with pytest.raises(stack.aws.secretsmanager.exceptions.ResourceNotFoundException):
        stack.stored()

    _, created = stack.container().create(CreateRequest(NAME))

    assert created is True
    assert stack.stats()["appClients"] == 2
    stack.assert_usable()


def test_a_zus_429_during_create_is_503_not_429(stack: Stack) -> None:
    stack.emulator("faults", status=429, rate=1.0, retryAfter=17, paths=["/auth/app-clients"])

    with pytest.raises(errors.TemporarilyUnavailable) as caught:
        stack.container().create(CreateRequest(NAME))

    assert caught.value.http_status == 503
    assert caught.value.retry_after == 17


def test_an_unknown_role_is_422_listing_the_roles(stack: Stack) -> None:
    with pytest.raises(errors.UnknownRole) as caught:
        stack.container().create(CreateRequest(NAME, "Janitor"))

    assert caught.value.http_status == 422
    assert "'Janitor'" in caught.value.detail
    assert "Builder Admin, Care Team User" in caught.value.detail
    assert stack.item(NAME, "record") is None
    assert stack.stats()["appClients"] == 1


def test_a_care_team_user_admin_surfaces_zus_403_as_a_clear_error(stack: Stack) -> None:
    role = stack.zus_client.find_role("Care Team User", stack.admin_token)
    weak = stack.zus_client.create_app_client("weak-admin", role.id, stack.admin_token)
    stack.store_admin(weak.app_client.id, weak.app_client.client_id, weak.client_secret, "Care Team User")

    with pytest.raises(AdminForbidden) as caught:
        stack.container().create(CreateRequest(NAME))

    assert caught.value.http_status == 503
    assert "role lookup" in caught.value.detail
    assert "403" in caught.value.detail
    assert "Builder Admin role" in caught.value.detail
    assert weak.client_secret not in caught.value.detail
    assert stack.zus_clients_named(NAME) == []
    assert stack.item(NAME, "record") is None


def test_get_shows_rotation_token_expiry_and_budget_never_a_secret(stack: Stack) -> None:
    provisioner = stack.container()
    provisioner.create(CreateRequest(NAME))

    shown = provisioner.get(NAME)

    token_item = stack.item(NAME, "token")
    assert token_item is not None
    assert shown["token"] == {"cached": True, "expiresAt": int(float(token_item["expiresAt"]["N"]))}
    assert shown["budget"] == {"usedLastHour": 1, "limit": 100}
    assert shown["lastRotation"] is None
    assert shown["nextRotation"] >= int(time.time()) + 29 * 86400
    text = json.dumps(shown)
    assert stack.stored()["clientSecret"] not in text
    assert token_item["accessToken"]["S"] not in text
    assert [r.name for r in provisioner.list_clients()] == [NAME, "zus-m2m-admin"]


def test_start_rotation_starts_one_and_refuses_while_one_is_in_progress(stack: Stack) -> None:
    provisioner = stack.container()
    record, _ = provisioner.create(CreateRequest(NAME))
    secret_id = "zus-m2m/test/billing-service"

    answer = provisioner.start_rotation(NAME)

    assert answer["secretArn"] == record.secret_arn
    assert stack.aws.secretsmanager.describe_secret(SecretId=secret_id).get("LastRotatedDate") is not None
    # A rotation whose createSecret step stored AWSPENDING and has not finished
    stack.aws.secretsmanager.put_secret_value(
        SecretId=secret_id,
        SecretString=json.dumps({"clientId": "x", "clientSecret": "y"}),
        VersionStages=["AWSPENDING"],
    )
    with pytest.raises(errors.ResourceConflict):
        provisioner.start_rotation(NAME)
    with pytest.raises(errors.ResourceNotFound):
        provisioner.start_rotation("nobody")


def test_delete_retires_the_client_with_its_recovery_window(stack: Stack) -> None:
    provisioner = stack.container()
    record, _ = provisioner.create(CreateRequest(NAME))
    assert stack.item(NAME, "token") is not None

    provisioner.delete(NAME)

    description = stack.aws.secretsmanager.describe_secret(SecretId="zus-m2m/test/billing-service")
    assert description.get("DeletedDate") is not None
    days = (description["DeletedDate"].timestamp() - time.time()) / 86400
    assert 6.9 < days <= 7.0
    with pytest.raises(errors.ZusNotFound):
        stack.zus_client.get_app_client(record.app_client_id, stack.admin_token)
    assert stack.item(NAME, "token") is None
    assert stack.item(NAME, "budget") is None
    assert stack.item(NAME, "record") is None
    with pytest.raises(errors.ResourceNotFound):
        provisioner.get(NAME)
    with pytest.raises(errors.ResourceNotFound):
        provisioner.delete(NAME)


def test_a_delete_interrupted_after_zus_is_finished_by_the_retry(stack: Stack) -> None:
    stack.container().create(CreateRequest(NAME))
    with pytest.raises(Crash):
        stack.container(crash_at(Steps.APP_CLIENT_DELETED)).delete(NAME)

    stack.container().delete(NAME)

    assert stack.zus_clients_named(NAME) == []
    assert stack.aws.secretsmanager.describe_secret(SecretId="zus-m2m/test/billing-service").get("DeletedDate")
    assert stack.item(NAME, "record") is None


def test_the_bootstrap_admin_cannot_be_deleted(stack: Stack) -> None:
    with pytest.raises(errors.ResourceConflict):
        stack.container().delete("zus-m2m-admin")

    assert stack.stats()["appClients"] == 1


def test_a_deleted_name_can_be_provisioned_again_within_the_recovery_window(stack: Stack) -> None:
    first, _ = stack.container().create(CreateRequest(NAME))
    stack.container().delete(NAME)

    second, created = stack.container().create(CreateRequest(NAME))

    assert created is True
    assert second.app_client_id != first.app_client_id
    assert second.secret_arn == first.secret_arn
    description = stack.aws.secretsmanager.describe_secret(SecretId="zus-m2m/test/billing-service")
    assert description.get("DeletedDate") is None
    stack.assert_usable()


def test_with_a_rotation_function_create_schedules_rotation_and_a_start_leaves_it_pending(
    aws, zus, rotation_function_arn: str
) -> None:
    from zus_local.secrets_manager_rotation import find_started_rotations

    stack = Stack(aws, zus)
    stack.settings = dataclasses.replace(stack.settings, rotation_function_arn=rotation_function_arn)
    provisioner = stack.container()
    record, _ = provisioner.create(CreateRequest(NAME))
    secret_id = "zus-m2m/test/billing-service"

    description = aws.secretsmanager.describe_secret(SecretId=secret_id)
    assert description["RotationEnabled"] is True
    assert description["RotationLambdaARN"] == rotation_function_arn
    assert description["RotationRules"]["AutomaticallyAfterDays"] == 30
    assert [stages for stages in description["VersionIdsToStages"].values() if "AWSPENDING" in stages] == []
    assert isinstance(provisioner.get(NAME)["nextRotation"], int)

    provisioner.start_rotation(NAME)

    assert [arn for arn, _ in find_started_rotations(aws.secretsmanager)] == [record.secret_arn]
    with pytest.raises(errors.ResourceConflict):
        provisioner.start_rotation(NAME)
    stack.assert_usable()  # AWSCURRENT is untouched until the rotation function runs
