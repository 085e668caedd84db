"""The servers a benchmark runs against, on free ports of 127.0.0.1: moto (the project's, made to behave as
AWS does) and the Zus emulator, each its own process, stopped when the benchmark ends."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import requests


def bench_environment(moto: str, zus: str, table: str, margin: int, log_level: str) -> dict[str, str]:
    """What template.yaml gives a function, for stage "bench" on moto and the emulator at ``zus``."""
    return {
        "AWS_ENDPOINT_URL": moto,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
        "TABLE_NAME": table,
        "STAGE": "bench",
        "ADMIN_SECRET_NAME": "zus-m2m/bench/zus-m2m-admin",
        "ADMIN_PRINCIPALS": "arn:aws:iam::123456789012:role/platform-admin",
        "ZUS_API_BASE_URL": zus,
        "ZUS_AUTH_BASE_URL": zus,
        "TOKEN_REFRESH_MARGIN_SECONDS": str(margin),
        "POWERTOOLS_SERVICE_NAME": "zus-m2m",
        "POWERTOOLS_METRICS_NAMESPACE": "ZusM2M",
        "POWERTOOLS_LOG_LEVEL": log_level,
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(url: str, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(requests.RequestException):
            requests.get(url, timeout=1)
            return
        time.sleep(0.1)
    raise SystemExit(f"{url} did not come up within {seconds:.0f} s")


@contextlib.contextmanager
def servers() -> Iterator[tuple[str, str]]:
    """(moto's URL, the emulator's URL)."""
    moto_port, zus_port = free_port(), free_port()
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "zus_local.moto_process", "--port", str(moto_port), "--parent", str(os.getpid())],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
        subprocess.Popen(
            [sys.executable, "-m", "zus_emulator", "--port", str(zus_port), "--quiet"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
    ]
    try:
        moto, zus = f"http://127.0.0.1:{moto_port}", f"http://127.0.0.1:{zus_port}"
        wait_for(f"{moto}/moto-api/")
        wait_for(f"{zus}/_emulator/stats")
        yield moto, zus
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:  # moto holding a large table can be slow to stop
                process.kill()
