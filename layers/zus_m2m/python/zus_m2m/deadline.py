"""The invocation's deadline, so that no call to Zus outlives the Lambda function's timeout.

The handler entry (``wiring.invocation``) sets it from the Lambda context; the Zus client shortens
its timeouts to fit what is left, and refuses to start a call that could not finish in time (a 503
the caller retries) rather than be cut off by Lambda mid-way. Unset (scripts, tests), there is no
deadline. A context variable keeps it per thread.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_deadline: ContextVar[float | None] = ContextVar("zus_m2m_deadline", default=None)

# Left for the handler to answer after the last call gives up.
SAFETY_SECONDS = 2.0


@contextmanager
def within(seconds: float) -> Iterator[None]:
    """Everything inside must be done within ``seconds`` from now."""
    token = _deadline.set(time.monotonic() + seconds)
    try:
        yield
    finally:
        _deadline.reset(token)


def time_left() -> float:
    """Seconds a call may still take, the safety margin deducted; infinite when no deadline is set."""
    deadline = _deadline.get()
    return math.inf if deadline is None else deadline - time.monotonic() - SAFETY_SECONDS
