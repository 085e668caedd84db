"""Ports for the servers the tests start, each checked free by binding it. Chosen below Linux's ephemeral
range (32768-60999), where no outgoing connection of this machine can be holding one between the check and
the server's own bind, and in a band of their own for each pytest-xdist worker, so that two workers never
pick the same port; a port is handed out once per process."""

from __future__ import annotations

import os
import random
import socket

_LOWEST = 20_000
_BAND = 1_500  # ports per worker: eight bands end at 32000, below the ephemeral range
_BANDS = 8
_given: set[int] = set()


def free_port() -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    low = _LOWEST + (int(worker) % _BANDS if worker.isdigit() else 0) * _BAND
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
