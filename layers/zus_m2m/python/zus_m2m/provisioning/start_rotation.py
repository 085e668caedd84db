"""Start a rotation of a managed client's secret now: Secrets Manager then invokes the rotation
function's four steps (``zus_m2m.rotation.steps``). Or, asked to repair, repair the rotation in
progress at once (``zus_m2m.rotation.repair``) instead of refusing it."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from zus_m2m import errors
from zus_m2m.ports import MetricsSink, SecretStore
from zus_m2m.provisioning.policy import ProvisioningPolicy
from zus_m2m.provisioning.queries import ClientQueries
from zus_m2m.rotation.repair import RotationRepair
from zus_m2m.values import RotationRequest

logger = logging.getLogger(__name__)

NEW_ROTATION = RotationRequest()


@dataclass(eq=False)
class StartRotation:
    queries: ClientQueries
    secrets: SecretStore
    repair: RotationRepair
    policy: ProvisioningPolicy
    metrics: MetricsSink

    def __call__(self, name: str, request: RotationRequest = NEW_ROTATION) -> dict[str, Any]:
        """The client must exist (ResourceNotFound). A rotation in progress is a conflict, unless the
        request asks for its repair: then it is rolled forward, or replaced by a new rotation."""
        record = self.queries.record(name)
        secret_id = self.policy.naming.secret_id(name)
        description = self.secrets.describe(secret_id)
        if description is None or description.deleted:
            raise errors.ResourceNotFound(f"app client {name!r} has no secret to rotate")
        if description.rotation_in_progress:
            if not request.repair:
                raise errors.ResourceConflict(
                    f'a rotation of {name!r} is already in progress; ask with {{"repair": true}} to repair it now'
                )
            outcome = self.repair.repair(self.repair.steps.target_of(description))
            logger.info("rotation repaired on request", extra={"client": name, "outcome": outcome})
        else:
            self.secrets.start_rotation(secret_id, self.policy.rotation_function_arn or None)
            self.metrics.count("RotationStarted")
            logger.info("rotation started", extra={"client": name})
            outcome = "started"
        return {"name": record.name, "secretArn": description.arn, "rotation": outcome}
