"""Shared fixtures of the integration tests (real HTTP, no mocks)."""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterator

import pytest
import requests
from aws_lambda_powertools import Metrics

from zus_emulator import EmulatorConfig, EmulatorServer
from zus_local.aws_setup import store_admin_secret
from zus_local.secrets_manager_rotation import drive_rotation, find_started_rotations
from zus_m2m import errors, wiring
from zus_m2m.aws.secrets import SecretsManagerStore, managed_tags
from zus_m2m.aws.token_table import DynamoTokenTable
from zus_m2m.credentials import ClientCredentials
from zus_m2m.ports import AWSCURRENT, AWSPENDING
from zus_m2m.rotation import Rotator
from zus_m2m.settings import Settings
from zus_m2m.tokens.vendor import TokenVendor
from zus_m2m.zus.client import ZusClient

# --- Zus emulator ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def emulator() -> Iterator[EmulatorServer]:
    """One Zus emulator for the whole session, on a free port, without request logging."""
    server = EmulatorServer(host="127.0.0.1", port=0, config=EmulatorConfig(quiet=True)).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def zus(emulator: EmulatorServer) -> EmulatorServer:
    """The session's emulator, reset (only the admin client, default config, no faults) for this test."""
    response = requests.post(f"{emulator.url}/_emulator/reset", timeout=5)
    assert response.status_code == 204, response.text
    return emulator


# --- end of Zus emulator fixtures -----------------------------------------------------------------


# --- rotation: moto as Secrets Manager, and handlers loaded as Lambda would -------------------------


@pytest.fixture
def rotation_function_arn(aws) -> str:
    """A rotation function moto knows, so that RotateSecret leaves a value-less AWSPENDING version (the
    test then plays Secrets Manager with zus_local.secrets_manager_rotation). After the aws reset."""
    from zus_local.secrets_manager_rotation import register_rotation_function

    return register_rotation_function(aws.endpoint, "zus-m2m-test-rotation")


@pytest.fixture
def load_function(monkeypatch: pytest.MonkeyPatch):
    """Import ``functions/<name>/app.py`` afresh with the given environment, as a new Lambda container
    would (its module-level settings and clients read the environment once, at import)."""
    import importlib.util
    import uuid
    from pathlib import Path

    functions = Path(__file__).resolve().parents[2] / "functions"

    def load(name: str, environment: dict[str, str]):
        for key, value in environment.items():
            monkeypatch.setenv(key, value)
        spec = importlib.util.spec_from_file_location(f"{name}_app_{uuid.uuid4().hex}", functions / name / "app.py")
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


class CountingMetrics(Metrics):
    """Powertools Metrics whose counts a test can read (Powertools shares its metric set across instances)."""

    def __init__(self) -> None:
        super().__init__(namespace="ZusM2MTest", service="test")
        self.counts: Counter[str] = Counter()

    def add_metric(self, name, unit, value, resolution=60) -> None:  # type: ignore[override]
        self.counts[name] += value


