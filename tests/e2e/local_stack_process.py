"""The local stack (``python -m zus_local``) as a subprocess on free ports, for tests over HTTP: the e2e
suite's fixtures (``conftest.py``) and the reliability suite's stack start it with ``start_stack``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import boto3
import pytest
import requests
from e2e_support import free_port

from zus_local.local_principals import ADMIN_USER, CONSUMER_USER
from zus_local.sigv4 import ExecuteApiAuth

READY_TIMEOUT = 30.0


@dataclass
class StackProcess:
    process: subprocess.Popen[str]
    api_port: int
    moto_port: int
    zus_port: int
    # The AWS shared credentials file the stack wrote its local admin's and consumer's keys to.
    credentials_file: Path
    lines: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    readers: list[threading.Thread] = field(default_factory=list)

    def signer(self, profile: str) -> ExecuteApiAuth:
        return ExecuteApiAuth.from_profile(self.credentials_file, profile)

    def session(self, profile: str = ADMIN_USER) -> requests.Session:
        """Calls to the local API signed as ``profile`` (the local admin unless named)."""
        session = requests.Session()
        session.auth = self.signer(profile)
        return session

    @property
    def admin(self) -> requests.Session:
        return self.session(ADMIN_USER)

    @property
    def consumer(self) -> requests.Session:
        return self.session(CONSUMER_USER)

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def moto(self) -> str:
        return f"http://127.0.0.1:{self.moto_port}"

    @property
    def zus(self) -> str:
        return f"http://127.0.0.1:{self.zus_port}"

    @property
    def ports(self) -> tuple[int, int, int]:
        return (self.api_port, self.moto_port, self.zus_port)

    @property
    def output(self) -> str:
        return "\n".join(self.lines + self.errors)

    def client(self, service: Any) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.moto,
            region_name="us-east-1",
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )

    def drained(self) -> None:
        """Once the process has exited: wait until its last lines are read (an exit code in hand does not
        mean the readers have reached the end of its output)."""
        for reader in self.readers:
            reader.join(timeout=5)

    def terminate(self, timeout: float = 10.0) -> int:
        """SIGTERM, then the exit code (SIGKILL and a failure if it does not exit in time)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=timeout)
            self.drained()
            return code
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)
            pytest.fail(f"the local stack did not exit within {timeout:.0f} s of SIGTERM:\n{self.output}")


def _drain(stream: IO[str], into: list[str]) -> None:
    for line in stream:
        into.append(line.rstrip("\n"))


def start_stack(args: Sequence[str] = (), *, wait: bool = True) -> StackProcess:
    """``python -m zus_local`` on free ports, in its own session, its signers' keys in a temporary
    credentials file; waits for its ready line."""
    ports = (free_port(), free_port(), free_port())
    credentials = Path(tempfile.mkdtemp(prefix="zus-m2m-e2e-")) / "credentials"
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "ZUS_M2M_"))}
    env["PYTHONUNBUFFERED"] = "1"
    command = [
        sys.executable,
        "-m",
        "zus_local",
        "--api-port",
        str(ports[0]),
        "--moto-port",
        str(ports[1]),
        "--zus-port",
        str(ports[2]),
        "--credentials-file",
        str(credentials),
        *args,
    ]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
        start_new_session=True,
    )
    stack = StackProcess(process, *ports, credentials_file=credentials)
    for stream, into in ((process.stdout, stack.lines), (process.stderr, stack.errors)):
        stack.readers.append(threading.Thread(target=_drain, args=(stream, into), daemon=True))
        stack.readers[-1].start()
    if wait:
        deadline = time.monotonic() + READY_TIMEOUT
        while not any(line.startswith("ready in ") for line in stack.lines):
            if process.poll() is not None:
                stack.drained()
                pytest.fail(f"the local stack exited with {process.returncode} before it was ready:\n{stack.output}")
            if time.monotonic() > deadline:
                stack.terminate()
                pytest.fail(f"the local stack was not ready within {READY_TIMEOUT:.0f} s:\n{stack.output}")
            time.sleep(0.05)
    return stack
