"""An HTTP proxy between the functions and moto that injects AWS-side faults, per service and operation,
as the Zus emulator's ``/_emulator/faults`` does on Zus's side.

The service is read from the request's SigV4 credential scope (``Credential=KEY/date/region/SERVICE/
aws4_request``); the operation from ``X-Amz-Target`` (DynamoDB, Secrets Manager and SQS all speak a
JSON protocol in the botocore this project pins: ``DynamoDB_20120810.GetItem``,
``secretsmanager.GetSecretValue``, ``AmazonSQS.SendMessage``) or, for a query-protocol request, its
``Action`` parameter. Kinds of fault, each hitting a request with probability ``rate``:

* ``throttle``: 400 ``ThrottlingException`` (DynamoDB, Secrets Manager, SQS);
* ``provisioned``: 400 ``ProvisionedThroughputExceededException`` (DynamoDB; a throttle elsewhere);
* ``500``: the service's internal error (DynamoDB ``InternalServerError``, Secrets Manager
  ``InternalServiceError``, SQS ``InternalFailure``);
* ``latency``: the request waits ``latency_ms`` before it is forwarded (set it beyond the SDK's read
  timeout: the client gives up, and the write may still land, as with AWS);
* ``drop``: the connection is closed without an answer (nothing forwarded);
* ``lost``: the request is forwarded (a write lands) and the connection closed without its answer, as
  when an answer is lost on the way back: the client retries a call that already took effect.

Every fault that fired is counted by service and operation (``fired()``), and every request seen
(``seen()``), so that a test can assert its fault fired and bound the attempts a client made; and the
most requests of a service it had in flight at once (``max_in_flight()``), so that a test can show its
calls overlapped. Only
the functions are pointed at the proxy (``AWS_ENDPOINT_URL``); the stack's own setup, its pollers and
the test suite's reads go to moto directly. The proxy never logs a request or answer body.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import random
import re
import socket
import threading
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["KINDS", "AwsFault", "AwsFaultProxy"]

KINDS = ("throttle", "provisioned", "500", "latency", "drop", "lost")
_SCOPE = re.compile(r"Credential=[^/]+/[^/]+/[^/]+/([^/]+)/aws4_request")
# Hop-by-hop headers: each side of the proxy has its own connection.
_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}
# The JSON protocols' content types and error codes, by service (as the real services answer).
_JSON_TYPE = {"dynamodb": "application/x-amz-json-1.0", "sqs": "application/x-amz-json-1.0"}
_INTERNAL = {"dynamodb": "InternalServerError", "secretsmanager": "InternalServiceError"}


@dataclass(frozen=True)
class AwsFault:
    """One fault: ``kind`` on ``service``'s ``operations`` (all of them if empty) at ``rate``, at most
    ``limit`` times (0: no limit)."""

    service: str
    kind: str
    rate: float = 1.0
    operations: frozenset[str] = field(default_factory=frozenset)
    latency_ms: int = 0
    limit: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}: one of {', '.join(KINDS)}")
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"rate must be within 0..1, not {self.rate}")
        if self.kind == "latency" and self.latency_ms <= 0:
            raise ValueError("a latency fault needs latency_ms > 0")

    def applies(self, service: str, operation: str) -> bool:
        return service == self.service and (not self.operations or operation in self.operations)


def _error(service: str, kind: str) -> tuple[int, str, bytes]:
    """The status, content type and body a service answers for a throttle or an internal error."""
    if kind == "500":
        status, code = 500, _INTERNAL.get(service, "InternalFailure")
        message = "We encountered an internal error. Please try again."
    else:
        status = 400
        code = "ProvisionedThroughputExceededException" if kind == "provisioned" and service == "dynamodb" else ""
        code = code or "ThrottlingException"
        message = "Rate of requests exceeds the allowed throughput."
    if service == "dynamodb":
        code = f"com.amazonaws.dynamodb.v20120810#{code}"
    body = json.dumps({"__type": code, "message": message}).encode()
    return status, _JSON_TYPE.get(service, "application/x-amz-json-1.1"), body


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as botocore's pool expects
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        return  # nothing about requests is printed

    def do_GET(self) -> None:
        self._proxy()

    def do_POST(self) -> None:
        self._proxy()

    def do_PUT(self) -> None:
        self._proxy()

    def do_DELETE(self) -> None:
        self._proxy()

    def _proxy(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        service, operation = self._operation(body)
        with self.server.owner.in_flight(service):
            self._serve(service, operation, body)

    def _serve(self, service: str, operation: str, body: bytes) -> None:
        fault = self.server.owner.decide(service, operation)
        if fault is not None and fault.kind == "drop":
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        if fault is not None and fault.kind == "latency":
            time.sleep(fault.latency_ms / 1000)
        elif fault is not None and fault.kind != "lost":
            self._answer(*_error(service, fault.kind), headers=[])
            return
        try:
            status, headers, answer = self.server.owner.forward(self.command, self.path, self.headers.items(), body)
        except (OSError, http.client.HTTPException):  # moto unreachable (stopped): the client's connection is cut
            self.close_connection = True
            return
        if fault is not None and fault.kind == "lost":
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        content_type = next((value for name, value in headers if name.lower() == "content-type"), "")
        kept = [
            (name, value) for name, value in headers if name.lower() not in (*_HOP, "content-length", "content-type")
        ]
        self._answer(status, content_type, answer, headers=kept)

    def _operation(self, body: bytes) -> tuple[str, str]:
        found = _SCOPE.search(self.headers.get("Authorization", ""))
        service = found.group(1) if found else ""
        target = self.headers.get("X-Amz-Target", "")
        if target:
            return service, target.rsplit(".", 1)[-1]
        query = urllib.parse.urlsplit(self.path).query
        if self.headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded"):
            query = f"{query}&{body.decode('utf-8', 'replace')}"
        action = urllib.parse.parse_qs(query).get("Action", [""])[0]
        return service, action

    def _answer(self, status: int, content_type: str, body: bytes, *, headers: list[tuple[str, str]]) -> None:
        try:
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            if content_type:
                self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:  # the client gave up (its read timeout, during a latency fault)
            self.close_connection = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str, port: int, owner: AwsFaultProxy) -> None:
        self.owner = owner
        self.server_name_host = host
        super().__init__((host, port), _Handler)


class AwsFaultProxy:
    """The proxy in front of ``upstream`` (moto's URL); ``start()`` serves it on a free port."""

    def __init__(self, upstream: str, host: str = "127.0.0.1", port: int = 0, seed: int | None = None) -> None:
        parsed = urllib.parse.urlsplit(upstream)
        self._upstream = (parsed.hostname or "127.0.0.1", parsed.port or 80)
        self._server = _Server(host, port, self)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._requested = threading.Condition(self._lock)
        self._faults: tuple[AwsFault, ...] = ()
        self._fired_by_fault: Counter[int] = Counter()  # by position in ``_faults``, for their limits
        self._fired: Counter[tuple[str, str]] = Counter()
        self._seen: Counter[tuple[str, str]] = Counter()
        self._in_flight: Counter[str] = Counter()
        self._max_in_flight: Counter[str] = Counter()
        self._random = random.Random(seed)
        self._connections = threading.local()

    @property
    def url(self) -> str:
        return f"http://{self._server.server_name_host}:{self._server.server_port}"

    def start(self) -> AwsFaultProxy:
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # --- faults ----------------------------------------------------------------------------------------

    def set_faults(self, *faults: AwsFault) -> None:
        with self._lock:
            self._faults = faults
            self._fired_by_fault.clear()

    def clear_faults(self) -> None:
        self.set_faults()

    @contextlib.contextmanager
    def faulted(self, *faults: AwsFault) -> Any:
        self.set_faults(*faults)
        try:
            yield
        finally:
            self.clear_faults()

    def decide(self, service: str, operation: str) -> AwsFault | None:
        """The fault that hits this request, if any (the first that applies and whose dice say so)."""
        with self._lock:
            self._seen[(service, operation)] += 1
            self._requested.notify_all()
            for index, fault in enumerate(self._faults):
                if fault.limit and self._fired_by_fault[index] >= fault.limit:
                    continue
                if fault.applies(service, operation) and self._random.random() < fault.rate:
                    self._fired[(service, operation)] += 1
                    self._fired_by_fault[index] += 1
                    return fault
        return None

    @contextlib.contextmanager
    def in_flight(self, service: str) -> Any:
        """Counts a request of ``service`` as in flight for the block."""
        with self._lock:
            self._in_flight[service] += 1
            self._max_in_flight[service] = max(self._max_in_flight[service], self._in_flight[service])
        try:
            yield
        finally:
            with self._lock:
                self._in_flight[service] -= 1

    def max_in_flight(self, service: str, *, reset: bool = False) -> int:
        """The most requests of ``service`` in flight at once since the last reset; ``reset`` starts
        counting again (from the requests in flight now)."""
        with self._lock:
            most = self._max_in_flight[service]
            if reset:
                self._max_in_flight[service] = self._in_flight[service]
            return most

    def wait_for_request(self, timeout: float) -> None:
        """Until the proxy sees its next request, or ``timeout`` seconds."""
        with self._requested:
            self._requested.wait(timeout)

    def fired(self, service: str = "", operations: frozenset[str] | set[str] = frozenset()) -> int:
        """Faults fired so far, on ``service`` (every one if empty) and ``operations`` (all if empty)."""
        return self._count(self._fired, service, operations)

    def seen(self, service: str = "", operations: frozenset[str] | set[str] = frozenset()) -> int:
        """Requests seen so far (faulted or not), filtered as ``fired``."""
        return self._count(self._seen, service, operations)

    def _count(self, counter: Counter[tuple[str, str]], service: str, operations: frozenset[str] | set[str]) -> int:
        with self._lock:
            return sum(
                count
                for (svc, operation), count in counter.items()
                if (not service or svc == service) and (not operations or operation in operations)
            )

    # --- forwarding ------------------------------------------------------------------------------------

    def forward(self, method: str, path: str, headers: Any, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        """The request sent to moto on this thread's connection (opened again once if moto cut it)."""
        sent = [(name, value) for name, value in headers if name.lower() not in _HOP]
        try:
            return self._send(self._connection(fresh=False), method, path, sent, body)
        except (http.client.HTTPException, OSError):
            # A kept-alive connection moto closed (idle, or cut by a stop): once more on a new one.
            return self._send(self._connection(fresh=True), method, path, sent, body)

    @staticmethod
    def _send(
        connection: http.client.HTTPConnection, method: str, path: str, headers: list[tuple[str, str]], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        try:
            connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            for name, value in headers:
                connection.putheader(name, value)
            connection.endheaders(body)
            response = connection.getresponse()
            return response.status, response.getheaders(), response.read()
        except BaseException:
            connection.close()
            raise

    def _connection(self, *, fresh: bool) -> http.client.HTTPConnection:
        connection: http.client.HTTPConnection | None = getattr(self._connections, "connection", None)
        if connection is None or fresh:
            if connection is not None:
                connection.close()
            connection = http.client.HTTPConnection(*self._upstream, timeout=60)
            self._connections.connection = connection
        return connection