class RotationStack:
    """Rotation wired to moto and the emulator: one managed client and the bootstrap admin stored."""

    CLIENT = "billing-service"
    ADMIN = "zus-m2m-admin"
    ADMIN_SECRET = "zus-m2m/test/zus-m2m-admin"
    ADMIN_ID, ADMIN_PASSWORD = "local-admin", "local-admin-secret"

    def __init__(self, aws, zus, rotation_function_arn: str) -> None:
        self.aws = aws
        self.zus = zus
        self.environment = {
            "TABLE_NAME": aws.table_name,
            "ADMIN_SECRET_NAME": self.ADMIN_SECRET,
            "STAGE": "test",
            "ZUS_API_BASE_URL": zus.url,
            "ZUS_AUTH_BASE_URL": zus.url,
            "ROTATION_FUNCTION_ARN": rotation_function_arn,
        }
        self.settings = Settings.from_env(self.environment)
        self.zus_client = ZusClient(self.settings.zus, timeout=(1.0, 2.0))
        self.store = SecretsManagerStore(aws.secretsmanager, max_age=0)
        self.table = DynamoTokenTable(aws.dynamodb, aws.table_name)
        self.admin_token = self.zus_client.request_token(self.ADMIN_ID, self.ADMIN_PASSWORD).access_token
        admin = next(c for c in self.zus_client.list_app_clients(self.admin_token) if c.client_id == self.ADMIN_ID)
        # As an operator stores it: no tags, found by its configured name.
        store_admin_secret(
            aws.secretsmanager,
            self.ADMIN_SECRET,
            {
                "name": self.ADMIN,
                "appClientId": admin.id,
                "clientId": self.ADMIN_ID,
                "clientSecret": self.ADMIN_PASSWORD,
                "roleName": "Builder Admin",
            },
        )
        role = self.zus_client.find_role("Builder Admin", self.admin_token)
        created = self.zus_client.create_app_client(self.CLIENT, role.id, self.admin_token)
        self.app_client = created.app_client
        credentials = ClientCredentials(
            name=self.CLIENT,
            app_client_id=created.app_client.id,
            client_id=created.app_client.client_id,
            client_secret=created.client_secret,
            role_id=role.id,
            role_name=role.name,
            audience=self.settings.zus.audience,
        )
        self.secret_id = self.settings.secret_name(self.CLIENT)
        self.store.create(
            self.secret_id,
            credentials,
            kms_key_id="",
            tags=managed_tags("test", self.CLIENT),
            request_token="00000000-0000-4000-8000-000000000001",
        )

    def lambda_environment(self) -> dict[str, str]:
        """What template.yaml gives a function, pointed at moto and the emulator."""
        return {
            **self.environment,
            "AWS_ENDPOINT_URL": self.aws.endpoint,
            "POWERTOOLS_SERVICE_NAME": "zus-m2m",
            "POWERTOOLS_METRICS_NAMESPACE": "ZusM2MTest",
        }

    def container(self) -> TokenVendor:
        """A fresh vendor: what one new Lambda container would build."""
        return wiring.token_vendor(
            self.settings,
            Metrics(namespace="ZusM2MTest", service="test"),
            dynamodb=self.aws.client("dynamodb"),
            secretsmanager=self.aws.client("secretsmanager"),
            zus=ZusClient(self.settings.zus, timeout=(1.0, 2.0)),
        )

    def rotator(self, metrics: Metrics | None = None, **policy: float) -> Rotator:
        """The rotation function's (or the scheduled function's) rotator, in a new container."""
        rotator = wiring.rotator(
            self.settings,
            metrics or Metrics(namespace="ZusM2MTest", service="test"),
            dynamodb=self.aws.client("dynamodb"),
            secretsmanager=self.aws.client("secretsmanager"),
            zus=ZusClient(self.settings.zus, timeout=(1.0, 2.0)),
        )
        if policy:
            rotator.policy = dataclasses.replace(rotator.policy, **policy)
        return rotator

    def start(self, secret_id: str | None = None) -> tuple[str, str]:
        """Start a rotation as the service does; returns what Secrets Manager would invoke with."""
        secret_id = secret_id or self.secret_id
        self.store.start_rotation(secret_id, self.settings.rotation_function_arn)
        return self.started(secret_id)

    def started(self, secret_id: str) -> tuple[str, str]:
        arn = self.aws.secretsmanager.describe_secret(SecretId=secret_id)["ARN"]
        [rotation] = [found for found in find_started_rotations(self.aws.secretsmanager) if found[0] == arn]
        return rotation

    def drive(self, rotator: Rotator, rotation: tuple[str, str], retries: int = 3) -> None:
        def invoke(event: dict[str, str]) -> None:
            rotator.run_step(event["Step"], event["SecretId"], event["ClientRequestToken"])

        drive_rotation(invoke, *rotation, retries=retries, pause=0.01)

    def current(self, secret_id: str | None = None) -> ClientCredentials:
        credentials = self.store.read(secret_id or self.secret_id, AWSCURRENT, fresh=True)
        assert credentials is not None
        return credentials

    def stages(self, secret_id: str | None = None) -> dict[str, list[str]]:
        versions = self.aws.secretsmanager.describe_secret(SecretId=secret_id or self.secret_id)["VersionIdsToStages"]
        return {version: sorted(stages) for version, stages in versions.items() if stages}

    def emulator(self, route: str, **body) -> None:
        requests.post(f"{self.zus.url}/_emulator/{route}", json=body, timeout=5).raise_for_status()

    def assert_rotated_cleanly(self, before: ClientCredentials, secret_id: str | None = None, clients: int = 2) -> None:
        """AWSCURRENT works at Zus, the old secret does not, one Zus client, no rotation left pending."""
        secret_id = secret_id or self.secret_id
        current = self.current(secret_id)
        assert current.client_secret != before.client_secret
        assert current.app_client_id == before.app_client_id
        assert self.zus_client.request_token(current.client_id, current.client_secret).access_token
        with pytest.raises(errors.ZusInvalidClient):
            self.zus_client.request_token(before.client_id, before.client_secret)
        # Still exactly one Zus app client for it, and no other client created along the way.
        admin_credentials = self.current(self.ADMIN_SECRET)
        admin = self.zus_client.request_token(admin_credentials.client_id, admin_credentials.client_secret)
        found = self.zus_client.list_app_clients(admin.access_token)
        assert [c.client_id for c in found if c.id == current.app_client_id] == [current.client_id]
        assert len(found) == clients  # the admin and billing-service, unless a test provisioned more
        description = self.store.describe(secret_id)
        assert description is not None
        assert not description.rotation_in_progress
        assert description.version_at(AWSPENDING) is None  # moto would refuse the next rotation otherwise
        assert find_started_rotations(self.aws.secretsmanager) == []


@pytest.fixture
def rotation_stack(aws, zus, rotation_function_arn) -> RotationStack:
    return RotationStack(aws, zus, rotation_function_arn)


@pytest.fixture
def counting_metrics() -> CountingMetrics:
    return CountingMetrics()
