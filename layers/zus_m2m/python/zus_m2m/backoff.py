"""The pauses between polls of a shared state (a claim, a lease) or retries of a check: doubling
from ``first`` up to ``cap``, for as long as the caller's own deadline allows."""

from __future__ import annotations

from collections.abc import Iterator


def backoff(first: float, cap: float) -> Iterator[float]:
    pause = first
    while True:
        yield pause
        pause = min(cap, pause * 2)
