"""Runs the template's Python functions the way Lambda does: each execution environment is an OS process
running AWS's runtime interface client (``python -m awslambdaric <Handler>``, the client in Lambda's own
Python images) against a Runtime API this module serves on 127.0.0.1.

An environment starts with the function's code folder as its working directory (``LAMBDA_TASK_ROOT``),
its layers' folders on ``PYTHONPATH`` (``/opt/python`` on Lambda), and the template's variables, the
stack's overrides and Lambda's own (``AWS_LAMBDA_FUNCTION_NAME``, ``AWS_LAMBDA_RUNTIME_API``, …). Its
init ends when it first asks for an invocation; an init error ends it (``FunctionLoadError``).

An environment serves one invocation at a time; a function gets a new one (a cold start, logged) when
all of its environments are busy, up to ``concurrency``, and loses one that stayed idle ``idle_seconds``.
As on Lambda, an environment is frozen (SIGSTOP) once it posted its response and asked for the next
invocation, and thawed (SIGCONT) when it gets one: a thread its handler left running stalls until then.
An invocation that outlives the template's ``Timeout`` kills its environment (``FunctionTimeout``); an
environment whose process exits is discarded, and the next invocation starts a fresh one.

Each environment has a Runtime API of its own, on its own ephemeral port: the client reaches the API
with ``http.client.HTTPConnection(AWS_LAMBDA_RUNTIME_API)`` for init errors, so the variable must be a
bare ``host:port`` (a path prefix per environment would break that call).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import IO, Any

from zus_emulator.http_server import LocalHTTPServer, RequestHandler
from zus_local.console import Console, is_metrics_document
from zus_local.template_model import FunctionSpec, TemplateModel

API_PREFIX = "/2018-06-01/runtime"
# How long an environment's init may take before the stack gives up on it (Lambda allows 10 s; this
# machine is shared and slower).
INIT_SECONDS = 30.0
# How long a stopping environment gets to exit after SIGTERM before SIGKILL.
STOP_SECONDS = 3.0
# Passed through from the stack's environment: what a process needs to run, and the AWS settings the
# stack chose (moto's endpoint and fake keys, or the real account's credentials).
_PASSED_THROUGH = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ")


class FunctionLoadError(RuntimeError):
    """An environment failed its init (its handler module raised on import, e.g. on a missing setting)."""


class FunctionError(RuntimeError):
    """An invocation failed: the handler raised (its error as the runtime client reported it), or its
    environment died."""

    def __init__(self, function: str, error_type: str, message: str, trace: list[str] | None = None) -> None:
        super().__init__(f"{function}: {error_type}: {message}")
        self.error_type = error_type
        self.trace = trace or []

    def report(self) -> str:
        """The error with the handler's stack trace, as the runtime client reported it."""
        return "".join([*self.trace, str(self)])


class FunctionTimeout(FunctionError):
    """An invocation outlived the function's timeout; its environment was killed."""


@dataclass(frozen=True)
class Invocation:
    """What one call returned, how long it took, and the environment that served it."""

    result: Any
    duration_ms: float
    cold_start: bool
    request_id: str
    pid: int

    def describe(self) -> str:
        """``pid 1234 warm 12 ms``: for the stack's one line per event."""
        return f"pid {self.pid} {'cold' if self.cold_start else 'warm'} {self.duration_ms:.0f} ms"


@dataclass
class _Request:
    request_id: str
    body: bytes
    deadline: float  # time.time() seconds
    arn: str
    outcome: tuple[str, bytes, str] | None = None  # ("response" | "error", body, error type)


