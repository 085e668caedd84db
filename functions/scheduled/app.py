"""Scheduled jobs, invoked by EventBridge Scheduler with the schedule's Input as the event:
``{"job": "pre-refresh"}`` (every minute), ``{"job": "rotation-repair"}`` (every two minutes: the
rotation failures the rotation function recorded) and ``{"job": "rotation-sweep"}`` (hourly), see
template.yaml.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.utilities.typing import LambdaContext

from zus_m2m import errors, logs, wiring
from zus_m2m.settings import Settings

logger = logs.function_logger("scheduled")
metrics = Metrics()
settings = Settings.from_env()
container = wiring.Container(settings, metrics)
vendor = container.token_vendor()
token_pre_refresh = container.token_pre_refresh(vendor)
sweep = container.rotation_sweep(vendor)
repair = sweep.repair

# The pre-refresh schedule runs every minute (template.yaml); renew what enters the refresh margin
# before the next run, with half a minute to spare for a late or slow run.
PRE_REFRESH_HORIZON_SECONDS = 90.0


def pre_refresh() -> Mapping[str, Any]:
    return token_pre_refresh.run(horizon=PRE_REFRESH_HORIZON_SECONDS)


def rotation_sweep() -> Mapping[str, Any]:
    return sweep.run()


def rotation_repair() -> Mapping[str, Any]:
    return repair.run()


JOBS: Mapping[str, Callable[[], Mapping[str, Any]]] = {
    "pre-refresh": pre_refresh,
    "rotation-repair": rotation_repair,
    "rotation-sweep": rotation_sweep,
}


@logger.inject_lambda_context(clear_state=True)
@wiring.invocation(metrics, logger)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    job = event.get("job") if isinstance(event, dict) else None
    run = JOBS.get(job) if isinstance(job, str) else None
    if run is None:
        shown = repr(job)[:64]
        raise errors.InvalidRequest(f"unknown scheduled job {shown}; known jobs: {', '.join(JOBS)}")
    logger.append_keys(job=job)
    report = dict(run())
    logger.info("scheduled job finished", extra={"report": report})
    return {"job": job, "report": report}
