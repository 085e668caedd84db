"""EventBridge Scheduler, played locally: every ``ScheduleV2`` event of the template fires its function
with the schedule's ``Input`` as the event, every ``rate(...)`` interval divided by ``scale``.

As with a ``rate`` schedule, the first run comes one interval after the start; a run that overlaps
the next tick delays it rather than running twice at once (runs missed meanwhile are skipped). One
line per run: schedule name, job, outcome, the environment (pid, cold or warm) and duration, and the
run's numeric report if it has one.
"""

from __future__ import annotations

import copy
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from zus_local.console import Console
from zus_local.event_sources import Schedule
from zus_local.lambda_runtime import Invocation

Invoke = Callable[[str, Any], Invocation]


def summary(result: Any) -> str:
    """The numbers of a job's report (``{"report": {"refreshed": 1, …}}``) as ``refreshed=1 …``."""
    report = result.get("report", result) if isinstance(result, dict) else None
    if not isinstance(report, dict):
        return ""
    numbers = [
        f"{key}={value}"
        for key, value in report.items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    ]
    return " ".join(numbers)


class Scheduler:
    def __init__(self, schedules: Sequence[Schedule], invoke: Invoke, console: Console, scale: float = 1.0) -> None:
        if scale <= 0:
            raise ValueError("the schedule scale must be positive")
        self.schedules = tuple(schedules)
        self.scale = scale
        self._invoke = invoke
        self._console = console
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    def interval(self, schedule: Schedule) -> float:
        return schedule.interval_seconds / self.scale

    def start(self) -> Scheduler:
        for schedule in self.schedules:
            thread = threading.Thread(
                target=self._loop, args=(schedule,), name=f"schedule-{schedule.name}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """No new runs; waits up to ``timeout`` for runs in progress (they are daemon threads)."""
        self._stopping.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        self._threads.clear()

    def _loop(self, schedule: Schedule) -> None:
        interval = self.interval(schedule)
        due = time.monotonic() + interval
        while not self._stopping.wait(max(0.0, due - time.monotonic())):
            self.run(schedule)
            due += interval
            now = time.monotonic()
            if due < now:  # the run took longer than the interval: skip what was missed
                due = now + interval

    def run(self, schedule: Schedule) -> bool:
        """Fire ``schedule`` once; logs one line. True when the function succeeded."""
        job = schedule.input.get("job") if isinstance(schedule.input, dict) else None
        label = f"schedule {schedule.name}" + (f" ({job})" if isinstance(job, str) else "")
        started = time.perf_counter()
        try:
            invocation = self._invoke(schedule.function, copy.deepcopy(schedule.input))
        except Exception as exc:
            elapsed = (time.perf_counter() - started) * 1000
            self._console.line(f"{label}  failed ({type(exc).__name__})  {elapsed:.0f} ms")
            self._console.error("".join(traceback.format_exception(exc)))
            return False
        numbers = summary(invocation.result)
        self._console.line(f"{label}  ok  {invocation.describe()}" + (f"  {numbers}" if numbers else ""))
        return True
