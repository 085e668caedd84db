"""Lambda's own contract, locally: each execution environment is an awslambdaric process, frozen between
invocations, killed past its timeout, replaced when it dies (``zus_local.lambda_runtime``).

First the runtime on small functions of a template written here, then the local stack (``make dev``)
through its signed API: a frozen vend environment and a client deleted meanwhile, eight callers of
20-second tokens, and the environment behind each request line.
"""

from __future__ import annotations

import functools
import io
import math
import os
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import e2e_support
import pytest
import requests
from e2e_support import free_port

from zus_local.aws_setup import create_user_with_key
from zus_local.console import Console
from zus_local.iam_authorizer import IamAuthorizer, MotoSigners
from zus_local.lambda_runtime import FunctionError, FunctionLoadError, FunctionTimeout, LambdaRuntime
from zus_local.local_api import LocalApi
from zus_local.local_principals import ADMIN_USER, CONSUMER_USER
from zus_local.sigv4 import ExecuteApiAuth
from zus_local.stand_ins import ResolveContext
from zus_local.template_model import load_model

if TYPE_CHECKING:
    from local_stack_process import StackProcess

FUNCTION_CODE = """
import json
import os
import threading
import time


def handler(event, context):
    action = event.get("action") or (event.get("rawPath") or "/").strip("/")
    if action == "sleep":
        time.sleep(float(event.get("seconds", 3)))
    if action == "exit":
        os._exit(3)
    if action == "leave-a-thread":
        # Work left for after the response: it appends a line every 10 ms, for as long as it runs.
        def tick():
            for number in range(100000):
                with open(event["file"], "a") as out:
                    out.write(f"{number}\\n")
                time.sleep(0.01)

        threading.Thread(target=tick, daemon=True).start()
    if action == "see-it-tick":
        # The thread left by an earlier invocation writes while this one runs (within its 1 s timeout).
        start = open(event["file"]).read().count("\\n")
        for _ in range(80):
            if open(event["file"]).read().count("\\n") > start:
                return {"ticked": True}
            time.sleep(0.01)
        return {"ticked": False}
    return {"pid": os.getpid(), "statusCode": 200, "body": json.dumps({"pid": os.getpid()})}
"""

TEMPLATE = """
Resources:
  WorkFunction:
    Type: AWS::Serverless::Function
    Properties:
      Runtime: python3.13
      Handler: app.handler
      CodeUri: work/
      Timeout: 1
      Events:
        Sleep:
          Type: HttpApi
          Properties: {Path: /sleep, Method: GET}
"""

BROKEN_CODE = """
import os

SETTING = os.environ["A_SETTING_NOBODY_SET"]


def handler(event, context):
    return {}
"""


# An invocation's window is short: its states are polled every 50 ms.
wait_until = functools.partial(e2e_support.wait_until, interval=0.05)


def process_state(pid: int) -> str:
    """A process's state letter (``T``: stopped, as a frozen environment is), or ``-`` once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "-"
    return stat.rpartition(")")[2].split()[0]


def has_exited(pid: int) -> bool:
    """The whole process has ended (its parent can now reap it): gone, or a zombie whose every thread has
    exited. A killed multi-threaded process shows its leader as a zombie while its other threads still
    exit, and until they have, waitpid (so the runtime) still sees it running."""
    if process_state(pid) == "-":
        return True
    try:
        return process_state(pid) == "Z" and len(list(Path(f"/proc/{pid}/task").iterdir())) <= 1
    except OSError:
        return True


def is_environment(pid: int) -> bool:
    try:
        return b"awslambdaric" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")


def write_functions(root: Path, code: str = FUNCTION_CODE) -> Path:
    (root / "work").mkdir()
    (root / "work" / "app.py").write_text(code)
    (root / "template.yaml").write_text(TEMPLATE)
    return root / "template.yaml"


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[LambdaRuntime]:
    """The template's WorkFunction (Timeout: 1) in up to two environments, frozen between invocations."""
    model = load_model(write_functions(tmp_path), ResolveContext(stack_name="rt"))
    running = LambdaRuntime(model, concurrency=2, console=Console(io.StringIO(), io.StringIO()))
    running.warm_up()
    try:
        yield running
    finally:
        running.stop()


