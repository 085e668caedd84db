"""moto in server mode, in its own process, whose listener the reliability suite can stop and start.

``python tests/reliability/moto_control.py --port P`` serves moto on 127.0.0.1:P and reads commands
on stdin, one per line, answering each with one line on stdout:

* ``stop``: stop accepting (new connections are refused) and cut every open connection, as a moto
  server that went away does; the answer is ``stopped``.
* ``start``: listen on the same port again; the answer is ``started``.

moto keeps its state in this process's memory, so a restart keeps the tables and secrets, as AWS does
through an outage of its endpoints (what a ``moto`` child restarted from scratch would lose is
exactly what AWS never loses). End of input (the suite died) stops the process.

It is the project's moto (``zus_local.moto_app``): one request per service at a time, and Secrets
Manager's rotation bookkeeping as the real service has it.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from collections.abc import Sequence

from zus_local.moto_app import MotoServer, make_moto_server, moto_wsgi_app


class Controlled:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.app = moto_wsgi_app()
        self.server: MotoServer | None = None
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        if self.server is not None:
            return
        self.server = make_moto_server(self.host, self.port, self.app)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        server, thread = self.server, self.thread
        self.server = self.thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        server.close_open_connections()
        if thread is not None:
            thread.join(timeout=5)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
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
