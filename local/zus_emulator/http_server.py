"""What the emulator and the local stack's API share to serve HTTP on this machine: the threaded server,
a request handler base that reads request bodies, and a process's wait for its stop signal."""

from __future__ import annotations

import contextlib
import signal
import socket
import socketserver
import sys
import threading
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any

# The longest chunk-size line read (as http.server reads header lines).
_MAX_LINE = 65537


def local_url(host: str, port: int) -> str:
    """The URL a client on this machine uses for a server bound to ``host:port``."""
    host = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class TracksConnections(socketserver.BaseServer):
    """Remembers the connections a threaded server holds open, so that stopping it can cut the
    keep-alive ones instead of waiting for their clients. Call ``track_connections()`` first."""

    def track_connections(self) -> None:
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_open_connections(self) -> None:
        with self._open_lock:
            open_sockets = list(self._open)
        for sock in open_sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class LocalHTTPServer(TracksConnections, ThreadingHTTPServer):
    """IPv6-aware, no FQDN lookup on bind, serves from a daemon thread and cuts its connections on
    stop; client disconnects are not errors worth a line."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 512

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        self.track_connections()
        self._serving: threading.Thread | None = None
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks up the host's FQDN, which can stall; the address is enough.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def start_serving(self, thread_name: str) -> None:
        """Answer requests (those already in the backlog too) from a daemon thread."""
        if self._serving is None:
            self._serving = threading.Thread(
                target=self.serve_forever, kwargs={"poll_interval": 0.1}, name=thread_name, daemon=True
            )
            self._serving.start()

    def stop_serving(self) -> None:
        """Stop answering, close the listening socket and every open connection."""
        thread, self._serving = self._serving, None
        if thread is not None:
            self.shutdown()
        self.server_close()
        self.close_open_connections()
        if thread is not None:
            thread.join(timeout=5)

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if error is not None and not isinstance(error, ConnectionError | TimeoutError):
            self.report_connection_error(error)

    def report_connection_error(self, error: BaseException) -> None:
        sys.stderr.write(f"{type(self).__name__}: connection error: {type(error).__name__}\n")


class BodyError(ValueError):
    """A request body that cannot be read: its framing is malformed (400) or it is too large (413).
    The connection cannot be reused after it."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class RequestHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive; every method a client may send reaches ``handle_request``, which
    writes its own log line (http.server's are off)."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes; avoid the 40 ms delayed-ACK stall
    timeout = 120  # idle keep-alive connections are closed after this many seconds

    def handle_request(self) -> None:
        raise NotImplementedError

    def _dispatch(self) -> None:
        self.handle_request()

    def __getattr__(self, name: str) -> Any:
        # Every method a client sends (QUERY, TRACE, PROPFIND, FOO, ...) reaches the server's own routing,
        # which answers it as that server does (API Gateway's 404, the emulator's 404 or 405), never
        # http.server's 501 for a method it has no do_ attribute for.
        if name.startswith("do_"):
            return self._dispatch
        raise AttributeError(name)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def read_body(self, limit: int) -> bytes:
        """The request body (``Content-Length`` or chunked), at most ``limit`` bytes; BodyError if it
        cannot be read, with the connection marked to close."""
        try:
            if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                return self._read_chunked(limit)
            return self._read_sized(limit)
        except BodyError:
            self.close_connection = True
            raise

    def _read_sized(self, limit: int) -> bytes:
        raw_length = self.headers.get("Content-Length")
        if not raw_length:
            return b""
        try:
            length = int(raw_length)
        except ValueError:
            raise BodyError(400, "Invalid Content-Length header") from None
        if length < 0:
            raise BodyError(400, "Invalid Content-Length header")
        if length > limit:
            raise BodyError(413, f"Request bodies are limited to {limit} bytes")
        return self.rfile.read(length)

    def _read_chunked(self, limit: int) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(_MAX_LINE)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise BodyError(400, "Malformed chunked body") from None
            if size == 0:
                while self.rfile.readline(_MAX_LINE).strip():  # trailers
                    pass
                return b"".join(chunks)
            total += size
            if total > limit:
                raise BodyError(413, f"Request bodies are limited to {limit} bytes")
            chunks.append(self.rfile.read(size))
            self.rfile.readline(_MAX_LINE)


def stop_requested(
    signals: Sequence[signal.Signals] = (signal.SIGTERM, signal.SIGINT),
    *,
    on_second: Callable[[], None] | None = None,
) -> threading.Event:
    """An event the first of ``signals`` sets; a second one calls ``on_second`` (e.g. to give up a
    stop that takes too long) if given."""
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if stopping.is_set() and on_second is not None:
            on_second()
        stopping.set()

    for number in signals:
        signal.signal(number, on_signal)
    return stopping


def wait_until_stopped(stopping: threading.Event, still_needed: Callable[[], bool] = lambda: True) -> None:
    """Block until ``stopping`` is set or ``still_needed()`` turns false (checked twice a second)."""
    while not stopping.wait(0.5):
        if not still_needed():
            return
