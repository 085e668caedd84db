"""The threaded HTTP server under the emulator and the local stack's API."""

from __future__ import annotations

import contextlib
import socket
import socketserver
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


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
    """IPv6-aware, no FQDN lookup on bind, cuts its connections on stop; client disconnects are not
    errors worth a line."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 512

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        self.track_connections()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks up the host's FQDN, which can stall; the address is enough.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if error is not None and not isinstance(error, ConnectionError | TimeoutError):
            self.report_connection_error(error)

    def report_connection_error(self, error: BaseException) -> None:
        sys.stderr.write(f"{type(self).__name__}: connection error: {type(error).__name__}\n")