class _Environment:
    """One process and its Runtime API; the server's threads and the invoker meet under ``_state``."""

    def __init__(self, function: _Function, number: int) -> None:
        self.function = function
        self.number = number
        self.log_stream = f"{time.strftime('%Y/%m/%d')}/[$LATEST]{uuid.uuid4().hex}"
        self._state = threading.Condition()
        self._request: _Request | None = None
        self._asking = False  # the process waits in /next
        self._frozen = False
        self._init_error: str | None = None
        self._closed = False
        self.idle_since = time.monotonic()
        self.init_ms = 0.0
        self._server = _RuntimeApiServer(self)
        self._server.start_serving(f"runtime-api-{function.spec.logical_id}-{number}")
        spec = function.spec
        self.process = subprocess.Popen(
            [sys.executable, "-m", "awslambdaric", spec.handler],
            cwd=spec.code_dir,
            env=function.process_environment(self.log_stream, f"127.0.0.1:{self._server.server_port}"),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            # Ctrl-C reaches the stack alone; it stops its environments itself.
            start_new_session=True,
        )
        self.pid = self.process.pid
        self._started = time.monotonic()
        assert self.process.stdout is not None
        assert self.process.stderr is not None
        self._relays = [
            threading.Thread(target=self._relay, args=(stream, error), name=f"env-{self.pid}-out", daemon=True)
            for stream, error in ((self.process.stdout, False), (self.process.stderr, True))
        ]
        for relay in self._relays:
            relay.start()

    # --- the invoker's side ------------------------------------------------------------------------

    def wait_ready(self) -> None:
        """Until the process first asks for an invocation; FunctionLoadError if its init fails."""
        deadline = self._started + INIT_SECONDS
        with self._state:
            while not self._asking and self._init_error is None and self.process.poll() is None:
                if time.monotonic() >= deadline:
                    break
                self._state.wait(0.1)
            asking, error = self._asking, self._init_error
        self.init_ms = (time.monotonic() - self._started) * 1000
        if not asking:
            code = self.process.poll()
            self.close()
            name = self.function.spec.logical_id
            if error is not None:
                raise FunctionLoadError(f"{name}: init failed: {error}")
            if code is not None:
                raise FunctionLoadError(f"{name}: its environment exited with status {code} during init")
            raise FunctionLoadError(f"{name}: init took longer than {INIT_SECONDS:.0f} s")

    def invoke(self, request: _Request, timeout: float) -> tuple[str, bytes, str]:
        """Hand ``request`` to the process (thawing it) and wait for its outcome, at most ``timeout``
        seconds; a timeout or an exit of the process raises FunctionError, and the environment is gone."""
        name = self.function.spec.logical_id
        with self._state:
            self._request = request
            self._thaw()
            self._state.notify_all()
            ends = time.monotonic() + timeout
            while request.outcome is None and not self._closed and self.process.poll() is None:
                left = ends - time.monotonic()
                if left <= 0:
                    break
                self._state.wait(min(left, 0.5))
            outcome = request.outcome
            self._request = None
        if outcome is not None:
            return outcome
        code, stopped = self.process.poll(), self._closed
        self.close()
        if code is not None:
            raise FunctionError(
                name, "Runtime.ExitError", f"its environment (pid {self.pid}) exited with status {code}"
            )
        if stopped:
            raise FunctionError(name, "Runtime.Stopped", "the local stack is stopping")
        raise FunctionTimeout(name, "Sandbox.Timedout", f"Task timed out after {timeout:.2f} seconds")

    @property
    def alive(self) -> bool:
        return not self._closed and self.process.poll() is None

    def close(self) -> None:
        """Thaw (a stopped process cannot act on SIGTERM) and end the process, then stop its API."""
        self.signal_stop()
        self.wait_stopped(time.monotonic() + STOP_SECONDS)

    def signal_stop(self) -> None:
        with self._state:
            self._closed = True
            if self.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGCONT)
                    self.process.terminate()
            self._frozen = False
            self._state.notify_all()

    def wait_stopped(self, deadline: float) -> None:
        try:
            self.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=STOP_SECONDS)
        self._server.stop_serving()
        for relay in self._relays:  # its last lines, before anything is said about its end
            relay.join(timeout=1.0)

    def _thaw(self) -> None:
        if self._frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGCONT)
            self._frozen = False

    def _relay(self, stream: IO[bytes], error: bool) -> None:
        """The process's output, line by line, through the stack's console; EMF documents and the
        client's own record of an error (which the invoker reports itself) only when verbose."""
        runtime = self.function.runtime
        for raw in stream:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            if not runtime.verbose and (is_metrics_document(line) or _client_error_record(line)):
                continue
            if error:
                runtime.console.error(line)
            else:
                runtime.console.raw(line)

    # --- the Runtime API's side (its server's threads) -----------------------------------------------

    def next_invocation(self) -> _Request | None:
        """The process asks for work: it is frozen until there is some (None: the environment closes)."""
        with self._state:
            self._asking = True
            self._state.notify_all()
            while self._request is None or self._request.outcome is not None:
                if self._closed:
                    return None
                if self.function.runtime.freeze and not self._frozen:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(self.pid, signal.SIGSTOP)
                    self._frozen = True
                self._state.wait()
            self._asking = False
            return self._request

    def post(self, request_id: str, kind: str, body: bytes, error_type: str) -> bool:
        with self._state:
            request = self._request
            if request is None or request.request_id != request_id or request.outcome is not None:
                return False
            request.outcome = (kind, body, error_type)
            self._state.notify_all()
            return True

    def init_failed(self, body: bytes, error_type: str) -> None:
        with self._state:
            self._init_error = _error_line(body, error_type)
            self._state.notify_all()


