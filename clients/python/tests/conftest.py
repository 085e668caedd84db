"""Fixtures of the client's tests.

The unit tests need nothing here. The integration tests run the whole local stack (``make dev``) as a
subprocess on free ports through the end-to-end suite's own ``start_stack``, and sign their requests as the
stack's local admin or local consumer: the IAM users it makes in moto, whose keys it writes to a shared
credentials file (``StackProcess.credentials_file``, one profile each). The repository's test conftest sets
fake AWS credentials in the environment (an explicit profile outranks them) and masks test reports.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import botocore.session
import pytest
from client_support import RecordingServer

from zus_local.local_principals import ADMIN_USER as ADMIN_PROFILE
from zus_local.local_principals import CONSUMER_USER as CONSUMER_PROFILE
from zus_m2m_client import ZusM2MApi

REPOSITORY = Path(__file__).resolve().parents[3]


def _load(relative: str, module_name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(module_name, REPOSITORY / relative)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


# Fake AWS credentials in the environment, and test reports masked of tokens and secrets.
_repository_tests = _load("tests/conftest.py", "zus_m2m_tests_conftest")
pytest_runtest_makereport = _repository_tests.pytest_runtest_makereport
_e2e = _load("tests/e2e/conftest.py", "zus_m2m_e2e_conftest")


@pytest.fixture(scope="session")
def local_stack() -> Iterator[Any]:
    """``python -m zus_local`` (schedules off), stopped with SIGTERM after the session."""
    stack = _e2e.start_stack(["--schedule-scale", "0"])
    try:
        yield stack
    finally:
        assert stack.terminate(timeout=15) == 0, stack.output


def signer(stack: Any, profile: str) -> botocore.session.Session:
    """A botocore session signing as ``profile`` of the stack's credentials file (what
    ``AWS_SHARED_CREDENTIALS_FILE`` names), in the stack's region."""
    session = botocore.session.Session(profile=profile)
    session.set_config_variable("credentials_file", str(stack.credentials_file))
    session.set_config_variable("region", "us-east-1")
    return session


@pytest.fixture(scope="session")
def admin_session(local_stack: Any) -> botocore.session.Session:
    """Signs as the stack's admin (``AdminPrincipals``): every route but the token route's answers."""
    return signer(local_stack, ADMIN_PROFILE)


@pytest.fixture(scope="session")
def consumer_session(local_stack: Any) -> botocore.session.Session:
    """Signs as the stack's consumer: the token route of the clients that name it."""
    return signer(local_stack, CONSUMER_PROFILE)


@pytest.fixture(scope="session")
def consumer_arn(local_stack: Any) -> str:
    """The local consumer's IAM user, as the stack made it in moto."""
    return str(local_stack.client("iam").get_user(UserName=CONSUMER_PROFILE)["User"]["Arn"])


@pytest.fixture
def recording_server() -> Iterator[RecordingServer]:
    with RecordingServer() as server:
        yield server


@pytest.fixture
def managed(local_stack: Any, admin_session: botocore.session.Session, consumer_arn: str) -> Iterator[Any]:
    """Creates managed clients by name through the API, as the local admin, with the local consumer as
    their consumer; deletes them after the test."""
    api = ZusM2MApi(local_stack.api, session=admin_session)
    created: list[str] = []

    def create(name: str) -> dict[str, Any]:
        created.append(name)
        return api.create_client(name, consumers=[consumer_arn])

    yield create
    for name in created:
        api.delete_client(name)
