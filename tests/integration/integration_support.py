"""What the integration tests share besides their fixtures (conftest.py): a deployment of the service on
moto and the Zus emulator (provisioning, vending and rotation stacks), the work queue, metrics a test can
count, and waiting on observed state."""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import boto3
import pytest
import requests
from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricResolution, MetricUnit

from zus_emulator import EmulatorServer
from zus_emulator.config import AUTH0
from zus_local.aws_setup import create_queues, store_admin_secret
from zus_local.lambda_context import LocalLambdaContext
from zus_local.queue_poller import handled, sqs_event
from zus_local.secrets_manager_rotation import drive_rotation, find_started_rotations
from zus_local.stand_ins import ResolveContext
from zus_local.template_model import load_model
from zus_m2m import errors, wiring
from zus_m2m.access import Caller
from zus_m2m.admin_values import AppClient
from zus_m2m.aws.client_records import DynamoClientRecords
from zus_m2m.aws.secrets import SecretsManagerStore
from zus_m2m.aws.table import TableKeys, client_key
from zus_m2m.aws.token_table import DynamoTokenTable
from zus_m2m.ports import Checkpoint, no_checkpoint
from zus_m2m.rotation.steps import RotationSteps
from zus_m2m.rotation.sweep import RotationSweep
from zus_m2m.settings import Settings
from zus_m2m.tokens.policy import VendingPolicy
from zus_m2m.tokens.vendor import TokenVendor
from zus_m2m.values import AWSCURRENT, AWSPENDING, ClientCredentials, ClientRecord
from zus_m2m.zus.client import ZusClient

T = TypeVar("T")
# The load_function fixture: functions/<name>/app.py imported afresh with an environment.
LoadFunction = Callable[[str, dict[str, str]], Any]


def wait_until(condition: Callable[[], T | None], what: str, timeout: float = 20.0, interval: float = 0.05) -> T:
    """What ``condition`` returns once it is true (a truthy value), polled every ``interval`` seconds:
    observed state, never a fixed sleep. Fails naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def assert_waits_as_zus_said(dialect: str, seconds: int, sent: float, answered: float, retry_after: float) -> None:
    """A 429 that asked for ``seconds`` (a request sent at ``sent``, answered at ``answered``) became the
    wait ``retry_after``, counted from the answer. Auth0 names an instant, a whole epoch second at least
    ``seconds`` after its answer: a caller that waits as told comes back no earlier than that instant
    (the wait itself may be milliseconds under ``seconds``). RFC 6749's Retry-After is in seconds."""
    # Messages of their own: this module's asserts are not rewritten by pytest.
    if dialect == AUTH0:
        reset = math.ceil(sent + seconds)
        assert reset <= answered + retry_after, f"waiting {retry_after} s from {answered} ends before {reset}"
        assert retry_after <= seconds + 1, f"waiting {retry_after} s for a reset {seconds} s away"
    else:
        assert retry_after == seconds, f"waiting {retry_after} s where Retry-After said {seconds}"


@dataclass
class Aws:
    """A clean moto account with the service's table (the ``aws`` fixture)."""

    endpoint: str
    table_name: str
    dynamodb: Any
    secretsmanager: Any

    def client(self, service: str) -> Any:
        return boto3.client(service, endpoint_url=self.endpoint, region_name="us-east-1")  # type: ignore[call-overload]


TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"


class CountingMetrics(Metrics):
    """Powertools Metrics whose counts a test can read (Powertools shares its metric set across instances)."""

    def __init__(self) -> None:
        super().__init__(namespace="ZusM2MTest", service="test")
        self.counts: Counter[str] = Counter()

    def add_metric(
        self, name: str, unit: MetricUnit | str, value: float, resolution: MetricResolution | int = 60
    ) -> None:
        self.counts[name] += int(value)


