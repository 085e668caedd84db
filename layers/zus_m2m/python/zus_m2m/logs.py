"""Each function's log lines under its own name: its Powertools Logger, and the shared package's lines
sent through the Logger of the function invocation that wrote them.

Powertools Loggers of one service share one standard logger, and with it one formatter and its keys:
the Lambda context that ``inject_lambda_context`` appends is the last invocation's of any function in
the process. And ``copy_config_to_registered_loggers`` hands the ``zus_m2m`` package's logger the
handler of whichever function configured it last. On Lambda a process runs one function, so neither
shows; the local stack runs every function in one process, where a scheduled job's lines came out
under the name of a function serving a request at the same time. So each function has a Logger of its
own service (``zus-m2m-<function>``), and the package's logger hands each line to the Logger of the
invocation running in its thread (``invocation_logger``, which ``wiring.invocation`` enters), or, in a
thread outside any invocation (a vendor's background refresh), of the function set up last.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from aws_lambda_powertools import Logger

PACKAGE = "zus_m2m"
SERVICE = "zus-m2m"

_invocation: ContextVar[Logger | None] = ContextVar("zus_m2m_invocation_logger", default=None)
_lock = threading.Lock()
_latest: list[Logger] = []  # the Logger of the function set up last (one at most)


class _ToInvocationLogger(logging.Handler):
    """The package logger's one handler: each record to the handlers of the invocation's Logger."""

    def emit(self, record: logging.LogRecord) -> None:
        logger = _invocation.get()
        if logger is None:
            with _lock:
                logger = _latest[-1] if _latest else None
        if logger is None or record.levelno < logger.log_level:
            return
        for handler in logger.handlers:
            handler.handle(record)


def function_logger(function: str) -> Logger:
    """The Logger of one function (service ``zus-m2m-<function>``), which the package's lines also go
    through while it serves an invocation."""
    logger = Logger(service=f"{SERVICE}-{function}")
    logger.append_keys(name="%(name)s")  # each line names the module that wrote it
    package = logging.getLogger(PACKAGE)
    with _lock:
        _latest[:] = [logger]
        # As low as any function's level; each line is then held to its invocation's Logger's level.
        package.setLevel(min(logger.log_level, package.level or logger.log_level))
        package.propagate = False
        if not any(isinstance(handler, _ToInvocationLogger) for handler in package.handlers):
            package.handlers = [_ToInvocationLogger()]
    return logger


@contextmanager
def invocation_logger(logger: Logger) -> Iterator[None]:
    """The package's lines written in this thread (and context) meanwhile go through ``logger``."""
    token = _invocation.set(logger)
    try:
        yield
    finally:
        _invocation.reset(token)
