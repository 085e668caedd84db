"""The emulator's injected fault (``POST /_emulator/faults``): which one is set, whether a request
meets it (sampled with its rate), and how often each kind fired on each path."""

from __future__ import annotations

import random
import threading
from collections import Counter

from .config import Fault, parse_fault


class FaultSwitch:
    """One fault at a time; thread-safe (its own lock, taken after none other)."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng  # fault sampling, not cryptography
        self._lock = threading.Lock()
        self._fault: Fault | None = None
        self._fired: dict[str, Counter[str]] = {}

    def reset(self) -> None:
        with self._lock:
            self._fault = None
            self._fired = {}

    @property
    def current(self) -> Fault | None:
        with self._lock:
            return self._fault

    def set(self, spec: object) -> Fault | None:
        fault = parse_fault(spec)
        with self._lock:
            self._fault = fault
            return fault

    def pick(self, path: str) -> Fault | None:
        """The fault to apply to a request for ``path`` (sampled with the fault's rate), if any; counted
        by kind and path (``fired()``), so a test can tell that its fault happened."""
        with self._lock:
            fault = self._fault
            if fault is None or not fault.matches(path):
                return None
            if fault.rate < 1.0 and self._rng.random() >= fault.rate:
                return None
            for kind in fault.kinds():
                self._fired.setdefault(kind, Counter())[path] += 1
            return fault

    def fired(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return {kind: dict(paths) for kind, paths in self._fired.items()}
