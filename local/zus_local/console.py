"""The local stack's output: one timestamped line per event, and the functions' own output.

Handlers print to stdout as on Lambda: Powertools' JSON log lines and an invocation's EMF metrics
document (an API call's carries its audit event, at INFO). Locally the metrics documents would drown
the one-line-per-request log, so the runtime (``lambda_runtime``) relays its environments' lines here
without them unless ``--verbose`` (``is_metrics_document``). Nothing here ever formats a request body,
a secret or a token.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO


class Console:
    """Thread-safe line output to the terminal the stack was started from."""

    def __init__(self, out: TextIO | None = None, err: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.lock = threading.Lock()

    def raw(self, text: str, *, error: bool = False) -> None:
        stream = self.err if error else self.out
        with self.lock:
            try:
                stream.write(text if text.endswith("\n") else text + "\n")
                stream.flush()
            except (OSError, ValueError):  # a closed terminal or pipe: nothing to report to
                pass

    def line(self, text: str) -> None:
        """One event, prefixed with the wall-clock time."""
        self.raw(f"{time.strftime('%H:%M:%S')}  {text}")

    def error(self, text: str) -> None:
        self.raw(text, error=True)


def is_metrics_document(line: str) -> bool:
    """A CloudWatch embedded-metric-format document, as Powertools Metrics prints one per invocation."""
    return line.startswith('{"_aws":')
