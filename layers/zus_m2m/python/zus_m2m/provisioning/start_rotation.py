"""Start a rotation of a managed client's secret now: Secrets Manager then invokes the rotation
function's four steps (``zus_m2m.rotation.steps``)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from zus_m2m import errors
from zus_m2m.ports import MetricsSink, SecretStore
from zus_m2m.provisioning.policy import ProvisioningPolicy
from zus_m2m.provisioning.queries import ClientQueries

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class StartRotation:
    queries: ClientQueries
    secrets: SecretStore
    policy: ProvisioningPolicy
    metrics: MetricsSink

    def __call__(self, name: str) -> dict[str, Any]:
        """The client must exist (ResourceNotFound) and have no rotation in progress (ResourceConflict)."""
        record = self.queries.record(name)
        secret_id = self.policy.naming.secret_id(name)
        description = self.secrets.describe(secret_id)
        if description is None or description.deleted:
            raise errors.ResourceNotFound(f"app client {name!r} has no secret to rotate")
        if description.rotation_in_progress:
            raise errors.ResourceConflict(f"a rotation of {name!r} is already in progress")
        self.secrets.start_rotation(secret_id, self.policy.rotation_function_arn or None)
        self.metrics.count("RotationStarted")
        logger.info("rotation started", extra={"client": name})
        return {"name": record.name, "secretArn": description.arn, "rotation": "started"}
