"""Secrets Manager's rotation function: one of the four rotation steps per invocation.

Secrets Manager invokes it with ``{"Step", "SecretId", "ClientRequestToken"}``; locally the local stack
plays Secrets Manager with the same event (``zus_local.secrets_manager_rotation``). A failed step
raises, so that Secrets Manager retries it; every step is idempotent (``zus_m2m.rotation.steps``).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.utilities.typing import LambdaContext

from zus_m2m import errors, logs, wiring
from zus_m2m.settings import Settings

metrics = Metrics()
logger = logs.function_logger("rotation", metrics)
settings = Settings.from_env()
steps = wiring.Container(settings, metrics).rotation_steps()

EVENT_FIELDS = ("Step", "SecretId", "ClientRequestToken")


def parse_event(event: Any) -> tuple[str, str, str]:
    """The step, secret and version id (its ClientRequestToken) of a Secrets Manager rotation event
    (InvalidRequest if malformed)."""
    if not isinstance(event, dict):
        raise errors.InvalidRequest("a rotation event is a JSON object")
    missing = [name for name in EVENT_FIELDS if not isinstance(event.get(name), str) or not event[name]]
    if missing:
        raise errors.InvalidRequest(f"the rotation event lacks {', '.join(missing)}")
    return event["Step"], event["SecretId"], event["ClientRequestToken"]


@logger.inject_lambda_context
@wiring.invocation(metrics)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, str]:
    step, secret_id, version_id = parse_event(event)
    with logger.append_context_keys(step=step, secret=secret_id, version=version_id):
        outcome = steps.run(step, secret_id, version_id)
    return {"step": step, "outcome": outcome}