def test_a_thread_left_running_after_the_response_stalls_while_the_environment_is_frozen(
    runtime: LambdaRuntime, tmp_path: Path
) -> None:
    ticks = tmp_path / "ticks"
    first = runtime.invoke("WorkFunction", {"action": "leave-a-thread", "file": str(ticks)})

    # Once it asked for its next invocation, the environment is stopped, and so is the thread it left
    wait_until(lambda: process_state(first.pid) == "T", 10, "the environment to be frozen")
    frozen_at = ticks.read_text()
    time.sleep(0.3)
    assert ticks.read_text() == frozen_at
    assert process_state(first.pid) == "T"

    # Its next invocation thaws it: the thread goes on while that invocation runs
    second = runtime.invoke("WorkFunction", {"action": "see-it-tick", "file": str(ticks)})
    assert (second.pid, second.cold_start) == (first.pid, False)
    assert second.result == {"ticked": True}


def test_with_no_freeze_the_thread_runs_on(tmp_path: Path) -> None:
    model = load_model(write_functions(tmp_path), ResolveContext(stack_name="rt"))
    runtime = LambdaRuntime(model, console=Console(io.StringIO(), io.StringIO()), freeze=False)
    runtime.warm_up()
    try:
        ticks = tmp_path / "ticks"
        invocation = runtime.invoke("WorkFunction", {"action": "leave-a-thread", "file": str(ticks)})
        wait_until(lambda: ticks.exists() and len(ticks.read_text().split()) > 20, 10, "the thread to run on")
        assert process_state(invocation.pid) != "T"
    finally:
        runtime.stop()


def test_an_invocation_past_its_timeout_kills_its_environment_and_the_next_is_a_cold_start(
    runtime: LambdaRuntime,
) -> None:
    before = runtime.invoke("WorkFunction", {})

    with pytest.raises(FunctionTimeout, match=r"Task timed out after 1\.00 seconds"):
        runtime.invoke("WorkFunction", {"action": "sleep", "seconds": 30})

    wait_until(lambda: process_state(before.pid) == "-", 10, "the timed-out environment to be gone")
    after = runtime.invoke("WorkFunction", {})
    assert after.cold_start
    assert after.pid != before.pid


def test_a_crashed_environment_is_replaced_by_a_fresh_one(runtime: LambdaRuntime) -> None:
    before = runtime.invoke("WorkFunction", {})

    with pytest.raises(FunctionError, match=r"Runtime\.ExitError"):
        runtime.invoke("WorkFunction", {"action": "exit"})

    after = runtime.invoke("WorkFunction", {})
    assert after.cold_start
    assert after.pid != before.pid
    assert is_environment(after.pid)


def test_an_idle_environment_killed_from_outside_is_replaced_at_the_next_invocation(runtime: LambdaRuntime) -> None:
    before = runtime.invoke("WorkFunction", {})
    os.kill(before.pid, signal.SIGKILL)
    wait_until(lambda: has_exited(before.pid), 10, "the environment to die")

    after = runtime.invoke("WorkFunction", {})

    assert after.cold_start
    assert after.pid != before.pid


def test_an_init_error_stops_warm_up_with_one_line_naming_the_function(tmp_path: Path) -> None:
    model = load_model(write_functions(tmp_path, BROKEN_CODE), ResolveContext(stack_name="rt"))
    out, err = io.StringIO(), io.StringIO()
    runtime = LambdaRuntime(model, console=Console(out, err))

    with pytest.raises(FunctionLoadError) as caught:
        runtime.warm_up()

    assert str(caught.value) == "WorkFunction: init failed: KeyError: 'A_SETTING_NOBODY_SET'"
    # the runtime client's own record of it (a warning, a trace) is not repeated on the console
    assert (out.getvalue(), err.getvalue()) == ("", "")


def test_api_gateway_answers_a_lambda_timeout_with_its_500(tmp_path: Path, moto_endpoint: str) -> None:
    model = load_model(write_functions(tmp_path), ResolveContext(stack_name="rt"))
    iam = boto3.client("iam", endpoint_url=moto_endpoint, region_name="us-east-1")
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "execute-api:*", "Resource": "*"}]}
    _, key, secret = create_user_with_key(iam, "runtime-caller", "invoke", policy)
    out, err = io.StringIO(), io.StringIO()
    console = Console(out, err)
    runtime = LambdaRuntime(model, console=console)
    runtime.warm_up()
    authorizer = IamAuthorizer(MotoSigners(moto_endpoint), region="us-east-1", account_id="123456789012")
    api = LocalApi(console, "127.0.0.1", free_port()).bind().serve(model, runtime, authorizer)
    try:
        session = requests.Session()
        session.auth = ExecuteApiAuth(key, secret)
        response = session.get(f"{api.url}/sleep", timeout=30)
    finally:
        api.stop()
        runtime.stop()

    assert (response.status_code, response.json()) == (500, {"message": "Internal Server Error"})
    assert "WorkFunction: Sandbox.Timedout: Task timed out after 1.00 seconds" in err.getvalue()
    assert "GET    /sleep  500" in out.getvalue()


