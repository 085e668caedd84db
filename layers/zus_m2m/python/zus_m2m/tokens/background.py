"""Token work nobody waits for: refresh-ahead, re-reading a record, bookkeeping writes. It runs in this
container's threads, and a failure is logged, never raised to a caller."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from zus_m2m import errors

logger = logging.getLogger(__name__)

Runner = Callable[[Callable[[], None]], None]


def background_runner(workers: int = 2) -> Runner:
    """Runs refresh-ahead and bookkeeping off the caller's path, in this container's threads."""
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="token-vendor")

    def run(job: Callable[[], None]) -> None:
        pool.submit(job)

    return run


def quietly(job: Callable[[], object]) -> None:
    """Run work nobody waits for: a failure is logged, never raised."""
    try:
        job()
    except errors.ZusM2MError as exc:
        logger.warning("background token work failed", extra={"reason": exc.detail})
    except Exception:
        logger.exception("background token work failed unexpectedly")


class BackgroundWork:
    """Jobs off the caller's path, quietly; a keyed job (a client's refresh) runs once at a time."""

    def __init__(self, run: Runner) -> None:
        self._run = run
        self._running: set[str] = set()
        self._lock = threading.Lock()

    def submit(self, job: Callable[[], object]) -> None:
        self._run(lambda: quietly(job))

    def submit_once(self, key: str, job: Callable[[], object]) -> None:
        with self._lock:
            if key in self._running:
                return
            self._running.add(key)

        def run() -> None:
            try:
                quietly(job)
            finally:
                with self._lock:
                    self._running.discard(key)

        self._run(run)
