"""The local API: template.yaml's HTTP API routes served on a socket, each request handed to its real
handler as an API Gateway HTTP API (payload format 2.0) event, and the handler's answer sent back.

What API Gateway does around a Lambda proxy integration is played here: route selection (most
specific route wins, unmatched requests get 404), the event (lower-cased headers, decoded query and
path parameters, cookies, the request context with an IAM authorizer stub, base64 for binary bodies),
and the response mapping (status, headers, cookies, base64 bodies; a bare return value becomes a 200
JSON body). A handler that raises answers 500 with a problem document and no trace; the trace goes to
the stack's stderr. One line per request: method, path, status, latency. Never a body or a header.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import traceback
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import Message
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from zus_emulator.http_server import LocalHTTPServer
from zus_local.console import Console
from zus_local.lambda_runtime import LambdaRuntime
from zus_local.template_model import Route, TemplateModel

PROBLEM_JSON = "application/problem+json"
# Content types API Gateway passes as text; anything else arrives base64-encoded.
_TEXT_TYPES = ("text/", "application/json", "application/xml", "application/x-www-form-urlencoded", "+json", "+xml")
# A body the local API reads at most (API Gateway's payload limit is 10 MB).
MAX_BODY_BYTES = 10 * 1024 * 1024

LOCAL_API_ID = "local"
CALLER = {
    "accessKey": "ASIALOCALSTACKKEY000",
    "callerId": "AROALOCALSTACKROLE00:local-developer",
    "principalOrgId": None,
    "userId": "AROALOCALSTACKROLE00:local-developer",
}


@dataclass(frozen=True)
class HttpRequest:
    method: str
    target: str  # path and query, as sent
    headers: list[tuple[str, str]]
    body: bytes
    source_ip: str
    protocol: str = "HTTP/1.1"


def _is_text(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return any(media.startswith(kind) if kind.endswith("/") else kind in media for kind in _TEXT_TYPES)


def build_event(
    request: HttpRequest,
    route: Route,
    path_parameters: Mapping[str, str],
    *,
    account_id: str = "123456789012",
    request_id: str | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """The HTTP API payload 2.0 event API Gateway would send for ``request`` on ``route``."""
    now = time.time() if now is None else now
    split = urlsplit(request.target)
    raw_path = split.path or "/"
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in request.headers:
        key = name.lower()
        if key == "cookie":
            cookies.extend(part.strip() for part in value.split(";") if part.strip())
            continue
        headers[key] = f"{headers[key]},{value}" if key in headers else value
    host = headers.get("host", "localhost")
    headers.setdefault("x-forwarded-for", request.source_ip)
    headers.setdefault("x-forwarded-proto", "http")
    port = host.rsplit(":", 1)[1] if ":" in host and not host.endswith("]") else "80"
    headers.setdefault("x-forwarded-port", port)
    query: dict[str, str] = {}
    for key, value in parse_qsl(split.query, keep_blank_values=True):
        query[key] = f"{query[key]},{value}" if key in query else value
    request_id = request_id or str(uuid.uuid4())
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route.route_key,
        "rawPath": raw_path,
        "rawQueryString": split.query,
        "headers": headers,
        "requestContext": {
            "accountId": account_id,
            "apiId": LOCAL_API_ID,
            "authorizer": {
                "iam": {
                    **CALLER,
                    "accountId": account_id,
                    "userArn": f"arn:aws:sts::{account_id}:assumed-role/local-developer/local-developer",
                }
            },
            "domainName": host.split(":", 1)[0] if not host.startswith("[") else host,
            "domainPrefix": host.split(".", 1)[0].split(":", 1)[0],
            "http": {
                "method": request.method,
                "path": raw_path,
                "protocol": request.protocol,
                "sourceIp": request.source_ip,
                "userAgent": headers.get("user-agent", ""),
            },
            "requestId": request_id,
            "routeKey": route.route_key,
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": False,
    }
    if cookies:
        event["cookies"] = cookies
    if query:
        event["queryStringParameters"] = query
    if path_parameters:
        event["pathParameters"] = {name: unquote(value) for name, value in path_parameters.items()}
    if request.body:
        if _is_text(headers.get("content-type", "")):
            try:
                event["body"] = request.body.decode("utf-8")
            except UnicodeDecodeError:
                event["body"] = base64.b64encode(request.body).decode()
                event["isBase64Encoded"] = True
        else:
            event["body"] = base64.b64encode(request.body).decode()
            event["isBase64Encoded"] = True
    return event


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


class InvalidFunctionResponse(ValueError):
    """The handler answered something API Gateway would refuse (it answers 500 then)."""


def map_response(result: Any) -> HttpResponse:
    """A handler's return value as API Gateway (payload 2.0) turns it into an HTTP response."""
    if not isinstance(result, dict) or "statusCode" not in result:
        # "If your Lambda function doesn't return valid JSON with a statusCode, API Gateway assumes 200
        # and treats the whole return value as a JSON body."
        text = result if isinstance(result, str) else json.dumps(result)
        return HttpResponse(200, [("Content-Type", "application/json")], text.encode())
    status = result["statusCode"]
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        raise InvalidFunctionResponse(f"statusCode must be an HTTP status, got {status!r}")
    headers: list[tuple[str, str]] = []
    for name, value in (result.get("headers") or {}).items():
        headers.append((str(name), str(value)))
    for name, values in (result.get("multiValueHeaders") or {}).items():
        headers.extend((str(name), str(value)) for value in values)
    headers.extend(("Set-Cookie", str(cookie)) for cookie in result.get("cookies") or [])
    raw = result.get("body")
    body: bytes
    if raw is None:
        body = b""
    elif not isinstance(raw, str):
        raise InvalidFunctionResponse(f"body must be a string, got {type(raw).__name__}")
    elif result.get("isBase64Encoded"):
        try:
            body = base64.b64decode(raw, validate=True)
        except ValueError as exc:
            raise InvalidFunctionResponse("isBase64Encoded is set but the body is not base64") from exc
    else:
        body = raw.encode()
    return HttpResponse(status, headers, body)


