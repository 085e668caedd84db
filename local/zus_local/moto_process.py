"""moto in server mode as a child process of the local stack (its own interpreter: the handlers' GIL
stays free), and the child's entry point: ``python -m zus_local.moto_process --host H --port P``.

The child ignores Ctrl-C (the terminal sends it to the whole process group; the stack decides when
moto stops and sends SIGTERM), stops cleanly on SIGTERM, and exits by itself if the stack dies, so no
moto is ever left behind. Request logging is off.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

import requests

from zus_emulator.http_server import local_url, stop_requested, wait_until_stopped


class MotoProcess:
    """The parent's handle on the child."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return local_url(self.host, self.port)

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self) -> MotoProcess:
        command = [
            sys.executable,
            "-m",
            "zus_local.moto_process",
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--parent",
            str(os.getpid()),
        ]
        self._process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        return self

    def wait_ready(self, timeout: float = 20.0) -> None:
        """Until moto answers; RuntimeError if the child died or the time ran out."""
        deadline = time.monotonic() + timeout
        session = requests.Session()
        try:
            while time.monotonic() < deadline:
                if self._process is not None and self._process.poll() is not None:
                    raise RuntimeError(f"moto server exited during startup (code {self._process.returncode})")
                with contextlib.suppress(requests.RequestException):
                    session.get(f"{self.url}/moto-api/data.json", timeout=1).raise_for_status()
                    return
                time.sleep(0.05)
        finally:
            session.close()
        raise RuntimeError(f"moto server did not answer on {self.url} within {timeout:.0f} s")

    def stop(self, timeout: float = 5.0) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)


# --- the child ------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zus_local.moto_process")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--parent", type=int, default=0, help="exit when this process is gone")
    args = parser.parse_args(argv)

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stopping = stop_requested((signal.SIGTERM,))
    logging.getLogger("werkzeug").setLevel(logging.ERROR)

    from zus_local.moto_app import make_moto_server

    try:
        server = make_moto_server(args.host, args.port)
    except OSError as exc:
        print(f"moto: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    wait_until_stopped(stopping, lambda: not args.parent or os.getppid() == args.parent)
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
