"""The scheduled sweep: visit every managed secret of this stage and the bootstrap admin's, repair a
stuck rotation (rolling it forward through the rotation steps when its new secret works), recover a
lost secret, and start a rotation that is due. Never starts one that is in progress."""

from __future__ import annotations

import logging
import time
from dataclasses import KW_ONLY, dataclass, replace
from typing import Any

from zus_m2m import errors
from zus_m2m.ports import Clock, MetricsSink, SecretStore, TokenIssuer
from zus_m2m.rotation.policy import RotationPolicy
from zus_m2m.rotation.steps import FINISH_SECRET, RotationSteps, RotationTarget
from zus_m2m.tokens.patience import issue_patiently
from zus_m2m.values import AWSCURRENT, AWSPENDING, AWSPREVIOUS

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class RotationSweep:
    store: SecretStore
    steps: RotationSteps
    issuer: TokenIssuer
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
        target = self.steps.target_of(description)
        now = self.clock()
        if description.rotation_in_progress:
            # LastChangedDate moves when a version is added or a label moves, LastRotatedDate when a
            # rotation ran: the later of them bounds how long this rotation has not moved.
            stamps = (description.last_changed, description.last_rotated, description.created)
            changed = max((stamp for stamp in stamps if stamp is not None), default=0.0)
            if now - changed < self.policy.stuck_after:
                return "in-progress"
            return self._repair(target)
        working = self._first_working(target, (AWSCURRENT, AWSPREVIOUS))
        if working != AWSCURRENT:
            reason = "current secret refused" if working else "every version refused"
            return self._recover(target, reason)
        since = description.last_rotated or description.created
        if since is None or now - since >= self.policy.rotation_interval:
            self._start(target)
            logger.info("rotation started: due", extra={"client": target.client})
            return "rotation-started"
        return "healthy"

    def _repair(self, target: RotationTarget) -> str:
        """A rotation that died: roll it forward if its new secret works, else clear it away."""
        pending_version = target.description.version_at(AWSPENDING)
        assert pending_version is not None  # rotation_in_progress says so
        has_value = self.store.read_version(target.secret_id, pending_version) is not None
        working = self._first_working(target, (AWSPENDING, AWSCURRENT, AWSPREVIOUS))
        if working == AWSPENDING:
            # Zus holds the pending secret (its token is now cached): finish the rotation.
            self.steps.run(FINISH_SECRET, target.secret_id, pending_version)
            logger.info("stuck rotation rolled forward", extra={"client": target.client, "version": pending_version})
            return "rolled-forward"
        self.store.remove_stage(target.secret_id, AWSPENDING, pending_version)
        if working is None:
            return self._recover(target, "every version refused")
        if working != AWSCURRENT:
            return self._recover(target, "current secret refused")
        if not has_value:
            # The rotation died before createSecret stored anything: start it again.
            self._start(target)
            logger.info("stuck rotation restarted", extra={"client": target.client, "version": pending_version})
            return "rotation-restarted"
        logger.info("stale pending secret dropped", extra={"client": target.client, "version": pending_version})
        return "pending-dropped"

    def _recover(self, target: RotationTarget, reason: str) -> str:
        """Zus refuses the current secret: rotate to a new one, which needs no old secret to work."""
        self._start(target)
        self.metrics.count("SecretRecoveryStarted")
        logger.error("secret recovery started", extra={"client": target.client, "reason": reason})
        return "recovery-started"

    def _start(self, target: RotationTarget) -> None:
        self.store.start_rotation(target.secret_id, self.policy.rotation_function_arn or None)

    def _first_working(self, target: RotationTarget, stages: tuple[str, ...]) -> str | None:
        """The first stage whose secret Zus accepts (the token it yields is cached), or None if Zus
        refuses every one; a version still settling at Zus is asked patiently. Other errors (Zus down,
        throttled, forbidden, budget spent) propagate: they say nothing about the secret."""
        tried: set[str] = set()
        for stage in stages:
            credentials = self.store.read(target.secret_id, stage, fresh=True)
            if credentials is None or credentials.client_secret in tried:
                continue
            tried.add(credentials.client_secret)
            # Until the version has settled, and never longer than testSecret would wait.
            unsettled = credentials.unsettled_for(self.clock(), self.policy.settle_seconds)
            patience = replace(self.policy.test_patience, seconds=min(unsettled, self.policy.test_patience.seconds))
            try:
                issue_patiently(
                    self.issuer, target.client, credentials, patience, clock=self.clock, sleep=self.steps.sleep
                )
            except errors.ZusCredentialsRefused:
                continue
            return stage
        return None