class _Function:
    """A function's environments: idle ones, and how many exist (busy included)."""

    def __init__(self, runtime: LambdaRuntime, spec: FunctionSpec, environment: Mapping[str, str]) -> None:
        self.runtime = runtime
        self.spec = spec
        self.environment = dict(environment)
        self._idle: list[_Environment] = []
        self._count = 0
        self._numbers = itertools.count(1)
        self._available = threading.Condition()

    def process_environment(self, log_stream: str, runtime_api: str) -> dict[str, str]:
        spec, runtime = self.spec, self.runtime
        passed = {
            name: value
            for name, value in os.environ.items()
            if name in _PASSED_THROUGH or (name.startswith("AWS_") and not name.startswith("AWS_LAMBDA_"))
        }
        return {
            **passed,
            **self.environment,
            "PYTHONPATH": os.pathsep.join(str(layer) for layer in spec.layer_dirs),
            "LAMBDA_TASK_ROOT": str(spec.code_dir),
            "_HANDLER": spec.handler,
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{spec.runtime}",
            "AWS_LAMBDA_FUNCTION_NAME": spec.name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_LOG_GROUP_NAME": spec.log_group,
            "AWS_LAMBDA_LOG_STREAM_NAME": log_stream,
            "AWS_LAMBDA_RUNTIME_API": runtime_api,
            "AWS_REGION": runtime.region,
            "AWS_DEFAULT_REGION": runtime.region,
        }

    def start(self) -> _Environment:
        return _Environment(self, next(self._numbers))

    def add(self, environment: _Environment) -> None:
        with self._available:
            self._count += 1
            self._idle.append(environment)
            self._available.notify()

    @contextlib.contextmanager
    def serving(self) -> Iterator[tuple[_Environment, bool]]:
        """An idle environment, or a new one (cold) if there is room, else wait for one to free up."""
        with self._available:
            while not self._idle and self._count >= self.runtime.concurrency:
                self._available.wait()
            found = self._idle.pop() if self._idle else None
            dead = found if found is not None and not found.alive else None
            if dead is not None:  # ended while idle (killed from outside): a new one takes its slot
                found = None
            elif found is None:
                self._count += 1
        if dead is not None:
            dead.close()
        cold = found is None
        try:
            if found is None:
                found = self.start()
                found.wait_ready()
                self.runtime.console.line(
                    f"{self.spec.logical_id}: cold start, pid {found.pid}, init {found.init_ms:.0f} ms"
                )
        except BaseException:
            self._discard()
            raise
        try:
            yield found, cold
        finally:
            if self.runtime.stopping:
                found.close()
            if found.alive:
                found.idle_since = time.monotonic()
                with self._available:
                    self._idle.append(found)
                    self._available.notify()
            else:
                self._discard()

    def _discard(self) -> None:
        with self._available:
            self._count -= 1
            self._available.notify()

    def reap(self, idle_seconds: float) -> list[_Environment]:
        """Take out the environments idle for ``idle_seconds`` or more (and any that died)."""
        now = time.monotonic()
        with self._available:
            gone = [env for env in self._idle if now - env.idle_since >= idle_seconds or not env.alive]
            self._idle = [env for env in self._idle if env not in gone]
            self._count -= len(gone)
            self._available.notify_all()
        return gone

    def idle(self) -> list[_Environment]:
        with self._available:
            return list(self._idle)

    def take_all(self) -> list[_Environment]:
        with self._available:
            idle, self._idle = self._idle, []
            return idle