class Deployment:
    """One deployment of the service on moto and the Zus emulator: its settings, a Zus client with an
    admin token, the bootstrap admin's secret stored as an operator stores it (no tags), and what a new
    Lambda container builds (its own boto3 clients, Zus session and caches)."""

    ADMIN = "zus-m2m-admin"
    ADMIN_SECRET = "zus-m2m/test/zus-m2m-admin"
    ADMIN_ID, ADMIN_PASSWORD = "local-admin", "local-admin-secret"
    # The stack's admin (ADMIN_PRINCIPALS) and a consumer, as API Gateway's IAM authorizer names them.
    ADMIN_PRINCIPAL = "arn:aws:iam::123456789012:role/platform-admin"
    ADMIN_CALLER = Caller("arn:aws:sts::123456789012:assumed-role/platform-admin/alice", "123456789012")
    CONSUMER_ROLE = "arn:aws:iam::123456789012:role/billing-service"
    CONSUMER = Caller("arn:aws:sts::123456789012:assumed-role/billing-service/task-1", "123456789012")
    # The function roles a client secret's resource policy names (template.yaml's STACK_ROLE_ARNS).
    STACK_ROLE_ARNS = ",".join(
        f"{name}=arn:aws:iam::123456789012:role/zus-m2m-test-{name}"
        for name in ("token-vending", "provisioning", "rotation", "scheduled", "worker")
    )

    def __init__(self, aws: Aws, zus: EmulatorServer, **environment: str) -> None:
        self.aws = aws
        self.zus = zus
        # The stack's key (template.yaml's KmsKey): secrets and the list's page tokens are sealed with it.
        self.kms_key_id = aws.client("kms").create_key(Description="zus-m2m test")["KeyMetadata"]["Arn"]
        self.environment = {
            "KMS_KEY_ID": self.kms_key_id,
            "TABLE_NAME": aws.table_name,
            "ADMIN_SECRET_NAME": self.ADMIN_SECRET,
            "STAGE": "test",
            "ZUS_API_BASE_URL": zus.url,
            "ZUS_AUTH_BASE_URL": zus.url,
            "ADMIN_PRINCIPALS": self.ADMIN_PRINCIPAL,
            "STACK_ROLE_ARNS": self.STACK_ROLE_ARNS,
            **environment,
        }
        self.settings = Settings.from_env(self.environment)
        self.zus_client = ZusClient(self.settings.zus, timeout=(1.0, 2.0))
        self.admin_token = self.zus_client.request_token(self.ADMIN_ID, self.ADMIN_PASSWORD).access_token
        admin = next(c for c in self.zus_client.list_app_clients(self.admin_token) if c.client_id == self.ADMIN_ID)
        self.store_admin(admin.id, self.ADMIN_ID, self.ADMIN_PASSWORD, "Builder Admin")
        self.keys = TableKeys(self.ADMIN)
        self.records = DynamoClientRecords(aws.dynamodb, aws.table_name, self.keys)
        self.table = DynamoTokenTable(aws.dynamodb, aws.table_name, self.keys)

    def forget_tokens(self, client: str) -> None:
        """Delete the client's token and budget items: its next vend call is cold (a fresh mint)."""
        for kind in ("token", "budget"):
            self.aws.dynamodb.delete_item(TableName=self.aws.table_name, Key=self.keys.key(client, kind))

    def store_admin(self, app_client_id: str, client_id: str, client_secret: str, role_name: str) -> None:
        store_admin_secret(
            self.aws.secretsmanager,
            self.ADMIN_SECRET,
            {
                "name": self.ADMIN,
                "appClientId": app_client_id,
                "clientId": client_id,
                "clientSecret": client_secret,
                "roleName": role_name,
            },
        )

    def create_zus_client(self, name: str) -> tuple[AppClient, ClientCredentials]:
        """A Builder Admin app client made at Zus, and the credentials provisioning would store for it."""
        role = self.zus_client.find_role("Builder Admin", self.admin_token)
        created = self.zus_client.create_app_client(name, role.id, self.admin_token)
        credentials = ClientCredentials(
            name=name,
            app_client_id=created.app_client.id,
            client_id=created.app_client.client_id,
            client_secret=created.client_secret,
            role_id=role.id,
            role_name=role.name,
            audience=self.settings.zus.audience,
        )
        return created.app_client, credentials

    def write_record(self, credentials: ClientCredentials, secret_arn: str, consumers: tuple[str, ...]) -> None:
        """The record provisioning writes for a client it made (claim, then complete)."""
        owner = "test-setup"
        now = time.time()
        assert self.records.claim(
            credentials.name, credentials.role_name, consumers, owner, now, now + 40, previous_owner=None
        )
        record = ClientRecord(
            credentials.name,
            credentials.app_client_id,
            credentials.client_id,
            credentials.role_id,
            credentials.role_name,
            secret_arn,
            int(now),
            consumers,
        )
        assert self.records.complete(record, owner)

    def lambda_environment(self) -> dict[str, str]:
        """What template.yaml gives a function, pointed at moto and the emulator."""
        return {
            **self.environment,
            "AWS_ENDPOINT_URL": self.aws.endpoint,
            "POWERTOOLS_SERVICE_NAME": "zus-m2m",
            "POWERTOOLS_METRICS_NAMESPACE": "ZusM2MTest",
        }

    def new_container(self, metrics: Metrics | None = None, clock: Callable[[], float] = time.time) -> wiring.Container:
        return wiring.Container(
            self.settings,
            metrics or Metrics(namespace="ZusM2MTest", service="test"),
            aws=wiring.AwsClients(
                dynamodb=self.aws.client("dynamodb"),
                secretsmanager=self.aws.client("secretsmanager"),
                kms=self.aws.client("kms"),
            ),
            zus=ZusClient(self.settings.zus, timeout=(1.0, 2.0)),
            clock=clock,
        )

    def vendor(self, policy: VendingPolicy | None = None, *, ahead: float = 0.0) -> TokenVendor:
        """A new container's token vendor; ``ahead``: seconds its clock runs ahead of this one's (a token
        that lives less has expired for it, without waiting for that)."""
        return self.new_container(clock=lambda: time.time() + ahead).token_vendor(policy=policy)

    def provisioning(self, checkpoint: Checkpoint = no_checkpoint, **policy: Any) -> wiring.Provisioning:
        """A new container's provisioning use cases; ``policy`` overrides the create's claim timings."""
        provisioning = self.new_container().provisioning(checkpoint)
        if policy:
            create = provisioning.create_client
            create.policy = dataclasses.replace(create.policy, **policy)
        return provisioning

    def steps(self, metrics: Metrics | None = None) -> RotationSteps:
        """A new container of the rotation function: its rotation steps."""
        return self.new_container(metrics).rotation_steps()

    def sweep(self, metrics: Metrics | None = None, **policy: Any) -> RotationSweep:
        """A new container of the worker function: its rotation check."""
        sweep = self.new_container(metrics).rotation_sweep()
        if policy:  # the sweep's, and its repair's (which checks which secret works)
            sweep.policy = dataclasses.replace(sweep.policy, **policy)
            sweep.repair.policy = dataclasses.replace(sweep.repair.policy, **policy)
        return sweep

    def work_queue(self) -> WorkQueue:
        """The template's work queue and its dead letters, made in moto; the scheduled function finds it
        by WORK_QUEUE_URL."""
        queue = WorkQueue.made_in(self.aws)
        self.environment["WORK_QUEUE_URL"] = queue.url
        self.settings = Settings.from_env(self.environment)
        return queue

    def stats(self) -> dict[str, Any]:
        return dict(requests.get(f"{self.zus.url}/_emulator/stats", timeout=5).json())

    def emulator(self, route: str, **body: Any) -> None:
        requests.post(f"{self.zus.url}/_emulator/{route}", json=body, timeout=5).raise_for_status()


