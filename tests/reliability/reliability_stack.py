"""The local stack the reliability suite runs: the e2e suite's launcher (``tests/e2e/local_stack_process.py``)
pointed at a moto whose port the suite can close and open again (``moto_control.py``), with the
handlers at DEBUG and every line they print kept."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import requests
from e2e_support import free_port
from local_stack_process import StackProcess, start_stack
from reliability_support import profile

HERE = Path(__file__).resolve().parent


# Lambda would run one container per concurrent request; the local stack caps containers per function.
CONCURRENCY = profile(8, 16)


class MotoControl:
    """moto in its own process (state kept in memory); ``stop()``/``start()`` cut and restore its port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            [sys.executable, str(HERE / "moto_control.py"), "--port", str(self.port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._expect("started")
        deadline = time.monotonic() + 20
        while True:
            try:
                requests.get(f"{self.url}/moto-api/data.json", timeout=2).raise_for_status()
                break
            except requests.RequestException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _expect(self, answer: str) -> None:
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        assert line == answer, f"moto_control answered {line!r}, expected {answer!r}"

    def _command(self, command: str, answer: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        self._expect(answer)

    def stop(self) -> None:
        self._command("stop", "stopped")

    def start(self) -> None:
        self._command("start", "started")

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)


def start_reliability_stack(moto: MotoControl, *extra: str, functions_endpoint: str = "") -> StackProcess:
    """The stack on ``moto``; ``functions_endpoint`` (an ``AwsFaultProxy``'s URL) is where the functions
    send their AWS calls instead (the stack's own setup, pollers and rotation player still call moto)."""
    proxied = ["--env", f"AWS_ENDPOINT_URL={functions_endpoint}"] if functions_endpoint else []
    args = [
        "--aws-endpoint",
        moto.url,
        "--concurrency",
        str(CONCURRENCY),
        # --verbose: the handlers' logs and EMF metrics documents and the emulator's request lines too
        "--verbose",
        "--env",
        "POWERTOOLS_LOG_LEVEL=DEBUG",
        # The suite rotates one client several times in a row on purpose (test_concurrency.py).
        "--param",
        "RotationRequestMinGapSeconds=0",
        *proxied,
        *extra,
    ]
    return start_stack(args)