def problem(status: int, title: str, detail: str, kind: str) -> HttpResponse:
    body = {"type": f"urn:zus-m2m:problem:{kind}", "title": title, "status": status, "detail": detail}
    headers = [("Content-Type", PROBLEM_JSON), ("Cache-Control", "no-store")]
    return HttpResponse(status, headers, json.dumps(body).encode())


class LocalApi:
    """Routes from the model, handlers from the runtime, on ``host:port``.

    ``bind()`` takes the port at once (requests wait in the backlog until ``serve()``), so a busy port
    is found before anything else starts; ``stop()`` closes the socket and every open connection.
    """

    def __init__(self, console: Console, host: str = "127.0.0.1", port: int = 3000) -> None:
        self.console = console
        self.host = host
        self.port = port
        self.model: TemplateModel | None = None
        self.runtime: LambdaRuntime | None = None
        self.account_id = "123456789012"
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("", "0.0.0.0", "::") else self.host
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    def bind(self) -> LocalApi:
        """Listen on the port (OSError, e.g. EADDRINUSE, if it is taken)."""
        if self._server is None:
            self._server = _Server((self.host, self.port), self)
            self.port = int(self._server.server_address[1])
        return self

    def serve(self, model: TemplateModel, runtime: LambdaRuntime, *, account_id: str = "123456789012") -> LocalApi:
        """Answer requests (those already waiting too) with ``model``'s routes and ``runtime``'s handlers."""
        self.model, self.runtime, self.account_id = model, runtime, account_id
        server = self.bind()._server
        assert server is not None
        if self._thread is None:
            self._thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="local-api", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        if thread is not None:
            server.shutdown()
        server.server_close()
        server.close_open_connections()
        if thread is not None:
            thread.join(timeout=5)

    # --- one request ---------------------------------------------------------------------------------

    def handle(self, request: HttpRequest) -> HttpResponse:
        """Route, invoke, map; logs one line. Never raises."""
        started = time.perf_counter()
        path = urlsplit(request.target).path or "/"
        request_id = str(uuid.uuid4())
        response = self._answer(request, path, request_id)
        elapsed = (time.perf_counter() - started) * 1000
        response = HttpResponse(response.status, [*response.headers, ("Apigw-Requestid", request_id)], response.body)
        self.console.line(f"{request.method:<6} {path}  {response.status}  {elapsed:.0f} ms")
        return response

    def _answer(self, request: HttpRequest, path: str, request_id: str) -> HttpResponse:
        assert self.model is not None
        assert self.runtime is not None
        matched = self.model.match(request.method, path)
        if matched is None:
            return problem(404, "Not Found", f"no route for {request.method} {path}", "no-route")
        route, parameters = matched
        event = build_event(request, route, parameters, account_id=self.account_id, request_id=request_id)
        try:
            invocation = self.runtime.invoke(route.function, event, request_id=request_id)
        except Exception as exc:
            trace = "".join(traceback.format_exception(exc))
            self.console.error(f"{route.function} failed on {route.route_key} (request {request_id}):\n{trace}")
            return problem(
                500, "Internal Server Error", "the function failed; see the local stack's output", "internal-error"
            )
        if invocation.timed_out:
            spec = self.model.functions[route.function]
            self.console.error(
                f"{route.function} ran {invocation.duration_ms / 1000:.1f} s, past its {spec.timeout_seconds:.0f} s "
                "timeout: Lambda would have stopped it"
            )
        try:
            return map_response(invocation.result)
        except InvalidFunctionResponse as exc:
            self.console.error(f"{route.function} answered {route.route_key} with an invalid response: {exc}")
            return problem(500, "Internal Server Error", "the function returned an invalid response", "internal-error")


