"""The rotation check of one client: repair a rotation stuck for long (``zus_m2m.rotation.repair``: one
whose failure was never recorded, e.g. a function that timed out), recover a lost secret (and say when it
was changed at Zus, outside our rotations: ``SecretChangedAtZus``), start a
rotation that is due, and say when to look at the client again. Never starts one that is in progress.
The rotation sweep finds the clients whose check is due (``zus_m2m.work.dispatch``); the worker runs this
for each of them (``zus_m2m.work.worker``).

The health check costs no token request when a token minted with the AWSCURRENT version is cached and
still valid: that token proves the version works (token vending records the version that minted each
token). So a client in use is checked for free, and an idle one costs one token request per
``check_interval``."""

from __future__ import annotations

import logging
import time
from dataclasses import KW_ONLY, dataclass

from zus_m2m.ports import Clock, MetricsSink, SecretStore, TokenTable
from zus_m2m.rotation.policy import RotationPolicy
from zus_m2m.rotation.repair import RotationRepair
from zus_m2m.rotation.steps import RotationTarget
from zus_m2m.secret_policy import same_policy
from zus_m2m.values import AWSCURRENT, AWSPREVIOUS, SecretDescription

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RotationCheck:
    """What a client's check did (``healthy``, ``rotation-started``, ``in-progress``, a repair's outcome,
    ``recovery-started`` or ``absent``) and when the next one is due."""

    outcome: str
    next_check_at: float


@dataclass(eq=False)
class RotationSweep:
    secrets: SecretStore
    repair: RotationRepair
    policy: RotationPolicy
    metrics: MetricsSink
    table: TokenTable
    _: KW_ONLY
    clock: Clock = time.time

    def check(self, client: str) -> RotationCheck:
        """Check the client's secret; ZusM2MError if that failed (the check stays due)."""
        # Describe afresh: what the secret is now decides.
        description = self.secrets.describe(self.policy.naming.secret_id(client))
        now = self.clock()
        if description is None or description.deleted:
            return RotationCheck("absent", now + self.policy.check_interval)
        self._guard(description.name)
        outcome = self._visit(description)
        if outcome == "healthy":
            next_check = min(now + self.policy.check_interval, self.policy.rotation_due_at(description))
        else:
            # A rotation is moving: look again once it would count as stuck.
            next_check = now + self.policy.stuck_after
        return RotationCheck(outcome, next_check)

    def _guard(self, secret_id: str) -> None:
        """Put the stack's resource policy on a secret that lacks it (created before the stack had one,
        or a provisioning that died between creating the secret and guarding it) or holds another."""
        wanted = self.policy.secret_policy
        if wanted and not same_policy(self.secrets.resource_policy(secret_id), wanted):
            self.secrets.put_resource_policy(secret_id, wanted)
            self.metrics.count("SecretPolicyPut")
            logger.info("the secret's resource policy was put", extra={"secret": secret_id})

    def _visit(self, description: SecretDescription) -> str:
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
        if self._current_proven(target, description, now):
            working: str | None = AWSCURRENT
        else:
            working = self.repair.first_working(target, (AWSCURRENT, AWSPREVIOUS))
        if working != AWSCURRENT:
            reason = "current secret refused" if working else "every version refused"
            if self._changed_at_zus(description, now):
                self.metrics.count("SecretChangedAtZus")
                logger.warning(
                    "changed at Zus: the stored secret is refused outside a rotation of ours",
                    extra={"client": target.client, "reason": reason},
                )
            return self.repair.recover(target, reason)
        if now >= self.policy.rotation_due_at(description):
            self.repair.start(target)
            logger.info("rotation started: due", extra={"client": target.client})
            return "rotation-started"
        return "healthy"

    def _changed_at_zus(self, description: SecretDescription, now: float) -> bool:
        """No rotation of ours is in progress, and none stored the current secret within the settling
        time: Zus refusing it means it was changed there (a Builder Admin token rotated or deleted the
        client: docs/security.md), not that our own rotation has yet to take effect."""
        stamps = (description.last_rotated, description.last_changed, description.created)
        stored = max((stamp for stamp in stamps if stamp is not None), default=0.0)
        return now - stored >= self.policy.settle_seconds

    def _current_proven(self, target: RotationTarget, description: SecretDescription, now: float) -> bool:
        """A cached token minted with the AWSCURRENT version, still valid: proof that the version works."""
        current = description.version_at(AWSCURRENT)
        token = self.table.get(target.client).token
        proven = (
            current is not None
            and token is not None
            and token.secret_version == current
            and token.seconds_left(now) > 0
        )
        self.metrics.count("HealthCheckTokenReused" if proven else "HealthCheckTokenRequested")
        return proven
