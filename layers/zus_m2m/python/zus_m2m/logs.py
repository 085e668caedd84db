"""Each function's log lines under its own name: its Powertools Logger, and the shared package's lines
sent through that Logger.

Each function has a Logger of its own service (``zus-m2m-<function>``). The ``zus_m2m`` package's
logger hands every line to the handlers of the function's Logger, so the package's lines carry the
same format and the Lambda context ``inject_lambda_context`` appends, at the Logger's level. On Lambda
a process runs one function; where several are imported into one process (tests), the lines go
through the Logger of the function set up last.
"""

from __future__ import annotations

import logging

from aws_lambda_powertools import Logger

PACKAGE = "zus_m2m"
SERVICE = "zus-m2m"


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


def function_logger(function: str) -> Logger:
    """The Logger of one function (service ``zus-m2m-<function>``), which the package's lines also go
    through."""
    logger = Logger(service=f"{SERVICE}-{function}")
    logger.append_keys(name="%(name)s")  # each line names the module that wrote it
    package = logging.getLogger(PACKAGE)
    package.setLevel(logger.log_level)
    package.propagate = False
    package.handlers = [_ToFunctionLogger(logger)]
    return logger