class LambdaRuntime:
    """The template's functions, invocable by logical id (or found by ARN), each in its environments."""

    def __init__(
        self,
        model: TemplateModel,
        overrides: Mapping[str, str] | None = None,
        *,
        region: str = "us-east-1",
        account_id: str = "123456789012",
        concurrency: int = 4,
        console: Console | None = None,
        verbose: bool = False,
        freeze: bool = True,
        idle_seconds: float = 300.0,
    ) -> None:
        """``overrides`` replace template variables in every function's environment (e.g. the Zus URLs).
        ``freeze``: False only to debug (threads then run on after a response, which Lambda never does)."""
        self.model = model
        self.region = region
        self.account_id = account_id
        self.concurrency = max(1, concurrency)
        self.console = console or Console()
        self.verbose = verbose
        self.freeze = freeze
        self.idle_seconds = idle_seconds
        self._functions = {
            logical_id: _Function(self, spec, {**spec.environment, **(overrides or {})})
            for logical_id, spec in model.functions.items()
        }
        self._stopping = threading.Event()
        self._reaper: threading.Thread | None = None

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def environment(self, logical_id: str) -> Mapping[str, str]:
        """The template's variables and the overrides a function's environments start with."""
        return dict(self._functions[logical_id].environment)

    def warm_up(self) -> None:
        """One environment per function, all started at once: a broken handler stops the stack at start
        (FunctionLoadError naming it). Then idle environments are reaped from time to time."""
        started = [(function, function.start()) for function in self._functions.values()]
        failure: FunctionLoadError | None = None
        for function, environment in started:
            try:
                environment.wait_ready()
            except FunctionLoadError as exc:
                failure = failure or exc
                continue
            function.add(environment)
        if failure is not None:
            self.stop()
            raise failure
        if self._reaper is None and self.idle_seconds > 0:
            self._reaper = threading.Thread(target=self._reap, name="lambda-reaper", daemon=True)
            self._reaper.start()

    def invoke(self, logical_id: str, event: Any, *, request_id: str | None = None) -> Invocation:
        """``event`` handed to one of the function's environments; its result, or FunctionError if the
        handler raised, timed out or its environment died (FunctionLoadError: a new one failed its init)."""
        function = self._functions[logical_id]
        spec = function.spec
        request_id = request_id or str(uuid.uuid4())
        with function.serving() as (environment, cold):
            started = time.perf_counter()
            request = _Request(
                request_id=request_id,
                body=json.dumps(event).encode(),
                deadline=time.time() + spec.timeout_seconds,
                arn=spec.arn,
            )
            kind, body, error_type = environment.invoke(request, spec.timeout_seconds)
            duration = (time.perf_counter() - started) * 1000
        if kind == "error":
            raise _function_error(logical_id, body, error_type)
        return Invocation(
            result=json.loads(body) if body else None,
            duration_ms=duration,
            cold_start=cold,
            request_id=request_id,
            pid=environment.pid,
        )

    def idle_environments(self) -> list[tuple[str, int, float]]:
        """Each idle environment: its function, its process id and how long its init took (ms)."""
        return [
            (logical_id, environment.pid, environment.init_ms)
            for logical_id, function in self._functions.items()
            for environment in function.idle()
        ]

    def function_by_arn(self, arn: str) -> FunctionSpec | None:
        return self.model.function_by_arn(arn)

    def stop(self) -> None:
        """End every idle environment (thawed first), bounded; a busy one ends once its invocation does."""
        self._stopping.set()
        environments = [env for function in self._functions.values() for env in function.take_all()]
        for environment in environments:
            environment.signal_stop()
        deadline = time.monotonic() + STOP_SECONDS
        for environment in environments:
            environment.wait_stopped(deadline)

    def _reap(self) -> None:
        while not self._stopping.wait(min(5.0, self.idle_seconds)):
            for function in self._functions.values():
                for environment in function.reap(self.idle_seconds):
                    environment.close()
                    self.console.line(
                        f"{function.spec.logical_id}: environment pid {environment.pid} reaped "
                        f"after {self.idle_seconds:g} s idle"
                    )