class ProvisioningStack(Deployment):
    """Provisioning wired to moto and the emulator, with the bootstrap admin secret stored."""

    CLIENT = "billing-service"  # the name the tests provision

    def zus_clients_named(self, name: str) -> list[AppClient]:
        return [c for c in self.zus_client.list_app_clients(self.admin_token) if c.name == name]

    def stored(self, name: str = CLIENT) -> dict[str, Any]:
        secret_id = self.settings.secret_naming.secret_id(name)
        value = self.aws.secretsmanager.get_secret_value(SecretId=secret_id, VersionStage="AWSCURRENT")
        return dict(json.loads(value["SecretString"]))

    def assert_usable(self, name: str = CLIENT) -> dict[str, Any]:
        """One Zus client of that name, and a token minted with the stored secret can read it."""
        [client] = self.zus_clients_named(name)
        stored = self.stored(name)
        assert stored["appClientId"] == client.id
        token = self.zus_client.request_token(stored["clientId"], stored["clientSecret"]).access_token
        assert self.zus_client.get_app_client(client.id, token).id == client.id
        return stored

    def record_status(self, name: str) -> str:
        item = self.item(name, "record")
        assert item is not None
        return str(item["status"]["S"])

    def item(self, name: str, kind: str) -> dict[str, Any] | None:
        item = self.aws.dynamodb.get_item(
            TableName=self.aws.table_name, Key=client_key(name, kind), ConsistentRead=True
        )
        found: dict[str, Any] | None = item.get("Item")
        return found


