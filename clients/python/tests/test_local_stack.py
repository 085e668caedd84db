"""The client against the whole local stack (``make dev``: the local API, the real handlers, moto and the Zus
emulator) over HTTP, signed with the static fake AWS credentials the test environment sets.

Token-route calls are counted from the stack's own console, one line per request it served.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import botocore.session
import pytest
import requests
from client_support import FakeClock, RecordingTransport, wait_until

import zus_m2m_client
from zus_m2m_client import SigV4Transport, TokenProvider, ZusAuth, ZusM2MApi

JSON_API = "application/vnd.api+json"
THREADS, CALLS_EACH = 50, 20


def console_lines(stack: Any) -> list[str]:
    """The stack's console once every request answered so far has its line: a request sent now is
    answered after them, and its line (written before its answer) follows theirs."""
    sentinel = f"/app-clients/sentinel-{uuid.uuid4().hex[:12]}"
    requests.get(stack.api + sentinel, timeout=10)
    wait_until(lambda: any(f" {sentinel}  404" in line for line in stack.lines), "the sentinel's console line")
    return list(stack.lines)


def token_route_calls(stack: Any, name: str) -> int:
    return sum(f"GET    /app-clients/{name}/token  " in line for line in console_lines(stack))


@pytest.fixture
def managed(local_stack: Any) -> Iterator[Any]:
    """Creates managed clients by name through the signed API; deletes them after the test."""
    api = ZusM2MApi(local_stack.api)
    created: list[str] = []

    def create(name: str) -> dict[str, Any]:
        created.append(name)
        return api.create_client(name)

    yield create
    for name in created:
        api.delete_client(name)


def emulator_client_url(stack: Any, record: Mapping[str, Any]) -> str:
    """A Zus API route any valid bearer token may read: the app client itself."""
    return f"{stack.zus}/auth/app-clients/{record['appClientId']}"


def test_a_fleet_of_threads_costs_one_token_route_call(local_stack: Any, managed: Any) -> None:
    name = "client-fleet"
    url = emulator_client_url(local_stack, managed(name))
    auth = ZusAuth(TokenProvider(local_stack.api, name))
    start = threading.Barrier(THREADS)
    statuses: list[int] = []

    def caller() -> None:
        with requests.Session() as http:
            start.wait()
            for _ in range(CALLS_EACH):
                statuses.append(http.get(url, auth=auth, headers={"Accept": JSON_API}, timeout=30).status_code)

    threads = [threading.Thread(target=caller) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert statuses == [200] * THREADS * CALLS_EACH
    assert token_route_calls(local_stack, name) == 1


def test_a_token_zus_refuses_is_reported_replaced_and_the_request_sent_again(local_stack: Any, managed: Any) -> None:
    """The process holds a token past its expiry at Zus (its clock stood still, as on a suspended host)."""
    name = "client-refused"
    managed("client-refused-warm-up")  # provisioning caches the admin's token, good for an hour
    configured = requests.post(f"{local_stack.zus}/_emulator/config", json={"tokenLifetimeSeconds": 5}, timeout=5)
    assert configured.status_code == 200, configured.text
    try:
        url = emulator_client_url(local_stack, managed(name))  # its tokens live 5 s
        route = RecordingTransport(SigV4Transport(local_stack.api))
        provider = TokenProvider(local_stack.api, name, min_ttl=3, refresh_margin=0, transport=route, clock=FakeClock())
        auth = ZusAuth(provider)
        with requests.Session() as http:
            assert http.get(url, auth=auth, timeout=10).status_code == 200
            held = provider.get_token()

            def refused_at_zus() -> bool:
                bearer = {"Authorization": f"Bearer {held.access_token}"}
                return requests.get(url, headers=bearer, timeout=10).status_code == 401

            wait_until(refused_at_zus, "Zus to refuse the held token", timeout=30, interval=0.2)
            answer = http.get(url, auth=auth, timeout=10)
        assert answer.status_code == 200, answer.text
        assert [earlier.status_code for earlier in answer.history] == [401]
        assert [query.get("refused") for query in route.queries] == [None, held.fingerprint]
        assert provider.get_token().fingerprint != held.fingerprint
        assert token_route_calls(local_stack, name) == 2
    finally:
        requests.post(f"{local_stack.zus}/_emulator/config", json={"tokenLifetimeSeconds": 3600}, timeout=5)


def test_no_token_or_credential_in_debug_logs(local_stack: Any, managed: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    session = botocore.session.Session()
    session.set_credentials("AKIDLOGLEAKTEST", "log-leak-secret-key", "log-leak-session-token")
    session.set_config_variable("region", "us-east-1")
    provider = TokenProvider(local_stack.api, "client-logs", session=session)
    url = emulator_client_url(local_stack, managed("client-logs"))
    assert requests.get(url, auth=ZusAuth(provider), timeout=10).status_code == 200
    assert "/app-clients/client-logs/token?minTtl=300" in caplog.text  # the requests were logged
    for secret in (
        provider.get_token().access_token,
        "AKIDLOGLEAKTEST",
        "log-leak-secret-key",
        "log-leak-session-token",
    ):
        assert secret not in caplog.text


# --- the CLI, as an operator runs it ----------------------------------------------------------------------


def cli(stack: Any, *argv: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    source = str(Path(zus_m2m_client.__file__).parents[1])  # the package, installed or not
    environment = {**(env if env is not None else os.environ), "ZUS_M2M_API_URL": stack.api}
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [source, environment.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "zus_m2m_client", *argv],
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
        check=False,
    )


def test_cli_create_list_show_token_rotate_delete(local_stack: Any) -> None:
    name = "cli-flow"
    created = cli(local_stack, "clients", "create", name)
    assert created.returncode == 0, created.stderr
    record = json.loads(created.stdout)
    assert record["name"] == name
    assert "clientSecret" not in created.stdout

    listed = cli(local_stack, "clients", "list", "--output", "table")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[0].startswith("NAME ")
    assert any(line.startswith(f"{name} ") for line in listed.stdout.splitlines())
    shown = cli(local_stack, "clients", "show", name)
    assert json.loads(shown.stdout)["appClientId"] == record["appClientId"]

    token = cli(local_stack, "token", name, "--min-ttl", "120")
    assert token.returncode == 0, token.stderr
    assert (token.stdout.count("\n"), token.stdout.count("."), token.stderr) == (1, 2, "")  # one JWT, nothing else
    bearer = {"Authorization": f"Bearer {token.stdout.strip()}"}
    assert requests.get(emulator_client_url(local_stack, record), headers=bearer, timeout=10).status_code == 200

    rotated = cli(local_stack, "clients", "rotate", name)
    assert (rotated.returncode, json.loads(rotated.stdout)["rotation"]) == (0, "started")
    finished = f"rotation zus-m2m/sandbox/{name}  finishSecret  ok"
    wait_until(lambda: any(finished in line for line in local_stack.lines), "the rotation to finish", interval=0.2)

    deleted = cli(local_stack, "clients", "delete", name)
    assert (deleted.returncode, deleted.stdout, deleted.stderr) == (0, "", "")
    gone = cli(local_stack, "clients", "show", name)
    assert (gone.returncode, gone.stdout) == (3, "")
    assert gone.stderr == f"zus-m2m: 404 Not Found: no managed app client named '{name}'\n"


def test_cli_errors_are_one_line_with_their_exit_code(local_stack: Any) -> None:
    unknown = cli(local_stack, "clients", "grant", "no-such-client", "arn:aws:iam::123456789012:role/billing")
    assert (unknown.returncode, unknown.stdout) == (3, "")
    assert unknown.stderr == "zus-m2m: 404 Not Found: no managed app client named 'no-such-client'\n"

    usage = cli(local_stack, "clients", "frobnicate")
    assert usage.returncode == 2
    assert usage.stderr.splitlines()[-1].startswith("zus-m2m clients: error: argument ACTION: invalid choice")

    role = cli(local_stack, "clients", "create", "cli-bad-role", "--role", "Janitor")
    assert role.returncode == 1
    assert role.stderr.startswith("zus-m2m: 422 Unprocessable Content: Zus has no role named 'Janitor'")
    assert role.stderr.count("\n") == 1


def test_cli_signs_with_a_named_profile(local_stack: Any, tmp_path: Path) -> None:
    credentials = tmp_path / "credentials"
    credentials.write_text("[ops]\naws_access_key_id = AKIDPROFILE\naws_secret_access_key = profile-secret\n")
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    env.update(AWS_SHARED_CREDENTIALS_FILE=str(credentials), AWS_CONFIG_FILE=str(tmp_path / "config"))
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    listed = cli(local_stack, "--profile", "ops", "--region", "us-east-1", "clients", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    assert "appClients" in json.loads(listed.stdout)

    missing = cli(local_stack, "clients", "list", "--profile", "nobody", "--region", "us-east-1", env=env)
    assert (missing.returncode, missing.stdout) == (9, "")
    assert missing.stderr == "zus-m2m: The config profile (nobody) could not be found\n"
    no_region = cli(local_stack, "--profile", "ops", "clients", "list", env=env)
    assert no_region.returncode == 9
    assert no_region.stderr.startswith("zus-m2m: no AWS region to sign requests for")


def test_cli_debug_logs_carry_no_token_or_credential(local_stack: Any, managed: Any) -> None:
    managed("cli-debug")
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "AKIDCLIDEBUG", "AWS_SECRET_ACCESS_KEY": "cli-debug-secret"}
    env["AWS_SESSION_TOKEN"] = "cli-debug-session-token"
    token = cli(local_stack, "--debug", "token", "cli-debug", env=env)
    assert token.returncode == 0, token.stderr
    assert "GET /app-clients/cli-debug/token?minTtl=60 HTTP/1.1" in token.stderr  # debug logging was on
    for secret in (token.stdout.strip(), "AKIDCLIDEBUG", "cli-debug-secret", "cli-debug-session-token"):
        assert secret not in token.stderr