def _client_error_record(line: str) -> bool:
    """awslambdaric's text record of an init or invocation error (its lines joined by CR), or the
    warning it prints before an init error's."""
    return (line.startswith("[ERROR] ") and "\r" in line) or "LAMBDA_WARNING: Unhandled exception" in line


def _error_line(body: bytes, error_type: str) -> str:
    try:
        error = json.loads(body)
        return f"{error.get('errorType') or error_type}: {error.get('errorMessage', '')}"
    except (ValueError, AttributeError):
        return error_type or "unknown error"


def _function_error(function: str, body: bytes, error_type: str) -> FunctionError:
    try:
        error = json.loads(body)
        trace = [str(line) for line in error.get("stackTrace") or []]
        return FunctionError(function, str(error.get("errorType") or error_type), str(error.get("errorMessage")), trace)
    except (ValueError, AttributeError):
        return FunctionError(function, error_type or "Unknown", "the runtime client posted an unreadable error")


class _RuntimeApiServer(LocalHTTPServer):
    """The Runtime API of one environment (its process is the only client)."""

    def __init__(self, environment: _Environment) -> None:
        self.environment = environment
        super().__init__(("127.0.0.1", 0), _RuntimeApiHandler)

    def report_connection_error(self, error: BaseException) -> None:
        self.environment.function.runtime.console.error(
            f"runtime API of pid {self.environment.pid}: connection error: {type(error).__name__}"
        )


class _RuntimeApiHandler(RequestHandler):
    server_version = "zus-m2m-local-runtime-api"
    sys_version = ""
    server: _RuntimeApiServer

    def handle_request(self) -> None:
        environment = self.server.environment
        path = self.path
        body = self.read_body(6 * 1024 * 1024)
        error_type = self.headers.get("Lambda-Runtime-Function-Error-Type") or ""
        if self.command == "GET" and path == f"{API_PREFIX}/invocation/next":
            request = environment.next_invocation()
            if request is None:
                self._answer(410, {"errorMessage": "the environment is shutting down", "errorType": "Gone"})
                return
            self._send(
                200,
                request.body,
                [
                    ("Lambda-Runtime-Aws-Request-Id", request.request_id),
                    ("Lambda-Runtime-Deadline-Ms", str(int(request.deadline * 1000))),
                    ("Lambda-Runtime-Invoked-Function-Arn", request.arn),
                    ("Lambda-Runtime-Trace-Id", _trace_id()),
                ],
            )
            return
        if self.command == "POST" and path == f"{API_PREFIX}/init/error":
            environment.init_failed(body, error_type)
            self._answer(202, {"status": "OK"})
            return
        prefix = f"{API_PREFIX}/invocation/"
        if self.command == "POST" and path.startswith(prefix):
            request_id, _, kind = path[len(prefix) :].partition("/")
            if kind in ("response", "error"):
                if environment.post(request_id, kind, body, error_type):
                    self._answer(202, {"status": "OK"})
                else:
                    self._answer(400, {"errorMessage": "no such invocation", "errorType": "InvalidRequestID"})
                return
        self._answer(404, {"errorMessage": "not found", "errorType": "NotFound"})

    def _answer(self, status: int, body: Mapping[str, str]) -> None:
        self._send(status, json.dumps(body).encode(), [])

    def _send(self, status: int, body: bytes, headers: list[tuple[str, str]]) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")  # awslambdaric needs it on /next
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            self.close_connection = True


def _trace_id() -> str:
    return f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]};Parent={uuid.uuid4().hex[:16]};Sampled=0"