class VendingStack(Deployment):
    """Token vending wired to moto and the emulator, with one managed client's secret stored and its
    record naming ``CONSUMER``."""

    CLIENT = "billing-service"

    def __init__(self, aws: Aws, zus: EmulatorServer) -> None:
        super().__init__(aws, zus)
        self.app_client, self.credentials = self.create_zus_client(self.CLIENT)
        self.secret_id = self.settings.secret_naming.secret_id(self.CLIENT)
        arn = aws.secretsmanager.create_secret(Name=self.secret_id, SecretString=self.credentials.to_json())["ARN"]
        self.write_record(self.credentials, arn, (self.CONSUMER_ROLE,))

    def upstream_requests(self) -> int:
        return int(self.stats()["tokenRequests"].get(self.credentials.client_id, 0))


class RotationStack(Deployment):
    """Rotation wired to moto and the emulator: one managed client and the bootstrap admin stored."""

    CLIENT = "billing-service"

    def __init__(self, aws: Aws, zus: EmulatorServer, rotation_function_arn: str, **environment: str) -> None:
        super().__init__(aws, zus, ROTATION_FUNCTION_ARN=rotation_function_arn, **environment)
        self.secrets = SecretsManagerStore(aws.secretsmanager, max_age=0)
        self.app_client, credentials = self.create_zus_client(self.CLIENT)
        self.secret_id = self.settings.secret_naming.secret_id(self.CLIENT)
        arn = self.secrets.create(
            self.secret_id,
            credentials,
            kms_key_id="",
            tags=self.settings.secret_naming.tags(self.CLIENT),
            idempotency_key="00000000-0000-4000-8000-000000000001",
        )
        self.write_record(credentials, arn, (self.CONSUMER_ROLE,))

    def start(self, secret_id: str | None = None) -> tuple[str, str]:
        """Start a rotation as the service does; returns what Secrets Manager would invoke with."""
        secret_id = secret_id or self.secret_id
        self.secrets.start_rotation(secret_id, self.settings.rotation_function_arn)
        return self.started(secret_id)

    def started(self, secret_id: str) -> tuple[str, str]:
        arn = self.aws.secretsmanager.describe_secret(SecretId=secret_id)["ARN"]
        [rotation] = [found for found in find_started_rotations(self.aws.secretsmanager) if found[0] == arn]
        return rotation

    def drive(self, steps: RotationSteps, rotation: tuple[str, str], retries: int = 3) -> None:
        def invoke(event: dict[str, str]) -> None:
            steps.run(event["Step"], event["SecretId"], event["ClientRequestToken"])

        drive_rotation(invoke, *rotation, retries=retries, pause=0.01)

    def current(self, secret_id: str | None = None) -> ClientCredentials:
        credentials = self.secrets.read(secret_id or self.secret_id, AWSCURRENT, fresh=True)
        assert credentials is not None
        return credentials

    def stages(self, secret_id: str | None = None) -> dict[str, list[str]]:
        versions = self.aws.secretsmanager.describe_secret(SecretId=secret_id or self.secret_id)["VersionIdsToStages"]
        return {version: sorted(stages) for version, stages in versions.items() if stages}

    def assert_rotated_cleanly(self, before: ClientCredentials, secret_id: str | None = None, clients: int = 2) -> None:
        """AWSCURRENT works at Zus, the old secret does not, one Zus client, no rotation left pending."""
        secret_id = secret_id or self.secret_id
        current = self.current(secret_id)
        assert current.client_secret != before.client_secret
        assert current.app_client_id == before.app_client_id
        assert self.zus_client.request_token(current.client_id, current.client_secret).access_token
        with pytest.raises(errors.ZusCredentialsRefused):
            self.zus_client.request_token(before.client_id, before.client_secret)
        # Still exactly one Zus app client for it, and no other client created along the way.
        admin_credentials = self.current(self.ADMIN_SECRET)
        admin = self.zus_client.request_token(admin_credentials.client_id, admin_credentials.client_secret)
        found = self.zus_client.list_app_clients(admin.access_token)
        assert [c.client_id for c in found if c.id == current.app_client_id] == [current.client_id]
        assert len(found) == clients  # the admin and billing-service, unless a test provisioned more
        description = self.secrets.describe(secret_id)
        assert description is not None
        assert not description.rotation_in_progress
        assert description.version_at(AWSPENDING) is None  # the finished rotation's label was removed
        assert find_started_rotations(self.aws.secretsmanager) == []