# --- the local stack -------------------------------------------------------------------------------------

REQUEST_LINE = r"{method} +{path}  (\d+)  \d+ ms  \(pid (\d+) (cold|warm) \d+ ms\)"


def request_lines(stack: StackProcess, method: str, path: str) -> list[tuple[int, int, str]]:
    """(status, pid, cold or warm) of each request line for ``method path``."""
    pattern = re.compile(REQUEST_LINE.format(method=method, path=re.escape(path)))
    return [(int(m[1]), int(m[2]), m[3]) for line in stack.lines if (m := pattern.search(line))]


def arn_of(stack: StackProcess, user: str) -> str:
    return str(stack.client("iam").get_user(UserName=user)["User"]["Arn"])


def test_a_frozen_vend_environment_answers_404_for_a_client_deleted_while_it_slept(
    stack_factory: Callable[..., StackProcess],
) -> None:
    # One vend environment, that trusts the record it read for 2 s
    stack = stack_factory(["--schedule-scale", "0", "--concurrency", "1", "--env", "MEMORY_REVALIDATION_SECONDS=2"])
    name, api = "frozen-guard", stack.api
    consumers = [arn_of(stack, CONSUMER_USER), arn_of(stack, ADMIN_USER)]
    created = stack.admin.post(f"{api}/app-clients", json={"name": name, "consumers": consumers}, timeout=30)
    assert created.status_code == 201, created.text
    path = f"/app-clients/{name}/token"
    assert stack.admin.get(f"{api}{path}", timeout=10).status_code == 200
    [(_, pid, _)] = wait_until(lambda: request_lines(stack, "GET", path), 5, "the request line")
    wait_until(lambda: process_state(pid) == "T", 10, "the vend environment to be frozen")

    # While it stays frozen past the revalidation window, the client is deleted
    assert stack.admin.delete(f"{api}/app-clients/{name}", timeout=30).status_code == 204
    time.sleep(2.5)
    assert process_state(pid) == "T"

    # Its next call reads the record again before it uses what it remembered
    again = stack.admin.get(f"{api}{path}", timeout=10)
    assert again.status_code == 404, again.status_code  # (a 200 body would hold a token)
    wait_until(lambda: len(request_lines(stack, "GET", path)) == 2, 5, "the second request line")
    assert request_lines(stack, "GET", path)[1] == (404, pid, "warm")


def test_each_request_line_names_its_environments_process_and_whether_it_was_a_cold_start(
    stack_factory: Callable[..., StackProcess],
) -> None:
    stack = stack_factory(["--schedule-scale", "0", "--idle-seconds", "1"])
    assert stack.admin.get(f"{stack.api}/app-clients", timeout=10).status_code == 200
    [(_, warm_pid, warm)] = wait_until(lambda: request_lines(stack, "GET", "/app-clients"), 5, "the request line")
    assert warm == "warm"  # started with the stack
    assert is_environment(warm_pid)
    assert warm_pid != stack.process.pid

    # Idle for a second, the environment is ended; the next request starts a new one
    wait_until(lambda: f"environment pid {warm_pid} reaped" in stack.output, 15, "the idle environment to go")
    assert process_state(warm_pid) == "-"
    assert stack.admin.get(f"{stack.api}/app-clients", timeout=10).status_code == 200
    wait_until(lambda: len(request_lines(stack, "GET", "/app-clients")) == 2, 5, "the second request line")
    status, cold_pid, cold = request_lines(stack, "GET", "/app-clients")[1]
    assert (status, cold) == (200, "cold")
    assert cold_pid != warm_pid
    assert is_environment(cold_pid) or process_state(cold_pid) == "-"  # reaped again already, at most


def client_of_short_lived_tokens(stack: StackProcess, name: str, lifetime: int) -> requests.Response:
    """Zus's tokens live ``lifetime`` s from now on; a client ``name`` of the stack's consumer, created."""
    config = {"tokenLifetimeSeconds": lifetime}
    requests.post(f"{stack.zus}/_emulator/config", json=config, timeout=5).raise_for_status()
    created = stack.admin.post(
        f"{stack.api}/app-clients", json={"name": name, "consumers": [arn_of(stack, CONSUMER_USER)]}, timeout=30
    )
    assert created.status_code == 201, created.text
    return created


