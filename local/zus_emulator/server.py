"""HTTP layer of the Zus emulator: reads a request, applies an injected fault, answers it through the
route table (``routes.py``) and writes one log line. Errors on ``/oauth/*`` paths are OAuth error
documents (``{"error", "error_description"}``); on every other path JSON:API error documents."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from types import TracebackType
from urllib.parse import parse_qsl, urlencode, urlsplit

from . import dialects
from .api import JSON, JSON_API, ApiError, Reply, Request, error_object, phrase
from .config import EmulatorConfig, Fault, Settings
from .http_server import BodyError, LocalHTTPServer, RequestHandler, local_url
from .routes import dispatch
from .state import EmulatorState
from .tokens import OAuthError

MAX_BODY = 1024 * 1024
SENSITIVE_QUERY_WORDS = ("secret", "token", "password", "assertion", "code")

# The OAuth error code an error status answers with on /oauth/* paths.
OAUTH_CODES = {
    400: "invalid_request",
    401: "invalid_client",
    403: "access_denied",
    429: "too_many_requests",
    503: "temporarily_unavailable",
}


class Dropped(Exception):
    """Close the connection without answering (fault injection)."""


def _oauth_code(status: int) -> str:
    if status == 404 or status == 405:
        return "invalid_request"
    return OAUTH_CODES.get(status, "server_error" if status >= 500 else "invalid_request")


def _redacted_query(query: str) -> str:
    if not query:
        return ""
    pairs = []
    for key, value in parse_qsl(query, keep_blank_values=True):
        hidden = any(word in key.lower() for word in SENSITIVE_QUERY_WORDS)
        pairs.append((key, "***" if hidden else value))
    return "?" + urlencode(pairs, safe="[]*")


def _fault_error(fault: Fault, oauth: bool, settings: Settings, now: float) -> Exception | None:
    """The error an injected fault answers with, if it answers (after its latency). On ``/oauth/*`` it
    speaks the dialect: a 401 or 429 is worded as a real refusal would be, and an Auth0 429 or global
    limit says when to retry in ``x-ratelimit-reset`` (``retryAfter`` seconds from now)."""
    dialect, limit = settings.dialect, settings.token_limit_per_hour
    if fault.global_limit:
        if not oauth:
            return ApiError(500, dialects.GLOBAL_LIMIT_DESCRIPTION)
        error = dialects.global_limit()
        error.headers.update(dialects.rate_limit_headers(dialect, limit, 0, now + fault.retry_after))
        return error
    if fault.status is None:
        return None
    retry_after = fault.retry_after if fault.status in (429, 503) else None
    if not oauth:
        headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
        return ApiError(fault.status, "Injected fault", headers=headers)
    if fault.status == 401:
        return dialects.bad_credentials(dialect)
    if fault.status == 429:
        error = dialects.throttled(dialect, fault.retry_after, "Injected fault")
        error.headers.update(dialects.rate_limit_headers(dialect, limit, 0, now + fault.retry_after))
        return error
    return OAuthError(fault.status, OAUTH_CODES.get(fault.status, "server_error"), "Injected fault", retry_after)


class _HTTPServer(LocalHTTPServer):
    def __init__(self, address: tuple[str, int], state: EmulatorState, quiet: bool) -> None:
        self.state = state
        self.quiet = quiet
        super().__init__(address, _Handler)

    def report_connection_error(self, error: BaseException) -> None:
        sys.stderr.write(f"zus-emulator: connection error: {type(error).__name__}\n")


class _Handler(RequestHandler):
    server_version = "ZusEmulator/1.0"
    server: _HTTPServer
    _status: int | str

    def version_string(self) -> str:
        return self.server_version

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Protocol-level errors of http.server (bad request line, huge headers): JSON, then close."""
        self.close_connection = True
        if self.request_version == "HTTP/0.9":  # an unparsable request line: answer with headers anyway
            self.request_version = "HTTP/1.0"
        body = json.dumps({"errors": [error_object(code, message or phrase(code))]}).encode()
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

    def handle_request(self) -> None:
        started = time.monotonic()
        self._status = "-"
        split = urlsplit(self.path)
        path = split.path
        if len(path) > 1 and path.endswith("/"):
            path = path[:-1]
        oauth = path.startswith("/oauth")
        try:
            try:
                self._answer(path, split.query, oauth)
            except ApiError as exc:
                if oauth:
                    self._send_oauth_error(OAuthError(exc.status, _oauth_code(exc.status), exc.errors[0]["detail"]))
                else:
                    self._send(Reply(exc.status, {"errors": exc.errors}, headers=exc.headers))
            except OAuthError as exc:
                self._send_oauth_error(exc)
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
                self._send(Reply(500, {"errors": [error_object(500, "Internal emulator error")]}))
        if not self.server.quiet:
            ms = (time.monotonic() - started) * 1000
            sys.stderr.write(
                f"{self.client_address[0]} {self.command} {path}{_redacted_query(split.query)}"
                f" {self._status} {ms:.1f}ms\n"
            )

    def _answer(self, path: str, query: str, oauth: bool) -> None:
        try:
            body = self.read_body(MAX_BODY)
        except BodyError as exc:
            raise ApiError(exc.status, exc.detail) from None
        state = self.server.state
        fault = state.faults.pick(path)
        if fault is not None:
            if fault.latency_ms:
                time.sleep(fault.latency_ms / 1000)
            if fault.drop:
                raise Dropped
            error = _fault_error(fault, oauth, state.settings, state.now())
            if error is not None:
                raise error
        request = Request(method=self.command, path=path, query=query, headers=self.headers, body=body)
        self._send(dispatch(state, request))

    def _send_oauth_error(self, error: OAuthError) -> None:
        headers = {"Cache-Control": "no-store", **error.headers}
        if error.retry_after is not None:
            headers["Retry-After"] = str(error.retry_after)
        self._send(Reply(error.status, {"error": error.code, "error_description": error.description}, JSON, headers))

    def _send(self, reply: Reply) -> None:
        status, payload = reply.status, reply.payload
        body = b"" if payload is None else json.dumps(payload, separators=(",", ":")).encode()
        self.send_response(status)
        if status != 204:
            if payload is not None:
                self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(body)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if body and self.command != "HEAD" and status != 204:
            self.wfile.write(body)
        self._status = status


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

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("the emulator is not started")
        return local_url(self.host, self.port)

    def start(self) -> EmulatorServer:
        """Bind and serve in a daemon thread; raises OSError (e.g. EADDRINUSE) if binding fails."""
        if self._httpd is None:
            self._httpd = _HTTPServer((self.host, self.port), self.state, self.config.quiet)
            self.port = self._httpd.server_address[1]
            self.state.issuer = self.url
            self._httpd.start_serving("zus-emulator")
        return self

    def stop(self) -> None:
        """Stop serving, close the listening socket and any open connections."""
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.stop_serving()

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
