"""Fixtures every test layer may use: AWS credentials that can never reach a real account, and moto
in server mode on 127.0.0.1 (a real HTTP endpoint), started here and stopped after the session."""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator

import pytest

from zus_local.moto_app import make_moto_server

# Fake credentials and no profile: a test that escaped moto fails instead of touching an account.
for _name in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):
    os.environ.pop(_name, None)
os.environ.update(
    AWS_ACCESS_KEY_ID="testing",
    AWS_SECRET_ACCESS_KEY="testing",
    AWS_SESSION_TOKEN="testing",
    AWS_DEFAULT_REGION="us-east-1",
)


# `make test` runs every test once, split between two Pythons by ZUS_TEST_PART: "lambda" is what runs
# on Lambda's Python (3.13): the service's unit, integration and e2e tests in Auth0's dialect (Zus's), less
# the tests that wait out a 20-30 s window; "rest" is everything else, on the oldest Python the project
# supports (3.11): the other dialect, the long tests, the client library, the infrastructure and the
# reliability suite. Unset: every test.
_LAMBDA_SUITES = ("unit", "integration", "e2e")
_LAMBDA_DIALECT = "auth0"


def _in_lambda_part(item: pytest.Item) -> bool:
    suite = item.path.relative_to(item.config.rootpath).parts[:2]
    in_suite = suite[0] == "tests" and suite[1] in _LAMBDA_SUITES
    return in_suite and _dialect_of(item) in (None, _LAMBDA_DIALECT) and item.get_closest_marker("long") is None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    part = os.environ.get("ZUS_TEST_PART")
    if not part:
        return
    if part not in ("lambda", "rest"):
        raise pytest.UsageError(f"ZUS_TEST_PART must be 'lambda' or 'rest', got {part!r}")
    keep = [item for item in items if _in_lambda_part(item) == (part == "lambda")]
    dropped = [item for item in items if item not in keep]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


def _dialect_of(item: pytest.Item) -> str | None:
    callspec = getattr(item, "callspec", None)
    return None if callspec is None else callspec.params.get("dialect")


# Test output never carries a token or a secret, not even a failing test's: every report's traceback
# and captured output is masked (JWTs the emulator issues, its admin secret, any clientSecret field).
_SENSITIVE = re.compile(
    r"eyJ[A-Za-z0-9_.-]{8,}"  # a JWT, also as pytest shortens it ("eyJhbG...c2ln")
    r"|[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}"  # a JWT's tail, as pytest's diff of two shows it past their prefix
    r"|local-admin-secret"
    r"|(?P<field>clientSecret[\"']?\s*[:=]\s*[\"']?|client_secret[\"']?\s*[:=]\s*[\"']?)[^\"'\s,)&}]+"
)


def masked(text: str) -> str:
    return _SENSITIVE.sub(lambda match: (match.group("field") or "") + "<masked>", text)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.longrepr is not None and not isinstance(report.longrepr, tuple):
        report.longrepr = masked(str(report.longrepr))
    report.sections = [(title, masked(content)) for title, content in report.sections]


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    server = make_moto_server("127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)
