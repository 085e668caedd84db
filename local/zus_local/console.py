"""The local stack's output: one timestamped line per event, and the handlers' own stdout, filtered.

Handlers print to stdout as on Lambda: Powertools' JSON log lines and, after every invocation, an
EMF metrics document. Locally the metrics documents would drown the one-line-per-request log, so
``FilteredStdout`` (installed as ``sys.stdout`` while the stack runs) drops them and passes every
other line through. Nothing here ever formats a request body, a secret or a token.
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


class FilteredStdout:
    """A ``sys.stdout`` stand-in: whole lines from any thread, minus EMF metrics documents (unless
    ``keep_metrics``), written through the console so they never interleave with its lines."""

    def __init__(self, console: Console, *, keep_metrics: bool = False) -> None:
        self._console = console
        self._keep_metrics = keep_metrics
        self._pending = threading.local()

    def write(self, text: str) -> int:
        buffered: str = getattr(self._pending, "text", "") + text
        *lines, rest = buffered.split("\n")
        self._pending.text = rest
        for line in lines:
            if self._keep_metrics or not is_metrics_document(line):
                self._console.raw(line)
        return len(text)

    def flush(self) -> None:
        with self._console.lock:
            self._console.out.flush()

    def isatty(self) -> bool:
        return self._console.out.isatty()

    def fileno(self) -> int:
        return self._console.out.fileno()

    @property
    def encoding(self) -> str:
        return getattr(self._console.out, "encoding", "utf-8")

    def writable(self) -> bool:
        return True
