"""HTTP layer of the Zus emulator: the guide's API paths, ``/oauth/token`` and ``/_emulator/*``."""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import sys
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from types import TracebackType
from typing import Any, ClassVar
from urllib.parse import parse_qsl, unquote_plus, urlencode, urlsplit

from .http_server import LocalHTTPServer
from .state import (
    APP_CLIENT_TYPE,
    BUILDER_USER_TYPE,
    MACHINE_TO_MACHINE,
    ROLE_TYPE,
    ROLES_BY_ID,
    AppClient,
    BearerError,
    EmulatorConfig,
    EmulatorState,
    Fault,
    OAuthError,
    SettingsError,
    TokenRequest,
)

JSON_API = "application/vnd.api+json"
JSON = "application/json"
MAX_BODY = 1024 * 1024
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 100
SENSITIVE_QUERY_WORDS = ("secret", "token", "password", "assertion", "code")
APP_CLIENTS = "/auth/app-clients"

# The OAuth error code a fault answers with on /oauth/* paths.
FAULT_OAUTH_CODES = {
    400: "invalid_request",
    401: "invalid_client",
    403: "access_denied",
    429: "too_many_requests",
    503: "temporarily_unavailable",
}


class ApiError(Exception):
    """A JSON:API error response (one or more error objects)."""

    def __init__(
        self,
        status: int,
        detail: str,
        pointer: str | None = None,
        *,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.errors = errors or [error_object(status, detail, pointer)]
        self.headers = headers or {}


class Dropped(Exception):
    """Close the connection without answering (fault injection)."""


def error_object(status: int, detail: str, pointer: str | None = None) -> dict[str, Any]:
    obj: dict[str, Any] = {"status": str(status), "title": _phrase(status), "detail": detail}
    if pointer is not None:
        obj["source"] = {"pointer": pointer}
    return obj


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _redacted_query(query: str) -> str:
    if not query:
        return ""
    pairs = []
    for key, value in parse_qsl(query, keep_blank_values=True):
        hidden = any(word in key.lower() for word in SENSITIVE_QUERY_WORDS)
        pairs.append((key, "***" if hidden else value))
    return "?" + urlencode(pairs, safe="[]*")


class _HTTPServer(LocalHTTPServer):
    def __init__(self, address: tuple[str, int], state: EmulatorState, quiet: bool) -> None:
        self.state = state
        self.quiet = quiet
        super().__init__(address, _Handler)

    def report_connection_error(self, error: BaseException) -> None:
        sys.stderr.write(f"zus-emulator: connection error: {type(error).__name__}\n")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ZusEmulator/1.0"

    def version_string(self) -> str:
        return self.server_version

    disable_nagle_algorithm = True  # headers and body are separate writes; avoid the 40 ms delayed-ACK stall
    timeout = 120  # idle keep-alive connections are closed after this many seconds
    server: _HTTPServer
    _status: int | str
    _body: bytes
    _query: str

    ROUTE_METHODS: ClassVar[dict[str, tuple[str, ...]]] = {
        "roles": ("GET",),
        "app-clients": ("GET", "POST"),
        "app-client": ("GET", "DELETE"),
        "rotate": ("POST",),
        "token": ("POST",),
        "stats": ("GET",),
        "faults": ("GET", "POST"),
        "config": ("GET", "POST"),
        "reset": ("POST",),
        "health": ("GET",),
    }

    # -- plumbing ----------------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def do_HEAD(self) -> None:
        self._handle()

    def do_OPTIONS(self) -> None:
        self._handle()

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass  # one line per request is written by _handle

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Protocol-level errors of http.server (bad request line, huge headers): JSON, then close."""
        self.close_connection = True
        if self.request_version == "HTTP/0.9":  # an unparsable request line: answer with headers anyway
            self.request_version = "HTTP/1.0"
        body = json.dumps({"errors": [error_object(code, message or _phrase(code))]}).encode()
        try:
            self.send_response(code)
            self.send_header("Content-Type", JSON_API)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD" and code >= 200 and code not in (204, 304):
                self.wfile.write(body)
        except OSError:
            pass

    def _send(
        self,
        status: int,
        payload: Any = None,
        content_type: str = JSON_API,
        headers: dict[str, str] | None = None,
    ) -> None:
        body = b"" if payload is None else json.dumps(payload, separators=(",", ":")).encode()
        self.send_response(status)
        if status != 204:
            if payload is not None:
                self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if body and self.command != "HEAD" and status != 204:
            self.wfile.write(body)
        self._status = status

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        length_header = self.headers.get("Content-Length")
        if not length_header:
            return b""
        try:
            length = int(length_header)
        except ValueError:
            self.close_connection = True
            raise ApiError(400, "Invalid Content-Length header") from None
        if length < 0:
            self.close_connection = True
            raise ApiError(400, "Invalid Content-Length header")
        if length > MAX_BODY:
            self.close_connection = True
            raise ApiError(413, f"Request bodies are limited to {MAX_BODY} bytes")
        return self.rfile.read(length)

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                self.close_connection = True
                raise ApiError(400, "Malformed chunked body") from None
            if size == 0:
                while self.rfile.readline(1024).strip():  # trailers
                    pass
                return b"".join(chunks)
            total += size
            if total > MAX_BODY:
                self.close_connection = True
                raise ApiError(413, f"Request bodies are limited to {MAX_BODY} bytes")
            chunks.append(self.rfile.read(size))
            self.rfile.readline(1024)

    def _handle(self) -> None:
        started = time.monotonic()
        self._status = "-"
        split = urlsplit(self.path)
        path = split.path
        if len(path) > 1 and path.endswith("/"):
            path = path[:-1]
        self._query = split.query
        oauth = path.startswith("/oauth")
        try:
            try:
                self._body = self._read_body()
                fault = self.server.state.pick_fault(path)
                if fault is not None:
                    self._apply_fault(fault, oauth)
                self._route(path)
            except ApiError as exc:
                if oauth:
                    self._send_oauth_error(exc.status, _oauth_code(exc.status), exc.errors[0]["detail"])
                else:
                    self._send(exc.status, {"errors": exc.errors}, headers=exc.headers)
            except OAuthError as exc:
                self._send_oauth_error(exc.status, exc.code, exc.description, exc.retry_after, exc.headers)
        except Dropped:
            self.close_connection = True
            self._status = "dropped"
        except (ConnectionError, TimeoutError):
            self.close_connection = True
            self._status = "disconnected"
        except Exception as exc:
            sys.stderr.write(f"zus-emulator: internal error on {self.command} {path}: {type(exc).__name__}\n")
            self.close_connection = True
            with contextlib.suppress(OSError):
                self._send(500, {"errors": [error_object(500, "Internal emulator error")]})
        if not self.server.quiet:
            ms = (time.monotonic() - started) * 1000
            sys.stderr.write(
                f"{self.client_address[0]} {self.command} {path}{_redacted_query(self._query)}"
                f" {self._status} {ms:.1f}ms\n"
            )

    def _send_oauth_error(
        self,
        status: int,
        code: str,
        description: str,
        retry_after: int | None = None,
        extra_headers: dict[str, str] | None = None,
    ) -> None:
        headers = {"Cache-Control": "no-store", **(extra_headers or {})}
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        self._send(status, {"error": code, "error_description": description}, JSON, headers)

    def _apply_fault(self, fault: Fault, oauth: bool) -> None:
        if fault.latency_ms:
            time.sleep(fault.latency_ms / 1000)
        if fault.drop:
            raise Dropped
        if fault.status is None:
            return
        detail = "Injected fault"
        retry_after = fault.retry_after if fault.status in (429, 503) else None
        if oauth:
            raise OAuthError(fault.status, FAULT_OAUTH_CODES.get(fault.status, "server_error"), detail, retry_after)
        headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
        raise ApiError(fault.status, detail, headers=headers)

    # -- routing -----------------------------------------------------------------------------------

    def _route(self, path: str) -> None:
        parts = path.strip("/").split("/")
        route: str | None = None
        ident = ""
        if path == "/auth/roles":
            route = "roles"
        elif path == APP_CLIENTS:
            route = "app-clients"
        elif len(parts) == 3 and path.startswith(APP_CLIENTS + "/") and parts[2]:
            route, ident = "app-client", parts[2]
        elif len(parts) == 4 and path.startswith(APP_CLIENTS + "/") and parts[3] == "rotate-secret":
            route, ident = "rotate", parts[2]
        elif path == "/oauth/token":
            route = "token"
        elif path.startswith("/_emulator/") and len(parts) == 2:
            route = parts[1] if parts[1] in ("stats", "faults", "config", "reset", "health") else None
        if route is None:
            raise ApiError(404, f"No route for {path}")
        allowed = self.ROUTE_METHODS[route]
        if self.command not in allowed:
            raise ApiError(
                405,
                f"{self.command} is not allowed on {path}",
                headers={"Allow": ", ".join(allowed)},
            )
        method = self.command
        state = self.server.state
        if route == "token":
            self._token()
        elif route == "roles":
            self._authorize(admin=True)
            self._roles()
        elif route == "app-clients" and method == "GET":
            self._authorize(admin=False)
            self._list_clients()
        elif route == "app-clients":
            self._authorize(admin=True)
            self._create_client()
        elif route == "app-client" and method == "GET":
            self._authorize(admin=False)
            client = state.get_app_client(ident)
            if client is None:
                raise ApiError(404, f"App client {ident} not found")
            self._send(200, {"data": client.resource()})
        elif route == "app-client":
            self._authorize(admin=True)
            if not state.delete_app_client(ident):
                raise ApiError(404, f"App client {ident} not found")
            self._send(204)
        elif route == "rotate":
            self._authorize(admin=True)
            rotated = state.rotate_secret(ident)
            if rotated is None:
                raise ApiError(404, f"App client {ident} not found")
            client, secret = rotated
            self._send(200, {"data": client.resource(secret)}, headers={"Cache-Control": "no-store"})
        else:
            self._emulator(route)

    # -- /auth/* -----------------------------------------------------------------------------------

    def _authorize(self, admin: bool) -> AppClient:
        challenge = {"WWW-Authenticate": 'Bearer realm="zus-emulator"'}
        header = self.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if not header:
            raise ApiError(401, "Missing bearer token", headers=challenge)
        if scheme.lower() != "bearer" or not token or " " in token:
            raise ApiError(401, "Malformed Authorization header; expected 'Bearer <token>'", headers=challenge)
        try:
            client = self.server.state.authenticate(token)
        except BearerError as exc:
            raise ApiError(401, exc.detail, headers=challenge) from None
        if admin and not client.is_admin:
            raise ApiError(403, "This operation needs an app client with the Builder Admin role")
        return client

    def _query_params(self) -> dict[str, str]:
        return dict(parse_qsl(self._query, keep_blank_values=True))

    def _roles(self) -> None:
        state = self.server.state
        params = self._query_params()
        name = params.get("filter[name]")
        if name is None:
            self._send(200, {"data": [role.resource() for role in state.roles()]})
            return
        matches = state.roles(name)
        if not matches:
            self._send(200, {"data": []})
        elif state.settings.roles_as_array:
            self._send(200, {"data": [matches[0].resource()]})
        else:
            self._send(200, {"data": matches[0].resource()})

    def _list_clients(self) -> None:
        params = self._query_params()
        size = _page_param(params, "page[size]", DEFAULT_PAGE_SIZE)
        size = min(size, MAX_PAGE_SIZE)
        number = _page_param(params, "page[number]", 1)
        clients = self.server.state.list_app_clients()
        start = (number - 1) * size
        page = clients[start : start + size]
        next_link: str | None = None
        if start + size < len(clients):
            query = [(k, v) for k, v in parse_qsl(self._query, keep_blank_values=True) if k != "page[number]"]
            query.append(("page[number]", str(number + 1)))
            next_link = f"{self._base_url()}{APP_CLIENTS}?{urlencode(query, safe='[]')}"
        self._send(200, {"data": [c.resource() for c in page], "links": {"next": next_link}})

    def _base_url(self) -> str:
        host = self.headers.get("Host")
        if host:
            return f"http://{host}"
        return self.server.state.issuer

    def _json_body(self, oauth: bool = False) -> Any:
        try:
            return json.loads(self._body)
        except (ValueError, UnicodeDecodeError):
            if oauth:
                raise OAuthError(400, "invalid_request", "The request body is not valid JSON") from None
            raise ApiError(400, "The request body is not valid JSON") from None

    def _create_client(self) -> None:
        content_type = self.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
        if content_type not in ("", JSON_API, JSON):
            raise ApiError(415, f"Content-Type must be {JSON_API} or {JSON}")
        document = self._json_body()
        name, role = _validate_create(document)
        client, secret = self.server.state.create_app_client(name, role)
        self._send(201, {"data": client.resource(secret)}, headers={"Cache-Control": "no-store"})

    # -- /oauth/token ------------------------------------------------------------------------------

    def _token(self) -> None:
        content_type = self.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
        if content_type == "" and self._body.lstrip().startswith(b"{"):
            content_type = JSON
        fields: dict[str, Any]
        if content_type == JSON:
            parsed = self._json_body(oauth=True)
            if not isinstance(parsed, dict):
                raise OAuthError(400, "invalid_request", "The request body must be a JSON object")
            fields = parsed
        elif content_type in ("application/x-www-form-urlencoded", ""):
            try:
                text = self._body.decode("utf-8")
            except UnicodeDecodeError:
                raise OAuthError(400, "invalid_request", "The request body is not UTF-8") from None
            fields = dict(parse_qsl(text, keep_blank_values=True))
        else:
            raise OAuthError(400, "invalid_request", "Content-Type must be application/json or x-www-form-urlencoded")
        for key in ("grant_type", "client_id", "client_secret", "audience"):
            if key in fields and not isinstance(fields[key], str):
                raise OAuthError(400, "invalid_request", f"Parameter {key} must be a string")
        client_id = fields.get("client_id")
        client_secret = fields.get("client_secret")
        basic = self._basic_credentials()
        if basic is not None:
            basic_id, basic_secret = basic
            if client_id and client_id != basic_id:
                raise OAuthError(400, "invalid_request", "client_id differs from the Basic credentials")
            if client_secret and client_secret != basic_secret:
                raise OAuthError(400, "invalid_request", "Use only one client authentication method")
            client_id, client_secret = basic_id, basic_secret
        request = TokenRequest(
            grant_type=fields.get("grant_type"),
            client_id=client_id,
            client_secret=client_secret,
            audience=fields.get("audience"),
        )
        try:
            response = self.server.state.issue_token(request)
        except OAuthError as exc:
            if exc.status == 401 and basic is not None:  # RFC 6749 5.2: challenge the scheme that was used
                exc.headers["WWW-Authenticate"] = 'Basic realm="zus-emulator"'
            raise
        self._send(200, response, JSON, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    def _basic_credentials(self) -> tuple[str, str] | None:
        header = self.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            raise OAuthError(401, "invalid_client", "Malformed Basic credentials") from None
        user, sep, password = decoded.partition(":")
        if not sep:
            raise OAuthError(401, "invalid_client", "Malformed Basic credentials")
        return unquote_plus(user), unquote_plus(password)

    # -- /_emulator/* ------------------------------------------------------------------------------

    def _emulator(self, route: str) -> None:
        state = self.server.state
        post = self.command == "POST"
        try:
            if route == "stats":
                self._send(200, state.stats(), JSON)
            elif route == "health":
                self._send(200, {"status": "ok"}, JSON)
            elif route == "reset":
                state.reset()
                self._send(204)
            elif route == "faults":
                fault = state.set_fault(self._json_body()) if post else state.fault
                self._send(200, {} if fault is None else fault.to_json(), JSON)
            elif route == "config":
                settings = state.update_settings(self._json_body()) if post else state.settings
                self._send(200, settings.to_json(), JSON)
        except SettingsError as exc:
            raise ApiError(400, str(exc)) from None


def _oauth_code(status: int) -> str:
    if status == 404 or status == 405:
        return "invalid_request"
    return FAULT_OAUTH_CODES.get(status, "server_error" if status >= 500 else "invalid_request")


def _page_param(params: dict[str, str], key: str, default: int) -> int:
    raw = params.get(key)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ApiError(400, f"{key} must be a positive integer", errors=[_param_error(key)])
    return value


def _param_error(key: str) -> dict[str, Any]:
    return {
        "status": "400",
        "title": _phrase(400),
        "detail": f"{key} must be a positive integer",
        "source": {"parameter": key},
    }


def _validate_create(document: Any) -> tuple[str, str]:
    """Check a create-app-client document (the guide's step 2); returns (name, role id)."""
    errors: list[dict[str, Any]] = []

    def fail(pointer: str, detail: str) -> None:
        errors.append(error_object(422, detail, pointer))

    data = document.get("data") if isinstance(document, dict) else None
    if not isinstance(data, dict):
        fail("/data", "data must be an object")
        raise ApiError(422, "", errors=errors)
    if data.get("type") != APP_CLIENT_TYPE:
        fail("/data/type", f"type must be {APP_CLIENT_TYPE!r}")
    attributes = data.get("attributes")
    name = ""
    if not isinstance(attributes, dict):
        fail("/data/attributes", "attributes must be an object")
    else:
        if attributes.get("type") != MACHINE_TO_MACHINE:
            fail("/data/attributes/type", f"type must be {MACHINE_TO_MACHINE!r}")
        raw_name = attributes.get("name")
        if not isinstance(raw_name, str) or not raw_name.strip():
            fail("/data/attributes/name", "name must be a non-empty string")
        elif len(raw_name) > 256:
            fail("/data/attributes/name", "name must be at most 256 characters")
        else:
            name = raw_name
        if attributes.get("userType") != BUILDER_USER_TYPE:
            fail("/data/attributes/userType", f"userType must be {BUILDER_USER_TYPE!r}")
    role = ""
    relationships = data.get("relationships")
    role_rel = relationships.get(ROLE_TYPE) if isinstance(relationships, dict) else None
    role_data = role_rel.get("data") if isinstance(role_rel, dict) else None
    pointer = "/data/relationships/auth~1roles/data"
    if not isinstance(role_data, dict):
        fail(pointer, "relationships['auth/roles'].data must be an object")
    else:
        if "type" in role_data and role_data["type"] != ROLE_TYPE:
            fail(pointer + "/type", f"type must be {ROLE_TYPE!r}")
        role_id = role_data.get("id")
        if not isinstance(role_id, str) or role_id not in ROLES_BY_ID:
            fail(pointer + "/id", "id must be the id of an existing role")
        else:
            role = role_id
    if errors:
        raise ApiError(422, errors[0]["detail"], errors=errors)
    return name, role


class EmulatorServer:
    """The Zus emulator on a real socket, served from a background thread.

    >>> server = EmulatorServer(port=0).start()   # port 0 picks a free port
    >>> server.url                                # e.g. "http://127.0.0.1:54321"
    >>> server.stop()
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, config: EmulatorConfig | None = None) -> None:
        self.host = host
        self.port = port
        self.config = config or EmulatorConfig()
        self.state = EmulatorState(self.config)
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("the emulator is not started")
        host = self.host if self.host not in ("", "0.0.0.0", "::") else "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    def start(self) -> EmulatorServer:
        """Bind and serve in a daemon thread; raises OSError (e.g. EADDRINUSE) if binding fails."""
        if self._httpd is not None:
            return self
        httpd = _HTTPServer((self.host, self.port), self.state, self.config.quiet)
        self._httpd = httpd
        self.port = httpd.server_address[1]
        self.state.issuer = self.url
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, name="zus-emulator", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close the listening socket and any open connections."""
        httpd, thread = self._httpd, self._thread
        if httpd is None:
            return
        self._httpd = self._thread = None
        httpd.shutdown()
        httpd.server_close()
        httpd.close_open_connections()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


__all__ = ["EmulatorServer"]
