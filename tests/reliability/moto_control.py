"""moto in server mode, in its own process, whose listener the reliability suite can stop and start.

``python tests/reliability/moto_control.py --port P`` serves moto on 127.0.0.1:P and reads commands
on stdin, one per line, answering each with one line on stdout:

* ``stop``: stop accepting (new connections are refused) and cut every open connection, as a moto
  server that went away does; the answer is ``stopped``.
* ``start``: listen on the same port again; the answer is ``started``.

moto keeps its state in this process's memory, so a restart keeps the tables and secrets, as AWS does
through an outage of its endpoints (what a ``moto`` child restarted from scratch would lose is
exactly what AWS never loses). End of input (the suite died) stops the process.

Requests are served one at a time (``zus_local.moto_app``: conditional writes are atomic, as on AWS),
and RotateSecret refuses to start a rotation while another is in progress, as Secrets Manager does
(``guard_rotations``).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import socket
import sys
import threading
from collections.abc import Sequence
from typing import Any

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import ThreadedWSGIServer

try:  # the app every moto of this project serves: one request at a time, so conditional writes are atomic
    from zus_local.moto_app import serialized_moto_app
except ImportError:  # pragma: no cover - an older tree

    def serialized_moto_app() -> Any:
        return DomainDispatcherApplication(create_backend_app)


def guard_rotations() -> None:
    """Secrets Manager refuses RotateSecret while AWSPENDING sits on a version other than AWSCURRENT's
    ("A previous rotation isn't complete"); moto 5.2 checks the opposite case. This moto refuses as AWS
    does, so requests that race to start a rotation meet the guard they meet deployed."""
    from moto.secretsmanager.exceptions import InvalidRequestException
    from moto.secretsmanager.models import SecretsManagerBackend

    original = SecretsManagerBackend.rotate_secret

    def rotate_secret(self: Any, secret_id: str, *args: Any, **kwargs: Any) -> Any:
        if self._is_valid_identifier(secret_id):
            versions = getattr(self.secrets[secret_id], "versions", {})
            if any(
                "AWSPENDING" in version["version_stages"] and "AWSCURRENT" not in version["version_stages"]
                for version in versions.values()
            ):
                raise InvalidRequestException("A previous rotation isn't complete. That rotation will be reattempted.")
        return original(self, secret_id, *args, **kwargs)

    SecretsManagerBackend.rotate_secret = rotate_secret  # type: ignore[method-assign]


class _Server(ThreadedWSGIServer):
    """werkzeug's threaded server, remembering its open connections so that ``stop`` can cut them."""

    daemon_threads = True

    def __init__(self, host: str, port: int, app: Any) -> None:
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(host, port, app, handler=MotoRequestHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def cut_open_connections(self) -> None:
        with self._open_lock:
            sockets = list(self._open)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class Controlled:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.app = serialized_moto_app()
        self.server: _Server | None = None
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        if self.server is not None:
            return
        self.server = _Server(self.host, self.port, self.app)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        server, thread = self.server, self.thread
        self.server = self.thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        server.cut_open_connections()
        if thread is not None:
            thread.join(timeout=5)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    guard_rotations()
    moto = Controlled(args.host, args.port)
    moto.start()
    print("started", flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "stop":
            moto.stop()
            print("stopped", flush=True)
        elif command == "start":
            moto.start()
            print("started", flush=True)
        elif command:
            print(f"unknown command {command!r}", flush=True)
    moto.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
