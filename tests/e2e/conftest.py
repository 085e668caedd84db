"""The e2e suite's fixtures: the local stack (``local_stack_process.start_stack``) for the session, or one
of a test's own."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import pytest
from local_stack_process import StackProcess, start_stack

# The pre-refresh schedule is rate(1 minute): scaled by 60 it fires every second.
SCHEDULE_SCALE = "60"


@pytest.fixture
def stack_factory() -> Iterator[Callable[..., StackProcess]]:
    """``start_stack`` for a test that needs its own stack; whatever it started is stopped after."""
    started: list[StackProcess] = []

    def start(args: Sequence[str] = (), *, wait: bool = True) -> StackProcess:
        started.append(start_stack(args, wait=wait))
        return started[-1]

    yield start
    for running in started:
        if running.process.poll() is None:
            running.terminate(timeout=15)


@pytest.fixture(scope="session")
def stack() -> Iterator[StackProcess]:
    """One local stack for the session's tests, stopped (SIGTERM) at the end."""
    running = start_stack(["--schedule-scale", SCHEDULE_SCALE])
    try:
        yield running
    finally:
        code = running.terminate(timeout=15)
        assert code == 0, running.output
