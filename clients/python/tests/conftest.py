"""Fixtures of the client's tests.

The unit tests need nothing here. The integration tests run the whole local stack (``make dev``) as a
subprocess on free ports through the end-to-end suite's own ``start_stack``, and sign their requests with
static fake AWS credentials (set by the repository's test conftest, whose report masking applies here too).
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from client_support import RecordingServer

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


@pytest.fixture
def recording_server() -> Iterator[RecordingServer]:
    with RecordingServer() as server:
        yield server