def test_refresh_ahead_is_done_when_its_caller_is_answered_and_its_environment_frozen(
    stack_factory: Callable[..., StackProcess],
) -> None:
    # Given tokens that live 10 s, due for renewal in their last 5 s, and one vend environment
    lifetime, margin = 10, 5
    stack = stack_factory(
        ["--schedule-scale", "0", "--concurrency", "1", "--env", f"TOKEN_REFRESH_MARGIN_SECONDS={margin}"]
    )
    name = "refreshed-in-the-call"
    client_of_short_lived_tokens(stack, name, lifetime)
    table = stack.client("dynamodb")
    key = {"pk": {"S": f"client#{name}"}, "sk": {"S": "token"}}

    def stored() -> dict[str, Any]:
        item = table.get_item(TableName="zus-m2m-local", Key=key, ConsistentRead=True)["Item"]
        return {"expiresAt": float(item["expiresAt"]["N"]), "leaseOwner": item.get("leaseOwner")}

    first = stored()  # provisioning's proof
    wait_until(lambda: first["expiresAt"] - time.time() < margin - 1, 10, "the token to enter its margin")
    # and Zus answering token requests 1.5 s late
    fault = {"latencyMs": 1500, "paths": ["/oauth/token"]}
    requests.post(f"{stack.zus}/_emulator/faults", json=fault, timeout=5).raise_for_status()

    # When a caller finds it due
    path = f"/app-clients/{name}/token"
    answered = stack.consumer.get(f"{stack.api}{path}?minTtl=1", timeout=15)
    assert answered.status_code == 200, answered.status_code

    # Then its environment renewed it before answering: nothing was left for a frozen environment
    [(_, pid, _)] = wait_until(lambda: request_lines(stack, "GET", path), 5, "the request line")
    wait_until(lambda: process_state(pid) == "T", 10, "the vend environment to be frozen")
    renewed = stored()
    assert renewed["expiresAt"] > first["expiresAt"]
    assert renewed["leaseOwner"] is None


@pytest.mark.long
def test_eight_callers_for_90_s_of_20_s_tokens_all_200_and_at_most_a_tenth_over_the_minimum_at_zus(
    stack_factory: Callable[..., StackProcess],
) -> None:
    lifetime, margin, callers, seconds = 20, 5, 8, 90.0
    stack = stack_factory(["--schedule-scale", "0", "--env", f"TOKEN_REFRESH_MARGIN_SECONDS={margin}"])
    name = "eight-callers"
    created = client_of_short_lived_tokens(stack, name, lifetime)
    # Provisioning's proof minted the first token: the window starts with it.
    window_start = time.time()
    client_id = created.json()["clientId"]
    before = requests.get(f"{stack.zus}/_emulator/stats", timeout=5).json()["tokenRequests"].get(client_id, 0)
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    end = time.monotonic() + seconds

    def call_until_the_end() -> None:
        with stack.session(CONSUMER_USER) as session:
            while time.monotonic() < end:
                status = session.get(f"{stack.api}/app-clients/{name}/token?minTtl=1", timeout=15).status_code
                with lock:
                    statuses[status] = statuses.get(status, 0) + 1
                time.sleep(0.1)

    threads = [threading.Thread(target=call_until_the_end) for _ in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    window = time.time() - window_start
    after = requests.get(f"{stack.zus}/_emulator/stats", timeout=5).json()["tokenRequests"][client_id]

    assert set(statuses) == {200}, statuses
    upstream = 1 + after - before  # the first token, and every renewal
    minimum = math.ceil(window / (lifetime - margin))
    print(f"\n{sum(statuses.values())} calls in {window:.0f} s: {upstream} token requests at Zus, minimum {minimum}")
    assert upstream <= 1.1 * minimum
    # The environments that served them are frozen between calls
    pids = {pid for _, pid, _ in request_lines(stack, "GET", f"/app-clients/{name}/token")}
    assert pids
    wait_until(lambda: all(process_state(pid) == "T" for pid in pids), 10, "the vend environments to be frozen")


def test_the_banner_lists_each_functions_environment(stack: StackProcess) -> None:
    listed = [line for line in stack.lines if re.match(r" {16}\w+Function +pid \d+, init \d+ ms$", line)]
    assert len(listed) == 5, stack.output
    assert any("frozen between invocations" in line for line in stack.lines)
    for line in listed:
        assert is_environment(int(re.findall(r"pid (\d+)", line)[0]))