class _Server(LocalHTTPServer):
    def __init__(self, address: tuple[str, int], api: LocalApi) -> None:
        self.api = api
        super().__init__(address, _Handler)

    def report_connection_error(self, error: BaseException) -> None:
        self.api.console.error(f"local API: connection error: {type(error).__name__}")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "zus-m2m-local-api"
    sys_version = ""
    disable_nagle_algorithm = True
    timeout = 120
    server: _Server

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def do_HEAD(self) -> None:
        self._handle()

    def do_OPTIONS(self) -> None:
        self._handle()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # LocalApi.handle writes one line per request

    def _handle(self) -> None:
        try:
            body = self._read_body()
        except ValueError as exc:
            self._send(problem(400, "Bad Request", str(exc), "bad-request"), close=True)
            return
        request = HttpRequest(
            method=self.command,
            target=self.path,
            headers=list(self.headers.items()),
            body=body,
            source_ip=str(self.client_address[0]),
            protocol=self.request_version,
        )
        self._send(self.server.api.handle(request))

    def _read_body(self) -> bytes:
        headers: Message = self.headers
        if "chunked" in (headers.get("Transfer-Encoding") or "").lower():
            chunks: list[bytes] = []
            size = 0
            while True:
                line = self.rfile.readline(65537)
                length = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if length == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                size += length
                if size > MAX_BODY_BYTES:
                    raise ValueError("the request body is larger than 10 MB")
                chunks.append(self.rfile.read(length))
                self.rfile.readline(65537)
        raw_length = headers.get("Content-Length")
        if not raw_length:
            return b""
        try:
            length = int(raw_length)
        except ValueError:
            raise ValueError("Content-Length is not a number") from None
        if length < 0 or length > MAX_BODY_BYTES:
            raise ValueError("the request body is larger than 10 MB")
        return self.rfile.read(length)

    def _send(self, response: HttpResponse, *, close: bool = False) -> None:
        if close:
            self.close_connection = True
        try:
            self.send_response(response.status)
            names = {name.lower() for name, _ in response.headers}
            for name, value in response.headers:
                if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                    self.send_header(name, value)
            if "content-type" not in names and response.body:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(response.body)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if response.body and self.command != "HEAD":
                self.wfile.write(response.body)
        except OSError:
            self.close_connection = True
