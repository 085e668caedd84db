"""What the e2e tests share (the reliability suite's too): ports for the servers they start, waiting on
observed state, and the guide's token request.

Ports are checked free by binding them. Chosen below Linux's ephemeral
range (32768-60999), where no outgoing connection of this machine can be holding one between the check and
the server's own bind, and in a band of their own for each pytest-xdist worker, so that two workers never
pick the same port; a run without workers takes the band after theirs, unless ``ZUS_PORT_BAND`` names one
(`make test` gives the reliability suite, which runs beside the other parts, a band of its own). A port is
handed out once per process."""

from __future__ import annotations

import os
import random
import socket
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests

_LOWEST = 20_000
_BAND = 1_500  # ports per band: eight bands end at 32000, below the ephemeral range
_WORKER_BANDS = 6  # bands 0-5 for xdist workers; 6 for a run without workers; 7 for ZUS_PORT_BAND=7
_given: set[int] = set()


def free_port() -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "").removeprefix("gw")
    band = int(worker) % _WORKER_BANDS if worker.isdigit() else int(os.environ.get("ZUS_PORT_BAND", _WORKER_BANDS))
    low = _LOWEST + band * _BAND
    for _ in range(500):
        port = random.randrange(low, low + _BAND)
        if port in _given:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _given.add(port)
        return port
    raise RuntimeError(f"no free port between {low} and {low + _BAND}")


def wait_until(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    """What ``condition`` returns once it is true, polled every ``interval`` seconds (never a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


AUDIENCE = "https://api.sandbox.zusapi.com"


def zus_token(zus_url: str, client_id: str, client_secret: str, timeout: float = 5.0) -> requests.Response:
    """The guide's token request (a JSON body), straight to the Zus emulator at ``zus_url``."""
    body = {
        "client_id": client_id,
        "client_secret": client_secret,
        "audience": AUDIENCE,
        "grant_type": "client_credentials",
    }
    return requests.post(f"{zus_url}/oauth/token", json=body, timeout=timeout)
