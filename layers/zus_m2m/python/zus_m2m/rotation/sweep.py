"""The scheduled sweep: visit every managed secret of this stage and the bootstrap admin's, repair a
rotation stuck for long (``zus_m2m.rotation.repair``: one whose failure was never recorded, e.g. a
function that timed out), recover a lost secret, and start a rotation that is due. Never starts one
that is in progress."""

from __future__ import annotations

import logging
import time
from dataclasses import KW_ONLY, dataclass
from typing import Any

from zus_m2m import errors
from zus_m2m.ports import Clock, MetricsSink, SecretStore
from zus_m2m.rotation.policy import RotationPolicy
from zus_m2m.rotation.repair import RotationRepair
from zus_m2m.values import AWSCURRENT, AWSPREVIOUS

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class RotationSweep:
    store: SecretStore
    repair: RotationRepair
    policy: RotationPolicy
    metrics: MetricsSink
    _: KW_ONLY
    clock: Clock = time.time

    def run(self) -> dict[str, Any]:
        """Returns a report (the handler logs it): the outcome per secret, by name, and counts per outcome."""
        outcomes: dict[str, str] = {}
        for secret_name in self._secret_names():
            try:
                outcome = self._visit(secret_name)
            except errors.ZusM2MError as exc:
                outcome = "failed"
                self.metrics.count("RotationFailed")
                logger.warning("rotation sweep failed", extra={"secret": secret_name, "reason": exc.detail})
            outcomes[secret_name] = outcome
        counts: dict[str, int] = {}
        for outcome in outcomes.values():
            counts[outcome] = counts.get(outcome, 0) + 1
        return {"checked": len(outcomes), "counts": counts, "secrets": outcomes}

    def _secret_names(self) -> list[str]:
        naming = self.policy.naming
        names = [description.name for description in self.store.list_managed(naming.stage)]
        if naming.admin_secret_name and naming.admin_secret_name not in names:
            names.append(naming.admin_secret_name)
        return names

    def _visit(self, secret_name: str) -> str:
        # Describe afresh: a listing may be stale, and Secrets Manager's ListSecrets lags.
        description = self.store.describe(secret_name)
        if description is None or description.deleted:
            return "absent"
        target = self.repair.steps.target_of(description)
        now = self.clock()
        if description.rotation_in_progress:
            # LastChangedDate moves when a version is added or a label moves, LastRotatedDate when a
            # rotation ran: the later of them bounds how long this rotation has not moved.
            stamps = (description.last_changed, description.last_rotated, description.created)
            changed = max((stamp for stamp in stamps if stamp is not None), default=0.0)
            if now - changed < self.policy.stuck_after:
                return "in-progress"
            return self.repair.repair(target)
        working = self.repair.first_working(target, (AWSCURRENT, AWSPREVIOUS))
        if working != AWSCURRENT:
            reason = "current secret refused" if working else "every version refused"
            return self.repair.recover(target, reason)
        since = description.last_rotated or description.created
        if since is None or now - since >= self.policy.rotation_interval:
            self.repair.start(target)
            logger.info("rotation started: due", extra={"client": target.client})
            return "rotation-started"
        return "healthy"
