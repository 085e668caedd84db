"""End to end over HTTP: the local stack (``make dev``) with the real handlers, moto and the emulator.

The guide's flow through the service: provision → token → use it at Zus → rotate (tokens keep coming)
→ the new secret works and the old does not → delete. Then the scheduled pre-refresh, a clean
SIGTERM, a busy port; and, in process, the API Gateway event the handlers get and the error paths.
"""

from __future__ import annotations

import io
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests

from zus_local.console import Console
from zus_local.lambda_runtime import LambdaRuntime
from zus_local.local_api import LocalApi
from zus_local.scheduler import Scheduler
from zus_local.stand_ins import ResolveContext
from zus_local.template_model import TemplateModel, load_model

if TYPE_CHECKING:
    from conftest import StackProcess

AUDIENCE = "https://api.sandbox.zusapi.com"
JSON_API = "application/vnd.api+json"
# What each dialect of Zus's auth server calls refused credentials.
REFUSED = {"auth0": "access_denied", "rfc6749": "invalid_client"}


@pytest.fixture(params=sorted(REFUSED))
def dialect(request: pytest.FixtureRequest, stack: StackProcess) -> Iterator[str]:
    """The session's emulator speaking one dialect for the test, then as it started (Auth0's, no
    propagation delay) again."""
    chosen = str(request.param)
    requests.post(f"{stack.zus}/_emulator/config", json={"dialect": chosen}, timeout=5).raise_for_status()
    yield chosen
    defaults = {"dialect": "auth0", "secretPropagationSeconds": 0, "propagationMode": "random"}
    requests.post(f"{stack.zus}/_emulator/config", json=defaults, timeout=5).raise_for_status()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(condition, timeout: float, what: str, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def zus_token(stack: StackProcess, client_id: str, client_secret: str) -> requests.Response:
    """The guide's token request, straight to the emulator."""
    body = {
        "client_id": client_id,
        "client_secret": client_secret,
        "audience": AUDIENCE,
        "grant_type": "client_credentials",
    }
    return requests.post(f"{stack.zus}/oauth/token", json=body, timeout=5)


def stages(sm, secret_id: str) -> dict[str, list[str]]:
    versions = sm.describe_secret(SecretId=secret_id)["VersionIdsToStages"]
    return {version: sorted(labels) for version, labels in versions.items() if labels}


def version_with(found: dict[str, list[str]], stage: str) -> str | None:
    return next((version for version, labels in found.items() if stage in labels), None)


def secret_at(sm, secret_id: str, stage: str) -> dict[str, str]:
    return json.loads(sm.get_secret_value(SecretId=secret_id, VersionStage=stage)["SecretString"])


# --- the guide's flow through the service ------------------------------------------------------------


def test_provision_token_rotate_delete(stack: StackProcess, dialect: str) -> None:
    api, name = stack.api, f"e2e-billing-{dialect}"

    # Provision: 201 with the record, never the secret; the same request again is 200.
    created = requests.post(f"{api}/app-clients", json={"name": name}, timeout=30)
    assert created.status_code == 201, created.text
    record = created.json()
    assert record["name"] == name
    assert "clientSecret" not in created.text
    again = requests.post(f"{api}/app-clients", json={"name": name}, timeout=30)
    assert again.status_code == 200, again.text
    assert again.json()["appClientId"] == record["appClientId"]

    # A token from the service, usable at Zus (the guide's step 4).
    token = requests.get(f"{api}/app-clients/{name}/token", timeout=10)
    assert token.status_code == 200, token.text
    assert token.headers["Cache-Control"] == "no-store"
    access_token = token.json()["access_token"]
    assert token.json()["token_type"] == "Bearer"
    read = requests.get(
        f"{stack.zus}/auth/app-clients/{record['appClientId']}",
        headers={"Authorization": f"Bearer {access_token}", "Accept": JSON_API},
        timeout=5,
    )
    assert read.status_code == 200, read.text
    assert read.json()["data"]["attributes"]["clientId"] == record["clientId"]

    # Rotate while a caller keeps asking for tokens every 50 ms; Zus refuses the new secret (and still
    # accepts the old one) for 3 s after rotating it, so testSecret has to wait for it.
    propagation = {"secretPropagationSeconds": 3, "propagationMode": "old-then-new"}
    requests.post(f"{stack.zus}/_emulator/config", json=propagation, timeout=5).raise_for_status()
    sm = stack.client("secretsmanager")
    secret_id = record["secretArn"]
    before = version_with(stages(sm, secret_id), "AWSCURRENT")
    statuses: list[int] = []
    stop = threading.Event()

    def keep_asking() -> None:
        with requests.Session() as session:
            while not stop.is_set():
                statuses.append(session.get(f"{api}/app-clients/{name}/token", timeout=10).status_code)
                time.sleep(0.05)

    caller = threading.Thread(target=keep_asking)
    caller.start()
    try:
        started = requests.post(f"{api}/app-clients/{name}/rotations", timeout=30)
        assert started.status_code == 202, started.text

        def rotated() -> bool:
            found = stages(sm, secret_id)
            current = version_with(found, "AWSCURRENT")
            return current not in (None, before) and version_with(found, "AWSPENDING") is None

        wait_until(rotated, 20, "the rotation to finish")
        time.sleep(0.5)  # a few more tokens after the switch
    finally:
        stop.set()
        caller.join(timeout=15)
    assert len(statuses) >= 5
    assert set(statuses) == {200}, statuses

    # The new secret works at Zus, the old one is refused at once.
    current, previous = secret_at(sm, secret_id, "AWSCURRENT"), secret_at(sm, secret_id, "AWSPREVIOUS")
    assert current["clientId"] == previous["clientId"] == record["clientId"]
    assert current["clientSecret"] != previous["clientSecret"]
    assert zus_token(stack, current["clientId"], current["clientSecret"]).status_code == 200
    refused = zus_token(stack, previous["clientId"], previous["clientSecret"])
    assert refused.status_code == 401
    assert refused.json()["error"] == REFUSED[dialect]
    after = requests.get(f"{api}/app-clients/{name}/token", timeout=10)
    assert after.status_code == 200, after.text

    # Delete: 204, then the name is gone.
    deleted = requests.delete(f"{api}/app-clients/{name}", timeout=30)
    assert deleted.status_code == 204, deleted.text
    gone = requests.get(f"{api}/app-clients/{name}", timeout=10)
    assert gone.status_code == 404
    assert gone.headers["Content-Type"].startswith("application/problem+json")

    # The stack printed one line per request and never a secret or a token.
    time.sleep(0.2)
    output = stack.output
    assert f"POST   /app-clients/{name}/rotations  202" in output
    assert f"rotation zus-m2m/sandbox/{name}  finishSecret  ok" in output
    for secret in (current["clientSecret"], previous["clientSecret"], access_token, "local-admin-secret"):
        assert secret not in output


def test_zus_asking_for_15_minutes_is_a_retry_after_of_15_minutes(stack: StackProcess) -> None:
    """Auth0 throttles without Retry-After; its x-ratelimit-reset (epoch seconds) says 900 s from now."""
    api, name = stack.api, "e2e-throttled"
    created = requests.post(f"{api}/app-clients", json={"name": name}, timeout=30)
    assert created.status_code == 201, created.text
    stack.client("dynamodb").delete_item(  # forget the cached token: the next call asks Zus
        TableName="zus-m2m-local", Key={"pk": {"S": f"client#{name}"}, "sk": {"S": "token"}}
    )
    fault = {"status": 429, "retryAfter": 900, "paths": ["/oauth/token"]}
    requests.post(f"{stack.zus}/_emulator/faults", json=fault, timeout=5).raise_for_status()
    try:
        throttled = requests.get(f"{api}/app-clients/{name}/token", timeout=10)
        again = requests.get(f"{api}/app-clients/{name}/token", timeout=10)  # remembered, Zus not asked
    finally:
        requests.post(f"{stack.zus}/_emulator/faults", json={}, timeout=5).raise_for_status()
        requests.delete(f"{api}/app-clients/{name}", timeout=30)
    assert throttled.status_code == 503, throttled.text
    assert 899 <= int(throttled.headers["Retry-After"]) <= 901
    assert again.status_code == 503
    assert 895 <= int(again.headers["Retry-After"]) <= 901


def test_scheduled_pre_refresh_renews_a_token_nobody_asks_for(stack: StackProcess) -> None:
    """Tokens that live 392 s enter the refresh margin (300 s) plus the job's 90 s horizon 2 s after
    they are issued; the pre-refresh schedule (every second here) renews them without any caller."""
    api, name = stack.api, "e2e-prefresh"
    config = requests.post(f"{stack.zus}/_emulator/config", json={"tokenLifetimeSeconds": 392}, timeout=5)
    assert config.status_code < 300, config.text
    try:
        created = requests.post(f"{api}/app-clients", json={"name": name}, timeout=30)
        assert created.status_code == 201, created.text
        client_id = created.json()["clientId"]
        first = requests.get(f"{api}/app-clients/{name}/token", timeout=10)
        assert first.status_code == 200, first.text
        issued = first.json()["expires_at"]

        def renewed() -> int | None:
            token = requests.get(f"{api}/app-clients/{name}", timeout=10).json()["token"]
            expires = token.get("expiresAt")
            return expires if expires and expires > issued else None

        wait_until(renewed, 20, "the pre-refresh schedule to renew the cached token")
        stats = requests.get(f"{stack.zus}/_emulator/stats", timeout=5).json()
        assert stats["tokenRequests"][client_id] >= 2
        assert any("schedule zus-m2m-local-pre-refresh (pre-refresh)  ok" in line for line in stack.lines)
    finally:
        requests.post(f"{stack.zus}/_emulator/config", json={"tokenLifetimeSeconds": 3600}, timeout=5)
        requests.delete(f"{api}/app-clients/{name}", timeout=30)


def test_unknown_route_is_a_problem_document(stack: StackProcess) -> None:
    response = requests.get(f"{stack.api}/no/such/route", timeout=5)
    assert response.status_code == 404
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json()["detail"] == "no route for GET /no/such/route"
    wrong_method = requests.put(f"{stack.api}/app-clients", timeout=5)
    assert wrong_method.status_code == 404


# --- lifecycle of the process ----------------------------------------------------------------------------


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _moto_children(port: int) -> list[int]:
    """PIDs of moto children serving ``port`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"zus_local.moto_process" in command and str(port).encode() in command:
            found.append(int(entry.name))
    return found


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs /proc to look for leftover processes")
def test_sigterm_stops_every_process_and_port(stack_factory: Callable[..., StackProcess]) -> None:
    stack = stack_factory(["--schedule-scale", "0"])
    assert all(_listening(port) for port in stack.ports)
    assert _moto_children(stack.moto_port)
    started = time.monotonic()
    code = stack.terminate(timeout=10)
    assert code == 0, stack.output
    assert time.monotonic() - started < 10
    assert not any(_listening(port) for port in stack.ports)
    assert _moto_children(stack.moto_port) == []
    assert "stopped" in stack.lines


def test_a_busy_port_is_named_in_one_line(stack_factory: Callable[..., StackProcess]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        stack = stack_factory(["--api-port", str(port)], wait=False)
        code = stack.process.wait(timeout=20)
        time.sleep(0.2)
    assert code == 1
    assert stack.errors == [f"zus-local: port {port} is in use (local API); pass --api-port"]
    assert not any(_listening(p) for p in (stack.moto_port, stack.zus_port))


# --- in process: the event the handlers get, and the error paths ------------------------------------------

FUNCTION_CODE = """
import os

IMPORTED_WITH = os.environ.get("GREETING")
calls = []


def handler(event, context):
    calls.append(event)
    if event.get("rawPath") == "/crash":
        raise RuntimeError("boom: this trace belongs on stderr")
    if event.get("rawPath") == "/plain":
        return {"plain": True}
    return {
        "statusCode": 200,
        "headers": {"Content-Type": "application/json", "X-Function": context.function_name},
        "cookies": ["a=1"],
        "body": __import__("json").dumps({
            "event": event,
            "greeting": IMPORTED_WITH,
            "function": context.function_name,
            "remaining": context.get_remaining_time_in_millis(),
            "requestId": context.aws_request_id,
        }),
    }
"""

TEMPLATE = """
Parameters:
  Greeting: {Type: String, Default: hello}
Globals:
  Function:
    Runtime: python3.13
    Handler: app.handler
    Timeout: 7
    Environment:
      Variables:
        GREETING: !Sub "${Greeting} from ${AWS::StackName}"
Resources:
  EchoFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: echo/
      Events:
        Item:
          Type: HttpApi
          Properties: {Path: "/items/{id}", Method: POST}
        Crash:
          Type: HttpApi
          Properties: {Path: /crash, Method: GET}
        Plain:
          Type: HttpApi
          Properties: {Path: /plain, Method: GET}
        Tick:
          Type: ScheduleV2
          Properties:
            ScheduleExpression: rate(1 minute)
            Input: '{"job": "tick"}'
"""


class _InProcess:
    def __init__(self, model: TemplateModel, runtime: LambdaRuntime, api: LocalApi, out: io.StringIO, err: io.StringIO):
        self.model, self.runtime, self.api, self.out, self.err = model, runtime, api, out, err


@pytest.fixture
def in_process(tmp_path: Path) -> Iterator[_InProcess]:
    (tmp_path / "echo").mkdir()
    (tmp_path / "echo" / "app.py").write_text(FUNCTION_CODE)
    (tmp_path / "template.yaml").write_text(TEMPLATE)
    model = load_model(tmp_path / "template.yaml", ResolveContext(stack_name="echo-stack"))
    out, err = io.StringIO(), io.StringIO()
    console = Console(out, err)
    runtime = LambdaRuntime(model, concurrency=2)
    runtime.warm_up()
    api = LocalApi(console, "127.0.0.1", free_port()).bind().serve(model, runtime)
    try:
        yield _InProcess(model, runtime, api, out, err)
    finally:
        api.stop()


def test_handlers_get_an_http_api_v2_event_and_a_lambda_context(in_process: _InProcess) -> None:
    assert "GREETING" not in os.environ  # applied while the handler imported, not left behind
    response = requests.post(
        f"{in_process.api.url}/items/a%20b?x=1&x=2&y=",
        json={"k": "v"},
        headers={"X-Custom": "yes", "Cookie": "c1=1; c2=2"},
        timeout=5,
    )
    assert response.status_code == 200, response.text
    assert response.headers["X-Function"] == "echo-stack-EchoFunction"
    assert response.headers["Set-Cookie"] == "a=1"
    assert response.headers["Apigw-Requestid"]
    body = response.json()
    assert body["greeting"] == "hello from echo-stack"
    assert 0 < body["remaining"] <= 7000
    event = body["event"]
    assert event["version"] == "2.0"
    assert event["routeKey"] == "POST /items/{id}"
    assert event["rawPath"] == "/items/a%20b"
    assert event["rawQueryString"] == "x=1&x=2&y="
    assert event["queryStringParameters"] == {"x": "1,2", "y": ""}
    assert event["pathParameters"] == {"id": "a b"}
    assert event["headers"]["x-custom"] == "yes"
    assert event["headers"]["content-type"] == "application/json"
    assert all(name == name.lower() for name in event["headers"])
    assert event["cookies"] == ["c1=1", "c2=2"]
    assert json.loads(event["body"]) == {"k": "v"}
    assert event["isBase64Encoded"] is False
    context = event["requestContext"]
    assert context["http"]["method"] == "POST"
    assert context["http"]["path"] == "/items/a%20b"
    assert context["http"]["sourceIp"] == "127.0.0.1"
    assert context["stage"] == "$default"
    assert context["routeKey"] == "POST /items/{id}"
    assert context["requestId"] == body["requestId"] == response.headers["Apigw-Requestid"]
    assert abs(context["timeEpoch"] / 1000 - time.time()) < 10
    assert context["authorizer"]["iam"]["accountId"] == "123456789012"
    assert "POST   /items/a%20b  200" in in_process.out.getvalue()

    binary = requests.post(
        f"{in_process.api.url}/items/1", data=b"\x00\x01", headers={"Content-Type": "application/octet-stream"}
    )
    assert binary.json()["event"]["isBase64Encoded"] is True
    assert binary.json()["event"]["body"] == "AAE="

    plain = requests.get(f"{in_process.api.url}/plain", timeout=5)
    assert (plain.status_code, plain.json()) == (200, {"plain": True})


def test_chunked_bodies_reach_the_handler_and_malformed_ones_are_400(in_process: _InProcess) -> None:
    response = requests.post(
        f"{in_process.api.url}/items/1",
        data=iter([b'{"k":', b' "v"}']),
        headers={"Content-Type": "application/json"},
        timeout=5,
    )
    assert response.request.headers["Transfer-Encoding"] == "chunked"
    assert json.loads(response.json()["event"]["body"]) == {"k": "v"}

    with socket.create_connection(("127.0.0.1", in_process.api.port), timeout=5) as sock:
        sock.sendall(b"POST /items/1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400")
    assert b"Connection: close" in head
    assert json.loads(body)["detail"] == "Malformed chunked body"


def test_a_crashing_handler_answers_500_without_its_trace(in_process: _InProcess) -> None:
    response = requests.get(f"{in_process.api.url}/crash", timeout=5)
    assert response.status_code == 500
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json()["status"] == 500
    assert "boom" not in response.text
    assert "Traceback" not in response.text
    assert "RuntimeError: boom" in in_process.err.getvalue()
    assert "GET    /crash  500" in in_process.out.getvalue()


def test_schedules_fire_with_their_input_scaled(in_process: _InProcess) -> None:
    out = io.StringIO()
    scheduler = Scheduler(in_process.model.schedules, in_process.runtime.invoke, Console(out, out), scale=60)
    scheduler.start()
    try:
        wait_until(lambda: "schedule EchoFunctionTick (tick)  ok" in out.getvalue(), 5, "the scheduled run")
    finally:
        scheduler.stop()
    modules = [module for name, module in sys.modules.items() if name.startswith("zus_local_function_EchoFunction")]
    assert any({"job": "tick"} in module.calls for module in modules)
