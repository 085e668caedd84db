"""Secrets Manager's four rotation steps, one per invocation of the rotation function.

Secrets Manager drives a rotation: ``RotateSecret`` (the console's "rotate immediately", the CLI, the
schedule, the sweep, ``POST /app-clients/{name}/rotations``) adds a version named by a fresh
ClientRequestToken, labelled AWSPENDING and holding no value, then invokes the rotation function with
``createSecret``, ``setSecret``, ``testSecret`` and ``finishSecret`` in turn, each with that version's
id; it retries a step that fails. Every step here is therefore idempotent, and every step first
passes one shared guard (``RotationSteps._guard``). Locally the local stack plays Secrets Manager
(``zus_local.secrets_manager_rotation``).

Zus rotates a secret in one call that answers with the new secret, shown once, and the old secret may
die at once (or live on while the new one propagates). So ``createSecret`` stores the new secret as
AWSPENDING immediately after Zus answers; token vending keeps working in between because cached tokens
stay valid and the vendor falls back to AWSPENDING / AWSPREVIOUS on refused credentials.

Every read here names a stage or a version and is fresh (never the secret store's short cache): a step
acts on what Secrets Manager holds now.

A step of one of our rotations that fails is recorded (``RotationFailures``: the client, the version,
the step, when and why) before the error goes back to Secrets Manager, and a later step of the same
version that succeeds clears the record; the repair job (``zus_m2m.rotation.repair``) repairs what
stays recorded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from zus_m2m import deadline, errors
from zus_m2m.admin_values import RotationFailure
from zus_m2m.backoff import backoff
from zus_m2m.ports import RotationFailures, Runtime, SecretStore, TokenIssuer
from zus_m2m.provisioning.admin import BootstrapAdmin
from zus_m2m.rotation.policy import RotationPolicy
from zus_m2m.tokens.patience import issue_patiently
from zus_m2m.values import AWSCURRENT, AWSPENDING, ClientCredentials, SecretDescription

logger = logging.getLogger(__name__)

CREATE_SECRET = "createSecret"
SET_SECRET = "setSecret"
TEST_SECRET = "testSecret"
FINISH_SECRET = "finishSecret"
STEPS = (CREATE_SECRET, SET_SECRET, TEST_SECRET, FINISH_SECRET)
# How long createSecret keeps trying to store the secret Zus just answered with (within the invocation).
PENDING_STORE_PATIENCE = 30.0


class RotationCheckpoints:
    """The names ``checkpoint`` is called with, right after each external call of a step."""

    ZUS_ROTATED = "createSecret:zus-rotated"
    PENDING_STORED = "createSecret:pending-stored"
    TESTED = "testSecret:tested"
    CURRENT_MOVED = "finishSecret:current-moved"
    PENDING_REMOVED = "finishSecret:pending-removed"


@dataclass(frozen=True)
class RotationTarget:
    """A secret of ours, and which managed client it belongs to."""

    description: SecretDescription
    client: str
    already_current: bool = False

    @property
    def secret_id(self) -> str:
        # The name, not the ARN Secrets Manager passes: the vendor and the secret store's cache key by name.
        return self.description.name


@dataclass(eq=False)
class RotationSteps:
    secrets: SecretStore
    admin: BootstrapAdmin
    issuer: TokenIssuer
    failures: RotationFailures
    policy: RotationPolicy
    runtime: Runtime

    def __post_init__(self) -> None:
        self._run_by_step: dict[str, Callable[[RotationTarget, str], str]] = {
            CREATE_SECRET: self._create_secret,
            SET_SECRET: self._set_secret,
            TEST_SECRET: self._test_secret,
            FINISH_SECRET: self._finish_secret,
        }

    def run(self, step: str, secret_id: str, version_id: str) -> str:
        """Run one rotation step for version ``version_id`` of ``secret_id`` (a name or an ARN);
        returns what it did. Raises on failure, so that Secrets Manager retries the step."""
        run = self._run_by_step.get(step)
        if run is None:
            raise errors.InvalidRequest(f"unknown rotation step {step[:40]!r}; steps are {', '.join(STEPS)}")
        started = self.runtime.clock()
        context: dict[str, Any] = {"step": step, "secret": secret_id, "version": version_id}
        client: str | None = None
        try:
            target = self._guard(secret_id, version_id)
            client = context["client"] = target.client
            quiet = target.already_current and step != FINISH_SECRET
            outcome = "already-current" if quiet else run(target, version_id)
        except Exception as exc:
            self.runtime.metrics.count("RotationFailed")
            reason = exc.detail if isinstance(exc, errors.ZusM2MError) else type(exc).__name__
            logger.error("rotation step failed", extra={**context, "reason": reason})
            # Only a step of one of our rotations (past the guard) is a failure to repair.
            if client is not None:
                self._note(self.failures.record, RotationFailure(client, version_id, step, started, reason))
            raise
        self._note(self.failures.clear, target.client, version_id)
        self.runtime.metrics.count("RotationStep")
        seconds = round(self.runtime.clock() - started, 3)
        logger.info("rotation step done", extra={**context, "outcome": outcome, "seconds": seconds})
        return outcome

    def _note(self, bookkeeping: Callable[..., None], *arguments: Any) -> None:
        """Record or clear a failure; the step's own outcome stands even if that fails (the repair job
        checks every recorded failure against the secret before acting on it)."""
        try:
            bookkeeping(*arguments)
        except errors.ZusM2MError as exc:
            logger.warning("could not update the recorded rotation failures", extra={"reason": exc.detail})

    def target_of(self, description: SecretDescription) -> RotationTarget:
        """The secret as a rotation target, or ResourceConflict if it is not one of our clients': the
        function's role may reach other secrets than this stage's; never rotate those."""
        client = self.policy.naming.client_of(description)
        if client is None:
            raise errors.ResourceConflict(
                f"secret {description.name} is not managed by zus-m2m stage {self.policy.naming.stage}"
            )
        return RotationTarget(description, client)

    def _guard(self, secret_id: str, version_id: str) -> RotationTarget:
        """The checks every step makes first, in this order."""
        description = self.secrets.describe(secret_id)
        if description is None or description.deleted:
            raise errors.ResourceNotFound(f"secret {secret_id} does not exist or is scheduled for deletion")
        target = self.target_of(description)
        # The version Secrets Manager created (labelled AWSPENDING, without a value) before it invoked
        # createSecret; an id that names no version is a hand-made or misdirected invocation.
        stages = description.versions.get(version_id)
        if stages is None:
            raise errors.ResourceConflict(f"{version_id} is not a version of secret {description.name}")
        # Already AWSCURRENT: this rotation finished (a retried or late invocation). Nothing to do, except
        # that finishSecret still removes a stale AWSPENDING from that version.
        if AWSCURRENT in stages:
            return RotationTarget(description, target.client, already_current=True)
        # Rotation enabled: Secrets Manager reports it whenever it invokes us (RotateSecret turns rotation
        # on); off means nobody turned rotation on, or an operator turned it off, and a hand-made
        # invocation is refused. CancelRotateSecret turns it off but leaves a started rotation's AWSPENDING
        # version behind, which the sweep rolls forward through finishSecret (or clears): so a step is also
        # accepted while a rotation is in progress.
        if not (description.rotation_enabled or description.rotation_in_progress):
            raise errors.ResourceConflict(f"rotation is not enabled for secret {description.name}")
        # The version must be the one at AWSPENDING: any other belongs to an earlier rotation that a newer
        # one superseded (the label moved on).
        if AWSPENDING not in stages:
            raise errors.ResourceConflict(
                f"version {version_id} of secret {description.name} is not AWSPENDING (a stale rotation version)"
            )
        return target

    def _create_secret(self, target: RotationTarget, version_id: str) -> str:
        # Secrets Manager retries steps: a version that already holds a value was stored by an earlier
        # attempt. Never rotate at Zus again: that secret would be another one, and a version's value
        # never changes (Secrets Manager refuses another value for the same ClientRequestToken).
        if self.secrets.read_version(target.secret_id, version_id) is not None:
            return "already-created"
        current = self.secrets.read(target.secret_id, AWSCURRENT, fresh=True)
        if current is None or not current.app_client_id:
            # The bootstrap admin's secret is written by hand: without appClientId Zus cannot be asked.
            lacks = "an AWSCURRENT value" if current is None else "appClientId"
            raise errors.ConfigurationError(f"secret {target.secret_id} lacks {lacks}; it cannot be rotated")
        # An admin can always rotate: the new secret does not depend on the old one still working, which
        # is what recovers a lost secret. The bootstrap admin rotates its own secret with a token vended
        # with its current secret (cached tokens stay valid after the rotation).
        # The token as the port gives it, not ``BootstrapAdmin.bearer``'s translation for provisioning's
        # callers: a failed step records the error the admin tokens raised.
        rotated = self.admin.zus.rotate_secret(current.app_client_id, self.admin.admin_tokens.bearer())
        self.runtime.checkpoint(RotationCheckpoints.ZUS_ROTATED)
        # At once: Zus shows the new secret only in this answer, and the old one may already be dead.
        self._store_pending(target.secret_id, current.with_secret(rotated.client_secret), version_id)
        self.runtime.checkpoint(RotationCheckpoints.PENDING_STORED)
        return "created"

    def _store_pending(self, secret_id: str, credentials: ClientCredentials, version_id: str) -> None:
        """Until now the new secret exists only in this invocation's memory: a failed write is tried
        again within the invocation (the same version, so a write that landed unseen is no second
        value) rather than left to Secrets Manager's retry of the step, which must rotate at Zus again
        while no stored secret works."""
        pauses = backoff(0.2, 2.0)
        give_up_at = self.runtime.clock() + PENDING_STORE_PATIENCE
        while True:
            try:
                self.secrets.put_pending(secret_id, credentials, version_id)
                return
            except errors.StoreUnavailable:
                pause = next(pauses)
                if min(deadline.time_left(), give_up_at - self.runtime.clock()) < pause:
                    raise
                logger.warning("storing the pending secret failed; trying again", extra={"secret": secret_id})
                self.runtime.sleep(pause)

    def _set_secret(self, target: RotationTarget, version_id: str) -> str:
        # Zus already holds the new secret: rotate-secret in createSecret both made and set it.
        return "nothing-to-set"

    def _test_secret(self, target: RotationTarget, version_id: str) -> str:
        pending = self.secrets.read_version(target.secret_id, version_id)
        if pending is None:
            # No value: Secrets Manager's test of a rotation configuration (RotateSecret with
            # RotateImmediately false), which invokes only testSecret. Nothing was rotated to test;
            # finishSecret refuses to promote a version without a value.
            return "nothing-to-test"
        # Through the vendor, so that the token is cached (the test costs no extra token request later),
        # patiently: the new secret may take a while to take effect at Zus.
        issue_patiently(
            self.issuer,
            target.client,
            pending,
            self.policy.test_patience,
            clock=self.runtime.clock,
            sleep=self.runtime.sleep,
        )
        self.runtime.checkpoint(RotationCheckpoints.TESTED)
        return "tested"

    def _finish_secret(self, target: RotationTarget, version_id: str) -> str:
        outcome = "already-current"
        if not target.already_current:
            # Never promote a version without a value (testSecret lets one pass: see there).
            if self.secrets.read_version(target.secret_id, version_id) is None:
                raise errors.ResourceConflict(
                    f"version {version_id} of secret {target.secret_id} holds no value; createSecret has not run"
                )
            current = target.description.version_at(AWSCURRENT)
            # AWSPREVIOUS follows AWSCURRENT's old version.
            self.secrets.move_stage(target.secret_id, AWSCURRENT, version_id, current)
            self.runtime.checkpoint(RotationCheckpoints.CURRENT_MOVED)
            outcome = "finished"
        # Remove AWSPENDING from the new current version. Secrets Manager accepts either end state (no
        # AWSPENDING, or AWSPENDING on the AWSCURRENT version); without it the label keeps its meaning,
        # "the version that becomes current when a rotation finishes", and names no finished version.
        if AWSPENDING in target.description.versions.get(version_id, []):
            self.secrets.remove_stage(target.secret_id, AWSPENDING, version_id)
            self.runtime.checkpoint(RotationCheckpoints.PENDING_REMOVED)
            outcome = "finished" if outcome == "finished" else "pending-label-removed"
        return outcome
