"""Scheduled jobs, invoked by EventBridge Scheduler with the schedule's Input as the event:
``{"job": "pre-refresh"}`` (every minute: hands the clients whose tokens are due for a refresh to the
work queue), ``{"job": "rotation-sweep"}`` (every five minutes: hands out the clients whose rotation
check is due) and ``{"job": "rotation-repair"}`` (every two minutes: the rotation failures the rotation
function recorded), see template.yaml. The worker function does the per-client work.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.utilities.typing import LambdaContext

from zus_m2m import errors, logs, wiring
from zus_m2m.settings import Settings
from zus_m2m.values import REFRESH, ROTATION

metrics = Metrics()
logger = logs.function_logger("scheduled", metrics)
settings = Settings.from_env()
container = wiring.Container(settings, metrics)
dispatch = container.work_dispatch()
repair = container.rotation_repair()

JOBS: Mapping[str, Callable[[], Mapping[str, Any]]] = {
    "pre-refresh": lambda: dispatch.run(REFRESH),
    "rotation-repair": lambda: repair.run(),
    "rotation-sweep": lambda: dispatch.run(ROTATION),
}


@logger.inject_lambda_context
@wiring.invocation(metrics)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    job = event.get("job") if isinstance(event, dict) else None
    run = JOBS.get(job) if isinstance(job, str) else None
    if run is None:
        shown = repr(job)[:64]
        raise errors.InvalidRequest(f"unknown scheduled job {shown}; known jobs: {', '.join(JOBS)}")
    with logger.append_context_keys(job=job):
        report = dict(run())
        logger.info("scheduled job finished", extra={"report": report})
    return {"job": job, "report": report}
