"""End to end over HTTP: the local stack (``make dev``) with the real handlers, moto and the emulator.

The guide's flow through the service: provision → token → use it at Zus → rotate (tokens keep coming)
→ the new secret works and the old does not → delete. Then the scheduled pre-refresh, a clean
SIGTERM, a busy port; and, in process, the API Gateway event the handlers get and the error paths.
"""

from __future__ import annotations

import io
import json
import os
import pty
import re
import select
import shutil
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

ROOT = Path(__file__).resolve().parents[2]
AUDIENCE = "https://api.sandbox.zusapi.com"
JSON_API = "application/vnd.api+json"


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


def test_provision_token_rotate_delete(stack: StackProcess) -> None:
    api, name = stack.api, "e2e-billing"

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

    # Rotate while a caller keeps asking for tokens every 50 ms.
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
    assert refused.json()["error"] == "invalid_client"
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
    assert "rotation zus-m2m/sandbox/e2e-billing  finishSecret  ok" in output
    for secret in (current["clientSecret"], previous["clientSecret"], access_token, "local-admin-secret"):
        assert secret not in output


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


def test_a_failed_rotation_step_is_repaired_by_the_repair_schedule(stack: StackProcess, capsys) -> None:
    """Zus refuses rotate-secret until Secrets Manager (the stack's rotation player) gives up the
    rotation; the repair schedule (rate(2 minutes), every 2 s here) repairs it: a new rotation that
    finishes. Prints the time from the failed step to its repair (a measurement, not an assertion)."""
    api, name = stack.api, "e2e-repair"
    created = requests.post(f"{api}/app-clients", json={"name": name}, timeout=30)
    assert created.status_code == 201, created.text
    secret_id = created.json()["secretArn"]
    sm, dynamodb = stack.client("secretsmanager"), stack.client("dynamodb")
    before = secret_at(sm, secret_id, "AWSCURRENT")
    failure_key = {"pk": {"S": "rotation-failures"}, "sk": {"S": name}}

    def recorded() -> dict[str, Any] | None:
        item = dynamodb.get_item(TableName="zus-m2m-local", Key=failure_key, ConsistentRead=True).get("Item")
        return item if item and "seenAt" not in item else None

    faults = {"status": 500, "rate": 1.0, "paths": ["/auth/app-clients"]}
    requests.post(f"{stack.zus}/_emulator/faults", json=faults, timeout=5).raise_for_status()
    try:
        started = requests.post(f"{api}/app-clients/{name}/rotations", timeout=30)
        assert started.status_code == 202, started.text
        wait_until(
            lambda: any(f"{name}  createSecret  failed" in line and "attempt 4" in line for line in stack.lines),
            30,
            "the rotation player to give up createSecret",
        )
        failure = wait_until(recorded, 10, "the failure to be recorded")
    finally:
        requests.post(f"{stack.zus}/_emulator/faults", json={}, timeout=5).raise_for_status()
    failed_at = float(failure["failedAt"]["N"])
    assert failure["step"]["S"] == "createSecret"

    def gone() -> bool:
        return "Item" not in dynamodb.get_item(TableName="zus-m2m-local", Key=failure_key, ConsistentRead=True)

    wait_until(gone, 30, "the repair schedule to repair the rotation", interval=0.05)
    repaired_after = time.time() - failed_at

    def rotated() -> bool:
        found = stages(sm, secret_id)
        return version_with(found, "AWSPENDING") is None and secret_at(sm, secret_id, "AWSCURRENT") != before

    wait_until(rotated, 30, "the restarted rotation to finish", interval=0.05)
    finished_after = time.time() - failed_at
    current = secret_at(sm, secret_id, "AWSCURRENT")
    assert zus_token(stack, current["clientId"], current["clientSecret"]).status_code == 200
    assert any("rotation-repair" in line and "ok" in line for line in stack.lines)
    [schedules] = [line for line in stack.lines if line.startswith("  schedules ")]
    every = re.search(r"rotation-repair every ([^,]+?)(,| \()", schedules)
    with capsys.disabled():
        print(
            f"\nrotation repair on the local stack (rotation-repair every {every.group(1) if every else '?'}): "
            f"failed step -> repaired {repaired_after:.1f} s, -> rotation finished {finished_after:.1f} s"
        )
    requests.delete(f"{api}/app-clients/{name}", timeout=30)


def test_a_client_deleted_with_a_stuck_rotation_is_created_again_at_once(stack: StackProcess) -> None:
    api, name = stack.api, "e2e-stuck"
    first = requests.post(f"{api}/app-clients", json={"name": name}, timeout=30)
    assert first.status_code == 201, first.text
    faults = {"status": 500, "rate": 1.0, "paths": ["/auth/app-clients"]}
    requests.post(f"{stack.zus}/_emulator/faults", json=faults, timeout=5).raise_for_status()
    try:
        assert requests.post(f"{api}/app-clients/{name}/rotations", timeout=30).status_code == 202
        wait_until(
            lambda: any(f"{name}  createSecret  failed" in line and "attempt 4" in line for line in stack.lines),
            30,
            "the rotation player to give up createSecret",
        )
    finally:
        requests.post(f"{stack.zus}/_emulator/faults", json={}, timeout=5).raise_for_status()

    assert requests.delete(f"{api}/app-clients/{name}", timeout=30).status_code == 204
    again = requests.post(f"{api}/app-clients", json={"name": name}, timeout=30)

    assert again.status_code == 201, again.text
    assert again.json()["appClientId"] != first.json()["appClientId"]
    labels = [sorted(found) for found in stages(stack.client("secretsmanager"), again.json()["secretArn"]).values()]
    assert sorted(labels) == [["AWSCURRENT"], ["AWSPREVIOUS"]]
    assert requests.get(f"{api}/app-clients/{name}/token", timeout=10).status_code == 200
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


def _read_until(fd: int, output: bytearray, done: Callable[[], bool], timeout: float) -> None:
    """Read a pty's output into ``output`` until ``done()`` or its end (``timeout`` only guards a hang)."""
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        if select.select([fd], [], [], 0.2)[0]:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the pty closed: every process on it exited
                return
            if not chunk:
                return
            output.extend(chunk)


@pytest.mark.skipif(shutil.which("make") is None or not hasattr(os, "openpty"), reason="needs make and a pty")
def test_ctrl_c_in_a_terminal_stops_make_dev_with_status_0() -> None:
    # make dev in a terminal of its own (a pty), with this venv's Python and no install step
    ports = [free_port() for _ in range(3)]
    args = f"--api-port {ports[0]} --moto-port {ports[1]} --zus-port {ports[2]} --schedule-scale 0"
    command = ["make", "-s", "-C", str(ROOT), "dev", "STAMP=", f"BIN={Path(sys.executable).parent}", f"ARGS={args}"]
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "ZUS_M2M_", "MAKE"))}
    pid, fd = pty.fork()
    if pid == 0:  # the child: exec make, as a shell would in that terminal
        os.execvpe("make", command, env)
    output = bytearray()
    try:
        _read_until(fd, output, lambda: b"ready in " in output, 60)
        assert b"ready in " in output, output.decode(errors="replace")

        os.write(fd, b"\x03")  # Ctrl-C: the terminal sends SIGINT to its foreground process group

        _read_until(fd, output, lambda: False, 30)
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    text = output.decode(errors="replace")
    assert os.waitstatus_to_exitcode(status) == 0, text
    assert "stopped" in text
    assert "Error" not in text
    assert "Interrupt" not in text
