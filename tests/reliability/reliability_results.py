"""The results table: one row per scenario, printed at the end of the session."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from reliability_calls import Answer


@dataclass
class Row:
    """One scenario's line. ``data_lost`` comes from the system check after each test that wrote the row
    (``integrity_checked``: how many such checks ran; a row never checked shows "unchecked");
    ``faults_fired``: how many requests the scenario's injected fault hit (None: not a fault scenario)."""

    scenario: str
    requests: int = 0
    successes: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    violations: int = 0
    data_lost: int = 0
    integrity_checked: int = 0
    faults_fired: int | None = None
    slowest: float = 0.0

    def add(self, answers: Iterable[Answer], *, bad: int = 0) -> None:
        for answer in answers:
            self.requests += 1
            if 200 <= answer.status < 300:
                self.successes += 1
            else:
                self.errors[answer.kind] += 1
            self.slowest = max(self.slowest, answer.latency)
        self.violations += bad

    def fired(self, count: int) -> None:
        self.faults_fired = (self.faults_fired or 0) + count


class Results:
    def __init__(self) -> None:
        self.rows: dict[str, Row] = {}
        self.touched: set[str] = set()  # the rows written since ``begin``: the running test's
        self.notes: list[str] = []  # lines printed under the table (what a row's cells cannot say)
        self._lock = threading.Lock()

    def row(self, scenario: str) -> Row:
        with self._lock:
            self.touched.add(scenario)
            return self.rows.setdefault(scenario, Row(scenario))

    def begin(self) -> None:
        with self._lock:
            self.touched = set()

    def written(self) -> list[Row]:
        with self._lock:
            return [self.rows[name] for name in sorted(self.touched)]

    def table(self) -> str:
        headers = (
            "scenario",
            "requests",
            "successes",
            "errors by kind",
            "violations",
            "faults fired",
            "slowest s",
            "data lost",
        )

        def fired(count: int | None) -> str:
            return "-" if count is None else str(count)

        lines = []
        for row in self.rows.values():
            errors = ", ".join(f"{kind} x{count}" for kind, count in sorted(row.errors.items())) or "-"
            lines.append(
                (
                    row.scenario,
                    str(row.requests),
                    str(row.successes),
                    errors,
                    str(row.violations),
                    fired(row.faults_fired),
                    f"{row.slowest:.2f}",
                    str(row.data_lost) if row.integrity_checked else "unchecked",
                )
            )
        total = Row("total")
        for row in self.rows.values():
            total.requests += row.requests
            total.successes += row.successes
            total.errors.update(row.errors)
            total.violations += row.violations
            total.data_lost += row.data_lost
            if row.faults_fired is not None:
                total.fired(row.faults_fired)
            total.slowest = max(total.slowest, row.slowest)
        lines.append(
            (
                "**total**",
                str(total.requests),
                str(total.successes),
                str(sum(total.errors.values())),
                str(total.violations),
                fired(total.faults_fired),
                f"{total.slowest:.2f}",
                total_data_lost(self.rows.values()),
            )
        )
        widths = [max(len(header), *(len(line[i]) for line in lines)) for i, header in enumerate(headers)]

        def render(cells: Sequence[str]) -> str:
            return "| " + " | ".join(cell.ljust(widths[i]) for i, cell in enumerate(cells)) + " |"

        out = [render(headers), "|" + "|".join("-" * (width + 2) for width in widths) + "|"]
        out.extend(render(line) for line in lines)
        out.extend(["", *self.notes] if self.notes else [])
        return "\n".join(out)


def total_data_lost(rows: Iterable[Row]) -> str:
    """The total's data lost: the sum of the checked rows, and how many rows were never checked (an
    unchecked row is no 0)."""
    rows = list(rows)
    lost = sum(row.data_lost for row in rows if row.integrity_checked)
    unchecked = sum(1 for row in rows if not row.integrity_checked)
    return f"{lost} ({unchecked} rows unchecked)" if unchecked else str(lost)


RESULTS = Results()
