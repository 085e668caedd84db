"""Repair a rotation that stopped moving, and the repair job that finds them within minutes.

A repair rolls the rotation forward through finishSecret when its new secret (AWSPENDING) works at
Zus, and otherwise drops that version's AWSPENDING label and starts a new rotation, which needs no
old secret to work: so it also recovers a client whose every secret Zus refuses. The scheduled sweep
repairs rotations stuck for long (``zus_m2m.rotation.sweep``), an admin forces a repair through the
API (``zus_m2m.provisioning.start_rotation``), and the repair job (``run``) repairs the failures the
rotation steps recorded.

The repair job reads only the recorded failures (one query) and repairs a failure on the second run
that finds it unchanged: Secrets Manager retries a failed rotation itself, each retry that fails
records the failure afresh and one that succeeds clears it, so the job leaves those retries one
schedule interval and then acts on what Secrets Manager gave up on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

from zus_m2m import errors
from zus_m2m.admin_values import RotationFailure
from zus_m2m.ports import RotationFailures, Runtime, SecretStore, TokenIssuer
from zus_m2m.rotation.policy import RotationPolicy
from zus_m2m.rotation.steps import FINISH_SECRET, RotationSteps, RotationTarget
from zus_m2m.tokens.patience import issue_patiently
from zus_m2m.values import AWSCURRENT, AWSPENDING, AWSPREVIOUS

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class RotationRepair:
    secrets: SecretStore
    steps: RotationSteps
    issuer: TokenIssuer
    failures: RotationFailures
    policy: RotationPolicy
    # Its sleep is the steps' (``steps.runtime.sleep``): one pause for the whole rotation.
    runtime: Runtime

    def repair(self, target: RotationTarget) -> str:
        """Repair ``target``'s rotation in progress: ``rolled-forward``, ``rotation-restarted`` or
        ``recovery-started``."""
        version = target.description.rotation_version
        if version is None:
            raise errors.ResourceConflict(f"no rotation of {target.client!r} is in progress")
        working = self.first_working(target, (AWSPENDING, AWSCURRENT, AWSPREVIOUS))
        if working == AWSPENDING:
            # Zus holds the pending secret (its token is now cached): finish the rotation.
            self.steps.run(FINISH_SECRET, target.secret_id, version)
            logger.info("rotation rolled forward", extra={"client": target.client, "version": version})
            outcome = "rolled-forward"
        else:
            self.secrets.remove_stage(target.secret_id, AWSPENDING, version)
            if working is None:
                outcome = self.recover(target, "every version refused")
            elif working != AWSCURRENT:
                outcome = self.recover(target, "current secret refused")
            else:
                # The rotation died before Zus held its secret (or one Zus never accepted): again.
                self.start(target)
                logger.info("rotation restarted", extra={"client": target.client, "version": version})
                outcome = "rotation-restarted"
        self.failures.clear(target.client, version)
        self.runtime.metrics.count("RotationRepaired")
        return outcome

    def recover(self, target: RotationTarget, reason: str) -> str:
        """Zus refuses the current secret: rotate to a new one, which needs no old secret to work."""
        self.start(target)
        self.runtime.metrics.count("SecretRecoveryStarted")
        logger.error("secret recovery started", extra={"client": target.client, "reason": reason})
        return "recovery-started"

    def start(self, target: RotationTarget) -> None:
        self.secrets.start_rotation(target.secret_id, self.policy.rotation_function_arn or None)

    def first_working(self, target: RotationTarget, stages: tuple[str, ...]) -> str | None:
        """The first stage whose secret Zus accepts (the token it yields is cached), or None if Zus
        refuses every one; a version still settling at Zus is asked patiently. Other errors (Zus down,
        throttled, forbidden, budget spent) propagate: they say nothing about the secret."""
        tried: set[str] = set()
        for stage in stages:
            credentials = self.secrets.read(target.secret_id, stage, fresh=True)
            if credentials is None or credentials.client_secret in tried:
                continue
            tried.add(credentials.client_secret)
            # Until the version has settled, and never longer than testSecret would wait.
            unsettled = credentials.unsettled_for(self.runtime.clock(), self.policy.settle_seconds)
            patience = replace(self.policy.test_patience, seconds=min(unsettled, self.policy.test_patience.seconds))
            try:
                issue_patiently(
                    self.issuer,
                    target.client,
                    credentials,
                    patience,
                    clock=self.runtime.clock,
                    sleep=self.steps.runtime.sleep,
                )
            except errors.ZusCredentialsRefused:
                continue
            return stage
        return None

    # --- the repair job ---------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        """Every recorded failure, looked at once. Returns a report (the handler logs it): the outcome
        per client and the counts per outcome."""
        outcomes: dict[str, str] = {}
        for failure in self.failures.list():
            try:
                outcome = self._visit(failure)
            except errors.ZusM2MError as exc:  # still recorded: the next run tries again
                outcome = "failed"
                logger.warning("rotation repair failed", extra={"client": failure.client, "reason": exc.detail})
            outcomes[failure.client] = outcome
        counts: dict[str, int] = {}
        for outcome in outcomes.values():
            counts[outcome] = counts.get(outcome, 0) + 1
        return {"failures": len(outcomes), "counts": counts, "clients": outcomes}

    def _visit(self, failure: RotationFailure) -> str:
        description = self.secrets.describe(self.policy.naming.secret_id(failure.client))
        if description is None or description.deleted:
            self.failures.clear(failure.client, failure.version)
            return "absent"
        if description.rotation_version != failure.version:
            # That rotation finished, or another replaced it: nothing of this failure is left.
            self.failures.clear(failure.client, failure.version)
            return "resolved"
        now = self.runtime.clock()
        if failure.seen_at is None:
            self.failures.mark_seen(failure, now)
            return "waiting"
        outcome = self.repair(self.steps.target_of(description))
        logger.info(
            "recorded rotation failure repaired",
            extra={
                "client": failure.client,
                "step": failure.step,
                "outcome": outcome,
                "seconds_since_failure": round(now - failure.failed_at, 1),
            },
        )
        return outcome
