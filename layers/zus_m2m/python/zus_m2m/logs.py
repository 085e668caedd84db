"""Each function's log lines under its own name: its Powertools Logger, and the shared package's lines
sent through that Logger; and an API call's one line, its audit event with its metrics.

Each function has a Logger of its own service (``zus-m2m-<function>``). The ``zus_m2m`` package's
logger hands every line to the handlers of the function's Logger, so the package's lines carry the
same format and the Lambda context ``inject_lambda_context`` appends, at the Logger's level. On Lambda
a process runs one function; where several are imported into one process (tests), the lines go
through the Logger of the function set up last.

An API call's audit line (``zus_m2m.audit``, at the same level) is the call's one line: its event
and Lambda's request id, in the EMF document of the metrics the call recorded, without the rest of
Powertools' line (the location, the timestamp, the function's name, ARN and memory). Written apart,
the two lines cost a memory-tier vend half its time and a write each (on Lambda every write is
flushed), and Powertools' keys were 40 % of the audit line's bytes (docs/design.md, "One line per
call").
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics.functions import is_metrics_disabled

PACKAGE = "zus_m2m"
AUDIT = "zus_m2m.audit"
SERVICE = "zus-m2m"
# The call line's encoder, made once: ``json.dumps`` with options makes one per call.
_LINE = json.JSONEncoder(separators=(",", ":"), default=str)


class _ToFunctionLogger(logging.Handler):
    """The package logger's one handler: each record to the handlers of the function's Logger."""

    def __init__(self, logger: Logger) -> None:
        super().__init__()
        self.logger = logger

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno < self.logger.log_level:
            return
        for handler in self.logger.handlers:
            handler.handle(record)


class _CallLine(logging.StreamHandler):  # type: ignore[type-arg]
    """The audit record of an API call (``extra={"audit": event}``) as the call's one JSON line, written
    with one write: the level and message as Powertools writes them, Lambda's request id while an
    invocation runs (the Logger's ``inject_lambda_context`` key), the event under ``audit``, and the
    metrics the call recorded so far as their EMF document (``wiring.invocation`` publishes any recorded
    after it, on a line of their own)."""

    def __init__(self, logger: Logger, metrics: Metrics) -> None:
        super().__init__(sys.stdout)
        self.logger = logger
        self.metrics = metrics
        # Read once, as the function's environment is (Powertools reads it on every flush).
        self.publish = not is_metrics_disabled()

    def emit(self, record: logging.LogRecord) -> None:
        line: dict[str, Any] = {}
        if self.metrics.metric_set and self.publish:
            line = dict(self.metrics.serialize_metric_set())
            self.metrics.clear_metrics()
        line["level"] = record.levelname
        line["message"] = record.getMessage()
        line["function_request_id"] = self.logger.get_current_keys().get("function_request_id")
        line["audit"] = getattr(record, "audit", None)
        self.stream.write(_LINE.encode(line) + self.terminator)
        self.flush()


def function_logger(function: str, metrics: Metrics) -> Logger:
    """The Logger of one function (service ``zus-m2m-<function>``), which the package's lines also go
    through, but for the audit lines: each one is its call's line, with the call's ``metrics``."""
    logger = Logger(service=f"{SERVICE}-{function}")
    # No line shows a record's thread or process: each record skips looking them up (logging's own
    # switches; a Lambda process runs one function).
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    logger.append_keys(name="%(name)s")  # each line names the module that wrote it
    package = logging.getLogger(PACKAGE)
    package.setLevel(logger.log_level)
    package.propagate = False
    package.handlers = [_ToFunctionLogger(logger)]
    audit = logging.getLogger(AUDIT)
    audit.setLevel(logger.log_level)
    audit.propagate = False
    audit.handlers = [_CallLine(logger, metrics)]
    return logger
