"""Fakes of the client's own interfaces (the ``Transport``, the clock, ``ZusAuth``'s token source) and a
small recording HTTP server on 127.0.0.1 for ``ZusAuth``'s retry."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from zus_m2m_client import AccessToken, HttpResponse, Transport, TransportError, fingerprint

GATE_TIMEOUT = 30.0  # a liveness guard only: a blocked fake call never waits longer than this


def wait_until(
    condition: Callable[[], object], what: str, timeout: float = GATE_TIMEOUT, interval: float = 0.01
) -> None:
    """Wait for observed state (never for an amount of time); fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


class FakeClock:
    """Monotonic seconds that move only when told to (or when ``sleep`` is called)."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.slept: list[float] = []
        self.readers: set[int] = set()  # threads that read the clock
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            self.readers.add(threading.get_ident())
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.slept.append(seconds)
            self.now += seconds

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


def problem(status: int, detail: str, *, retry_after: int | None = None) -> HttpResponse:
    headers = {"content-type": "application/problem+json"}
    if retry_after is not None:
        headers["retry-after"] = str(retry_after)
    body = {"type": "urn:zus-m2m:problem:test", "title": "Test Problem", "status": status, "detail": detail}
    return HttpResponse(status, headers, json.dumps(body).encode())


class FakeTokenRoute:
    """The token route behind the client's ``Transport`` interface, in process: each call answers the next
    scripted answer (or raises it: a ``TransportError`` is a lost connection), else a new token (``token-1``,
    ``token-2``, ...: the call's number) living ``lifetime`` seconds."""

    def __init__(self, clock: FakeClock, lifetime: int = 3600) -> None:
        self.clock = clock
        self.lifetime = lifetime
        self.calls: list[dict[str, str]] = []  # the query of each call
        self.script: deque[HttpResponse | TransportError] = deque()
        self.gate: threading.Event | None = None  # when set to an Event, calls block until it is set
        self.entered = threading.Event()
        self._lock = threading.Lock()

    def request(
        self, method: str, path: str, *, query: Mapping[str, str] | None = None, body: object = None
    ) -> HttpResponse:
        assert (method, path) == ("GET", "/app-clients/billing/token")
        with self._lock:
            self.calls.append(dict(query or {}))
            number = len(self.calls)
            scripted = self.script.popleft() if self.script else None
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(GATE_TIMEOUT), "the test never opened the gate"
        if isinstance(scripted, TransportError):
            raise scripted
        if scripted is not None:
            return scripted
        return self.answer(f"token-{number}")

    def answer(self, access_token: str) -> HttpResponse:
        body = {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": self.lifetime,
            "expires_at": int(1_800_000_000 + self.clock.now + self.lifetime),
        }
        return HttpResponse(200, {"content-type": "application/json"}, json.dumps(body).encode())


def token(access_token: str) -> AccessToken:
    return AccessToken(access_token=access_token, token_type="Bearer", expires_in=3600, expires_at=1_800_003_600)


class ScriptedTokens:
    """``ZusAuth``'s token source: hands out ``tokens[0]`` until it is reported refused, then the next."""

    def __init__(self, *tokens: str) -> None:
        self.tokens = list(tokens)
        self.reported: list[str] = []  # fingerprints

    def get_token(self) -> AccessToken:
        return token(self.tokens[0])

    def report_refused(self, access_token: str) -> None:
        self.reported.append(fingerprint(access_token))
        if len(self.tokens) > 1 and self.tokens[0] == access_token:
            self.tokens.pop(0)


@dataclass
class Received:
    method: str
    path: str  # with the query
    headers: dict[str, str] = field(repr=False)  # names lower-case
    body: bytes = field(repr=False)

    @property
    def authorization(self) -> str:
        return self.headers.get("authorization", "")


class RecordingServer:
    """Answers 401 to a bearer token in ``refused`` and 200 to any other, recording every request."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.refused: set[str] = set()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 10  # a request whose body never comes ends its thread

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _answer(self) -> None:
                body = self._body()
                received = Received(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                recorder.received.append(received)
                status = 401 if received.authorization.removeprefix("Bearer ") in recorder.refused else 200
                payload = json.dumps({"ok": status == 200}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                if status == 401:
                    self.send_header("Set-Cookie", "seen=1")
                self.end_headers()
                self.wfile.write(payload)

            def _body(self) -> bytes:
                if "chunked" not in self.headers.get("Transfer-Encoding", ""):
                    return self.rfile.read(int(self.headers.get("Content-Length") or 0))
                chunks = []
                while size := int(self.rfile.readline().split(b";")[0], 16):
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                self.rfile.readline()
                return b"".join(chunks)

            do_GET = do_POST = do_PUT = do_PATCH = _answer

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def __enter__(self) -> RecordingServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class FakeApi:
    """The management routes behind the client's ``Transport`` interface, in memory, with the
    ``PATCH /app-clients/{name} {consumers}`` the service is getting; records every call."""

    def __init__(self, *names: str) -> None:
        self.clients: dict[str, dict[str, object]] = {name: self._record(name) for name in names}
        self.calls: list[tuple[str, str, object]] = []
        self.queries: list[dict[str, str]] = []
        self.script: deque[HttpResponse] = deque()  # answered first, whatever the route

    @staticmethod
    def _record(name: str, consumers: Iterable[str] = ()) -> dict[str, object]:
        return {"name": name, "roleName": "Builder Admin", "createdAt": 1_800_000_000, "consumers": list(consumers)}

    def request(
        self, method: str, path: str, *, query: Mapping[str, str] | None = None, body: object = None
    ) -> HttpResponse:
        self.calls.append((method, path, body))
        self.queries.append(dict(query or {}))
        if self.script:
            return self.script.popleft()
        parts = path.strip("/").split("/")
        if (method, parts) == ("POST", ["app-clients"]):
            assert isinstance(body, dict)
            self.clients[body["name"]] = self._record(body["name"], body.get("consumers", ()))
            return self._json(201, self.clients[body["name"]])
        if (method, parts) == ("GET", ["app-clients"]):  # pages as the service's: limit, an opaque nextToken
            query = dict(query or {})
            limit, start = int(query.get("limit", "50")), int(query.get("nextToken", "p0")[1:])
            records = sorted(self.clients.values(), key=lambda record: str(record["name"]))
            following = f"p{start + limit}" if start + limit < len(records) else None
            return self._json(200, {"appClients": records[start : start + limit], "nextToken": following})
        record = self.clients.get(parts[1]) if len(parts) > 1 else None
        if record is None:
            return problem(404, f"no managed app client named {parts[-1]!r}")
        if method == "GET" and len(parts) == 2:
            return self._json(200, record)
        if method == "DELETE" and len(parts) == 2:
            del self.clients[parts[1]]
            return HttpResponse(204)
        if method == "PATCH" and len(parts) == 2:
            assert isinstance(body, dict)
            record["consumers"] = body["consumers"]
            return self._json(200, record)
        if method == "GET" and parts[2:] == ["token"]:
            return self._json(
                200, {"access_token": "token-1", "token_type": "Bearer", "expires_in": 3600, "expires_at": 1}
            )
        raise AssertionError(f"the fake has no route for {method} {path}")

    @staticmethod
    def _json(status: int, document: object) -> HttpResponse:
        return HttpResponse(status, {"content-type": "application/json"}, json.dumps(document).encode())


class RecordingTransport:
    """A real ``Transport`` with the query of every call recorded (what the service's console cannot show)."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.queries: list[dict[str, str]] = []

    def request(
        self, method: str, path: str, *, query: Mapping[str, str] | None = None, body: object = None
    ) -> HttpResponse:
        self.queries.append(dict(query or {}))
        return self.inner.request(method, path, query=query, body=body)


def console_lines(stack: Any) -> list[str]:
    """The stack's console once every request answered so far has its line: a request sent now is
    answered after them, and its line (written before its answer) follows theirs."""
    sentinel = f"/app-clients/sentinel-{uuid.uuid4().hex[:12]}"
    stack.admin.get(stack.api + sentinel, timeout=10)  # signed: the admin's 404 for a name that does not exist
    wait_until(lambda: any(f" {sentinel}  404" in line for line in stack.lines), "the sentinel's console line")
    return list(stack.lines)


def token_route_calls(stack: Any, name: str) -> int:
    return sum(f"GET    /app-clients/{name}/token  " in line for line in console_lines(stack))


def minted_long_ago(stack: Any, name: str) -> None:
    """The client's cached token, as if Zus had minted it 11 s earlier (its stored lifetime says so): the
    service never replaces a token younger than 10 s on a report (issue 22), and tests wait on no clock."""
    stack.client("dynamodb").update_item(
        TableName="zus-m2m-local",  # the local stack's table, named after the stack
        Key={"pk": {"S": f"client#{name}"}, "sk": {"S": "token"}},
        UpdateExpression="SET tokenLifetime = tokenLifetime + :older",
        ExpressionAttributeValues={":older": {"N": "11"}},
    )