@dataclass
class WorkQueue:
    """The work queue (and its dead letters) as template.yaml declares them, in moto, for stack
    ``zus-m2m-test``; ``deliver`` plays one poll of Lambda's event source mapping."""

    sqs: Any
    url: str
    dead_letters_url: str
    arn: str

    @classmethod
    def made_in(cls, aws: Any) -> WorkQueue:
        context = ResolveContext(
            stack_name="zus-m2m-test", parameters={"AdminPrincipals": Deployment.ADMIN_PRINCIPAL}, refs={"Table": "t"}
        )
        queues = load_model(TEMPLATE, context).queues
        sqs = aws.client("sqs")
        urls = create_queues(sqs, {name: queues[name] for name in ("WorkQueue", "WorkDeadLetterQueue")}, 360.0)
        return cls(sqs, urls["WorkQueue"], urls["WorkDeadLetterQueue"], queues["WorkQueue"].arn)

    def receive(self, url: str | None = None) -> list[dict[str, Any]]:
        answer = self.sqs.receive_message(QueueUrl=url or self.url, MaxNumberOfMessages=10, AttributeNames=["All"])
        return list(answer.get("Messages", []))

    def deliver(self, handler: Any, messages: list[dict[str, Any]] | None = None) -> tuple[list[str], Any]:
        """The worker handler invoked with a batch of the queue's messages, the handled ones deleted as
        Lambda does; the bodies delivered, and the handler's answer."""
        batch = self.receive() if messages is None else messages
        answer = handler.lambda_handler(sqs_event(batch, self.arn, "us-east-1"), LocalLambdaContext("worker", 60))
        done = handled(batch, answer, report_failures=True)
        for message in done:
            self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=message["ReceiptHandle"])
        return [message["Body"] for message in batch], answer
