"""Shared fixtures of the integration tests (real HTTP, no mocks); what they build is in
integration_support.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from integration_support import (
    Aws,
    CountingMetrics,
    Deployment,
    LoadFunction,
    ProvisioningStack,
    RotationStack,
    VendingStack,
)

from zus_emulator import EmulatorConfig, EmulatorServer
from zus_emulator.config import AUTH0, DIALECTS
from zus_local.aws_setup import create_table


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


@pytest.fixture(params=DIALECTS)
def dialect(request: pytest.FixtureRequest, zus: EmulatorServer) -> Iterator[str]:
    """The test runs once per dialect of Zus's auth server (Auth0's, RFC 6749's), the emulator switched
    to it for the test and back to the default after."""
    chosen = str(request.param)
    requests.post(f"{zus.url}/_emulator/config", json={"dialect": chosen}, timeout=5).raise_for_status()
    yield chosen
    requests.post(f"{zus.url}/_emulator/config", json={"dialect": AUTH0}, timeout=5).raise_for_status()


@pytest.fixture
def rotation_function_arn(aws: Aws) -> str:
    """A rotation function moto knows, so that RotateSecret leaves a value-less AWSPENDING version (the
    test then plays Secrets Manager with zus_local.secrets_manager_rotation). After the aws reset."""
    from zus_local.secrets_manager_rotation import register_rotation_function

    return register_rotation_function(aws.endpoint, "zus-m2m-test-rotation")


@pytest.fixture
def load_function(monkeypatch: pytest.MonkeyPatch) -> LoadFunction:
    """Import ``functions/<name>/app.py`` afresh with the given environment, as a new Lambda container
    would (its module-level settings and clients read the environment once, at import)."""
    import importlib.util
    import uuid

    functions = Path(__file__).resolve().parents[2] / "functions"

    def load(name: str, environment: dict[str, str]) -> Any:
        for key, value in environment.items():
            monkeypatch.setenv(key, value)
        spec = importlib.util.spec_from_file_location(f"{name}_app_{uuid.uuid4().hex}", functions / name / "app.py")
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture
def deployment(aws: Aws, zus: EmulatorServer) -> Deployment:
    return Deployment(aws, zus)


@pytest.fixture
def provisioning_stack(aws: Aws, zus: EmulatorServer) -> ProvisioningStack:
    return ProvisioningStack(aws, zus)


@pytest.fixture
def provisioning_stack_with_rotation(aws: Aws, zus: EmulatorServer, rotation_function_arn: str) -> ProvisioningStack:
    """Provisioning in a stack with a rotation function (one moto knows)."""
    return ProvisioningStack(aws, zus, ROTATION_FUNCTION_ARN=rotation_function_arn)


@pytest.fixture
def vending_stack(aws: Aws, zus: EmulatorServer, dialect: str) -> VendingStack:
    """In each dialect of Zus's auth server."""
    return VendingStack(aws, zus)


@pytest.fixture
def auth0_vending_stack(aws: Aws, zus: EmulatorServer) -> VendingStack:
    """In Auth0's dialect only, for behaviour no answer of the token endpoint's dialects changes."""
    return VendingStack(aws, zus)


@pytest.fixture
def rotation_stack(aws: Aws, zus: EmulatorServer, rotation_function_arn: str, dialect: str) -> RotationStack:
    """In each dialect of Zus's auth server."""
    return RotationStack(aws, zus, rotation_function_arn)


@pytest.fixture
def busy_rotation_stack(aws: Aws, zus: EmulatorServer, rotation_function_arn: str, dialect: str) -> RotationStack:
    """A rotation stack whose token budget is all Zus allows (200 requests an hour), for many token requests."""
    return RotationStack(aws, zus, rotation_function_arn, TOKEN_BUDGET_PER_HOUR="200")


@pytest.fixture
def counting_metrics() -> CountingMetrics:
    return CountingMetrics()


@pytest.fixture
def aws(moto_endpoint: str) -> Aws:
    """A clean moto account with the service's table, for one test."""
    requests.post(f"{moto_endpoint}/moto-api/reset", timeout=10).raise_for_status()
    dynamodb = boto3.client("dynamodb", endpoint_url=moto_endpoint, region_name="us-east-1")
    create_table(dynamodb, "zus-m2m-test")
    return Aws(
        endpoint=moto_endpoint,
        table_name="zus-m2m-test",
        dynamodb=dynamodb,
        secretsmanager=boto3.client("secretsmanager", endpoint_url=moto_endpoint, region_name="us-east-1"),
    )
