"""The events that start the local stack's functions, as template.yaml declares them: HTTP API routes
(and how API Gateway matches a request to one), EventBridge Scheduler schedules (``rate(...)`` only), and
SQS queues with the event source mappings that poll them. ``template_model`` reads them from the template."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from zus_local.stand_ins import TemplateError

__all__ = ["QueueSpec", "QueueSubscription", "Route", "Schedule", "parse_rate"]


_PARAMETER_SEGMENT = re.compile(r"^\{([A-Za-z0-9_.-]+)(\+?)\}$")


@dataclass(frozen=True)
class Route:
    """One ``HttpApi`` event: ``METHOD /path/{param}`` → function (``ANY`` and ``$default`` as in API Gateway)."""

    method: str
    path: str
    function: str
    event: str

    @property
    def route_key(self) -> str:
        return "$default" if self.path == "$default" else f"{self.method} {self.path}"

    def match(self, method: str, path: str) -> dict[str, str] | None:
        """The path parameters (still URL-encoded) if this route takes the request, else None."""
        if self.method not in ("ANY", method.upper()):
            return None
        if self.path == "$default":
            return {}
        pattern = self.path.strip("/").split("/") if self.path != "/" else []
        actual = path.strip("/").split("/") if path not in ("", "/") else []
        if path.endswith("/") and path != "/" and not self.path.endswith("/"):
            return None
        found: dict[str, str] = {}
        for index, segment in enumerate(pattern):
            parameter = _PARAMETER_SEGMENT.match(segment)
            if parameter and parameter.group(2):  # {proxy+}: one or more remaining segments
                rest = actual[index:]
                if not rest or not all(rest):
                    return None
                found[parameter.group(1)] = "/".join(rest)
                return found
            if index >= len(actual):
                return None
            if parameter:
                if not actual[index]:
                    return None
                found[parameter.group(1)] = actual[index]
            elif segment != actual[index]:
                return None
        return found if len(actual) == len(pattern) else None

    @property
    def specificity(self) -> tuple[int, int, int, int]:
        """API Gateway prefers a full match over a greedy one, literal segments over parameters, and
        an explicit method over ANY; ``$default`` comes last."""
        if self.path == "$default":
            return (0, 0, 0, 0)
        segments = [segment for segment in self.path.strip("/").split("/") if segment]
        greedy = any(segment.endswith("+}") for segment in segments)
        literal = sum(1 for segment in segments if not _PARAMETER_SEGMENT.match(segment))
        return (1, 0 if greedy else 1, literal, 0 if self.method == "ANY" else 1)


_RATE = re.compile(r"^rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)$")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


def parse_rate(expression: str, where: str = "schedule") -> float:
    """Seconds between runs of ``rate(N unit)``; other expressions are refused with the reason."""
    match = _RATE.match(expression.strip())
    if match is None:
        if expression.strip().startswith(("cron(", "at(")):
            raise TemplateError(
                f"{where}: {expression} is not supported by the local stack; it runs "
                "rate(N minute|minutes|hour|hours|day|days) schedules only"
            )
        raise TemplateError(f"{where}: cannot read the schedule expression {expression!r}")
    count = int(match.group(1))
    if count < 1:
        raise TemplateError(f"{where}: {expression} must name a positive interval")
    return float(count * _UNIT_SECONDS[match.group(2).rstrip("s")])


@dataclass(frozen=True)
class Schedule:
    """One ``ScheduleV2`` event: EventBridge Scheduler invoking ``function`` with ``input`` every interval."""

    name: str
    event: str
    function: str
    expression: str
    interval_seconds: float
    input: Any


@dataclass(frozen=True)
class QueueSpec:
    """One ``AWS::SQS::Queue``: its name and ARN, the attributes SQS's redelivery depends on, and the
    queue its redrive policy moves a message to after ``max_receive_count`` receives."""

    logical_id: str
    name: str
    arn: str
    visibility_timeout: int = 30
    message_retention: int = 345600
    dead_letter_queue: str | None = None
    max_receive_count: int = 0


@dataclass(frozen=True)
class QueueSubscription:
    """One ``SQS`` event: Lambda's event source mapping polling ``queue`` for ``function``, in batches of
    at most ``batch_size``, with at most ``maximum_concurrency`` invocations at once; with
    ``report_batch_item_failures`` the function answers which messages failed."""

    function: str
    event: str
    queue: str
    batch_size: int = 10
    maximum_concurrency: int = 2
    report_batch_item_failures: bool = False
