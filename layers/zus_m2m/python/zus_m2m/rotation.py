"""Secret rotation: Secrets Manager's four rotation steps, and the scheduled sweep that keeps every
managed secret rotated, unstuck and alive.

Secrets Manager drives a rotation by invoking the rotation function with ``createSecret``,
``setSecret``, ``testSecret`` and ``finishSecret`` in turn, each with the ``ClientRequestToken`` that
names the new version; it retries a step that fails. Every step here is therefore idempotent, and
every step first passes one shared guard (``Rotator._guard``). "Rotate immediately" in the console,
``aws secretsmanager rotate-secret``, the schedule and ``POST /app-clients/{name}/rotations`` all start
the same rotation (``SecretStore.start_rotation``); locally the local stack plays Secrets Manager
(``zus_local.secrets_manager_rotation``).

Zus rotates a secret in one call that answers with the new secret, shown once, and the old secret may
die at once (or live on while the new one propagates). So ``createSecret`` stores the new secret as
AWSPENDING immediately after Zus answers; token vending keeps working in between because cached tokens
stay valid and the vendor falls back to AWSPENDING / AWSPREVIOUS on ``invalid_client``.

moto (the local and test stand-in for Secrets Manager) differs from the real service; each guard below
says which real-service behaviour it exists for and how it behaves under moto:

* ``get_secret_value`` without a stage can answer with a value from before a stage move: every read
  here names a stage or a version id, and reads are fresh (never the store's short cache).
* its "rotation in progress" check is inverted (it refuses a new rotation when AWSPENDING and
  AWSCURRENT share a version, and allows one while AWSPENDING sits on another): "in progress" is
  decided from VersionIdsToStages (``SecretDescription.rotation_in_progress``), ``finishSecret``
  removes AWSPENDING from the new current version, and the sweep never starts a rotation that is in
  progress.
* it accepts a reused ClientRequestToken with a different value (the real service answers
  ResourceExistsException): ``createSecret`` never writes a version that already has a value.
* ``RotateSecret`` leaves an AWSPENDING version with no value, named by the ClientRequestToken (as the
  real service does before it invokes ``createSecret``): "the pending version exists" means "has a
  value" (``SecretStore.read_version`` answers None for a version without one).

Nothing here imports boto3, requests or event shapes; no log line, metric or error carries a secret.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from zus_m2m import errors
from zus_m2m.credentials import ClientCredentials
from zus_m2m.ports import (
    AWSCURRENT,
    AWSPENDING,
    AWSPREVIOUS,
    CLIENT_TAG,
    MANAGED_TAG,
    STAGE_TAG,
    CachedToken,
    Clock,
    MetricsSink,
    SecretDescription,
    SecretStore,
)
from zus_m2m.settings import Settings
from zus_m2m.zus.models import AppClientSecret

logger = logging.getLogger(__name__)

CREATE_SECRET = "createSecret"
SET_SECRET = "setSecret"
TEST_SECRET = "testSecret"
FINISH_SECRET = "finishSecret"
STEPS = (CREATE_SECRET, SET_SECRET, TEST_SECRET, FINISH_SECRET)

Checkpoint = Callable[[str], None]


class Checkpoints:
    """The names ``checkpoint`` is called with, right after each external call of a step."""

    ZUS_ROTATED = "createSecret:zus-rotated"
    PENDING_STORED = "createSecret:pending-stored"
    TESTED = "testSecret:tested"
    CURRENT_MOVED = "finishSecret:current-moved"
    PENDING_REMOVED = "finishSecret:pending-removed"


class ZusSecretRotation(Protocol):
    """Zus's rotate-secret call (``ZusClient`` implements it)."""

    def rotate_secret(self, app_client_id: str, bearer: str) -> AppClientSecret: ...


class TokenIssuing(Protocol):
    """Obtains a token with given credentials and caches it (``TokenVendor`` implements it)."""

    def issue_with(self, client: str, credentials: ClientCredentials) -> CachedToken: ...


@dataclass(frozen=True)
class RotationPolicy:
    stage: str
    admin_secret_name: str
    admin_client_name: str
    rotation_function_arn: str = ""
    # A secret whose last rotation (or creation) is older than this is due.
    rotation_interval: float = 30 * 86400.0
    # How long testSecret keeps retrying invalid_client: a rotated secret can take time to take effect
    # (Auth0, which Zus's token endpoint resembles, documents up to 30 s).
    test_patience: float = 60.0
    first_test_pause: float = 1.0
    max_test_pause: float = 8.0
    # A rotation in progress whose secret has not changed for this long died; the sweep repairs it.
    # Secrets Manager finishes a healthy rotation within minutes (four invocations of at most 120 s).
    stuck_after: float = 15 * 60.0

    @classmethod
    def from_settings(cls, settings: Settings) -> RotationPolicy:
        return cls(
            stage=settings.stage,
            admin_secret_name=settings.admin_secret_name,
            admin_client_name=settings.admin_client_name,
            rotation_function_arn=settings.rotation_function_arn,
            rotation_interval=settings.rotation_interval_days * 86400.0,
        )


@dataclass(frozen=True)
class _Target:
    """A secret the guard accepted, and which of our clients it belongs to."""

    description: SecretDescription
    client: str
    already_current: bool = False

    @property
    def secret_id(self) -> str:
        # The name, not the ARN Secrets Manager passes: the vendor and the store's cache key by name.
        return self.description.name


class Rotator:
    def __init__(
        self,
        store: SecretStore,
        zus: ZusSecretRotation,
        vendor: TokenIssuing,
        admin_token: Callable[[], str],
        secret_id: Callable[[str], str],
        policy: RotationPolicy,
        metrics: MetricsSink,
        *,
        clock: Clock = time.time,
        sleep: Callable[[float], None] = time.sleep,
        checkpoint: Checkpoint | None = None,
    ) -> None:
        self._store = store
        self._zus = zus
        self._vendor = vendor
        self._admin_token = admin_token
        self._secret_id = secret_id
        self.policy = policy
        self._metrics = metrics
        self._clock = clock
        self._sleep = sleep
        # A no-op in production; tests use it to kill a step right after one of its external calls.
        self.checkpoint: Checkpoint = checkpoint or (lambda _name: None)
        self._steps: dict[str, Callable[[_Target, str], str]] = {
            CREATE_SECRET: self._create_secret,
            SET_SECRET: self._set_secret,
            TEST_SECRET: self._test_secret,
            FINISH_SECRET: self._finish_secret,
        }

    # --- the four steps ------------------------------------------------------------------------

    def run_step(self, step: str, secret_id: str, token: str) -> str:
        """Run one rotation step for version ``token`` of ``secret_id`` (a name or an ARN); returns
        what it did. Raises on failure, so that Secrets Manager retries the step."""
        run = self._steps.get(step)
        if run is None:
            raise errors.InvalidRequest(f"unknown rotation step {step[:40]!r}; steps are {', '.join(STEPS)}")
        started = self._clock()
        context: dict[str, Any] = {"step": step, "secret": secret_id, "version": token}
        try:
            target = self._guard(secret_id, token)
            context["client"] = target.client
            quiet = target.already_current and step != FINISH_SECRET
            outcome = "already-current" if quiet else run(target, token)
        except Exception as exc:
            self._metrics.count("RotationFailed")
            reason = exc.detail if isinstance(exc, errors.ZusM2MError) else type(exc).__name__
            logger.error("rotation step failed", extra={**context, "reason": reason})
            raise
        self._metrics.count("RotationStep")
        seconds = round(self._clock() - started, 3)
        logger.info("rotation step done", extra={**context, "outcome": outcome, "seconds": seconds})
        return outcome

    def _guard(self, secret_id: str, token: str) -> _Target:
        """The checks every step makes first, in this order."""
        description = self._store.describe(secret_id)
        if description is None or description.deleted:
            raise errors.ResourceNotFound(f"secret {secret_id} does not exist or is scheduled for deletion")
        # Ours: the function's role may reach other secrets than this stage's; never rotate those.
        client = self._client_of(description)
        # The token names a version of this secret. Real Secrets Manager creates that version (with
        # AWSPENDING and no value) before it invokes createSecret; a token that names no version is a
        # hand-made or misdirected invocation.
        stages = description.versions.get(token)
        if stages is None:
            raise errors.ResourceConflict(f"{token} is not a version of secret {description.name}")
        # Already AWSCURRENT: this rotation finished (a retried or late invocation). Nothing to do, except
        # that finishSecret still removes a stale AWSPENDING from that version.
        if AWSCURRENT in stages:
            return _Target(description, client, already_current=True)
        # Rotation enabled. Real Secrets Manager reports RotationEnabled whenever it invokes us
        # (RotateSecret turns rotation on); false there means nobody turned rotation on, or an operator
        # turned it off, and a hand-made invocation is refused here. moto reports RotationEnabled false
        # unless rotation rules were set, so a step is also accepted while a rotation is evidently in
        # progress (AWSPENDING on a version that is not AWSCURRENT, decided from VersionIdsToStages since
        # moto's own check is inverted). The cost: a rotation an operator cancelled mid-way, leaving
        # AWSPENDING behind, is still accepted (and the sweep rolls it forward or clears it).
        if not (description.rotation_enabled or description.rotation_in_progress):
            raise errors.ResourceConflict(f"rotation is not enabled for secret {description.name}")
        # The token must be the version at AWSPENDING: any other is a stale token of an earlier
        # rotation that a newer one superseded (the label moved on).
        if AWSPENDING not in stages:
            raise errors.ResourceConflict(
                f"version {token} of secret {description.name} is not AWSPENDING (a stale rotation token)"
            )
        return _Target(description, client)

    def _client_of(self, description: SecretDescription) -> str:
        """The managed client a secret belongs to, or ResourceConflict if it is not one of ours.

        The bootstrap admin's secret is ours by its configured name (an operator may have created it
        without tags); any other must carry our tags for this stage, and its client's secret name must
        be this very secret.
        """
        if description.name == self.policy.admin_secret_name:
            return self.policy.admin_client_name
        tags = description.tags
        client = tags.get(CLIENT_TAG, "")
        ours = (
            tags.get(MANAGED_TAG) == "true"
            and tags.get(STAGE_TAG) == self.policy.stage
            and client != ""
            and self._secret_id(client) == description.name
        )
        if not ours:
            raise errors.ResourceConflict(
                f"secret {description.name} is not managed by zus-m2m stage {self.policy.stage}"
            )
        return client

    def _create_secret(self, target: _Target, token: str) -> str:
        # Secrets Manager retries steps: if this version already holds a value, an earlier attempt
        # stored it. Never write it again (the real service refuses another value for the same token;
        # moto would silently overwrite it with a secret from a second rotation at Zus).
        if self._store.read_version(target.secret_id, token) is not None:
            return "already-created"
        current = self._read(target, AWSCURRENT)
        if current is None or not current.app_client_id:
            # The bootstrap admin's secret is written by hand: without appClientId Zus cannot be asked.
            lacks = "an AWSCURRENT value" if current is None else "appClientId"
            raise errors.ConfigurationError(f"secret {target.secret_id} lacks {lacks}; it cannot be rotated")
        # An admin can always rotate: the new secret does not depend on the old one still working, which
        # is what recovers a lost secret. The bootstrap admin rotates its own secret with a token it
        # obtained with its current secret (cached tokens stay valid after the rotation).
        rotated = self._zus.rotate_secret(current.app_client_id, self._admin_token())
        self.checkpoint(Checkpoints.ZUS_ROTATED)
        # At once: Zus shows the new secret only in this answer, and the old one may already be dead.
        self._store.put_pending(target.secret_id, current.with_secret(rotated.client_secret), token)
        self.checkpoint(Checkpoints.PENDING_STORED)
        return "created"

    def _set_secret(self, target: _Target, token: str) -> str:
        # Zus already holds the new secret: rotate-secret in createSecret both made and set it.
        return "nothing-to-set"

    def _test_secret(self, target: _Target, token: str) -> str:
        pending = self._store.read_version(target.secret_id, token)
        if pending is None:
            # No value: Secrets Manager's test of a rotation configuration (RotateSecret with
            # RotateImmediately false), which invokes only testSecret. Nothing was rotated to test;
            # finishSecret refuses to promote a version without a value.
            return "nothing-to-test"
        self._issue_patiently(target, pending, self.policy.test_patience)
        self.checkpoint(Checkpoints.TESTED)
        return "tested"

    def _issue_patiently(self, target: _Target, credentials: ClientCredentials, patience: float) -> None:
        """Obtain a token with the credentials, through the vendor so that it is cached (the test costs
        no extra token request), retrying invalid_client with backoff for up to ``patience`` seconds."""
        deadline = self._clock() + patience
        for pause in _backoff(self.policy.first_test_pause, self.policy.max_test_pause):
            try:
                self._vendor.issue_with(target.client, credentials)
                return
            except errors.ZusInvalidClient:
                if self._clock() + pause > deadline:
                    raise
                logger.info(
                    "the new secret is not accepted yet; retrying",
                    extra={"client": target.client, "pause": pause},
                )
                self._sleep(pause)

    def _finish_secret(self, target: _Target, token: str) -> str:
        outcome = "already-current"
        if not target.already_current:
            # Never promote a version without a value (testSecret lets one pass: see there).
            if self._store.read_version(target.secret_id, token) is None:
                raise errors.ResourceConflict(
                    f"version {token} of secret {target.secret_id} holds no value; createSecret has not run"
                )
            current = target.description.version_at(AWSCURRENT)
            # AWSPREVIOUS follows AWSCURRENT's old version.
            self._store.move_stage(target.secret_id, AWSCURRENT, token, current)
            self.checkpoint(Checkpoints.CURRENT_MOVED)
            outcome = "finished"
        # Remove AWSPENDING from the new current version. The real service treats AWSPENDING on the
        # AWSCURRENT version as "no rotation in progress"; moto's inverted check treats it as one and
        # would refuse the next rotation.
        if AWSPENDING in target.description.versions.get(token, []):
            self._store.remove_stage(target.secret_id, AWSPENDING, token)
            self.checkpoint(Checkpoints.PENDING_REMOVED)
            outcome = "finished" if outcome == "finished" else "pending-label-removed"
        return outcome

    def _read(self, target: _Target, stage: str) -> ClientCredentials | None:
        # Always fresh and by stage: rotation must never act on a cached or unstaged read.
        return self._store.read(target.secret_id, stage, fresh=True)

    # --- the scheduled sweep and repair --------------------------------------------------------

    def sweep(self) -> dict[str, Any]:
        """Visit every managed secret of this stage and the bootstrap admin's: repair a stuck rotation,
        recover a lost secret, start a rotation that is due. Never starts one that is in progress.

        Returns a report (the handler logs it): the outcome per secret, by name, and counts per outcome.
        """
        outcomes: dict[str, str] = {}
        for secret_name in self._sweep_targets():
            try:
                outcome = self._sweep_one(secret_name)
            except errors.ZusM2MError as exc:
                outcome = "failed"
                self._metrics.count("RotationFailed")
                logger.warning("rotation sweep failed", extra={"secret": secret_name, "reason": exc.detail})
            outcomes[secret_name] = outcome
        counts: dict[str, int] = {}
        for outcome in outcomes.values():
            counts[outcome] = counts.get(outcome, 0) + 1
        return {"checked": len(outcomes), "counts": counts, "secrets": outcomes}

    def _sweep_targets(self) -> list[str]:
        names = [description.name for description in self._store.list_managed(self.policy.stage)]
        if self.policy.admin_secret_name and self.policy.admin_secret_name not in names:
            names.append(self.policy.admin_secret_name)
        return names

    def _sweep_one(self, secret_name: str) -> str:
        # Describe afresh: a listing may be stale, and Secrets Manager's ListSecrets lags.
        description = self._store.describe(secret_name)
        if description is None or description.deleted:
            return "absent"
        target = _Target(description, self._client_of(description))
        now = self._clock()
        if description.rotation_in_progress:
            # The real service stamps LastChangedDate when a version is added (createSecret's value);
            # moto stamps LastRotatedDate when a rotation starts. Whichever is later bounds its age.
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

    def _repair(self, target: _Target) -> str:
        """A rotation that died: roll it forward if its new secret works, else clear it away."""
        pending_version = target.description.version_at(AWSPENDING)
        assert pending_version is not None  # rotation_in_progress says so
        has_value = self._store.read_version(target.secret_id, pending_version) is not None
        working = self._first_working(target, (AWSPENDING, AWSCURRENT, AWSPREVIOUS))
        if working == AWSPENDING:
            # Zus holds the pending secret (its token is now cached): finish the rotation.
            self.run_step(FINISH_SECRET, target.secret_id, pending_version)
            logger.info("stuck rotation rolled forward", extra={"client": target.client, "version": pending_version})
            return "rolled-forward"
        self._store.remove_stage(target.secret_id, AWSPENDING, pending_version)
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

    def _recover(self, target: _Target, reason: str) -> str:
        """Zus refuses the current secret: rotate to a new one, which needs no old secret to work."""
        self._start(target)
        self._metrics.count("SecretRecoveryStarted")
        logger.error("secret recovery started", extra={"client": target.client, "reason": reason})
        return "recovery-started"

    def _start(self, target: _Target) -> None:
        description = target.description
        pending = description.version_at(AWSPENDING)
        if pending is not None and pending == description.version_at(AWSCURRENT):
            # A finished rotation's label; moto's inverted check would refuse the new rotation over it.
            self._store.remove_stage(target.secret_id, AWSPENDING, pending)
        self._store.start_rotation(target.secret_id, self.policy.rotation_function_arn or None)

    def _first_working(self, target: _Target, stages: tuple[str, ...]) -> str | None:
        """The first stage whose secret Zus accepts (the token it yields is cached), or None if Zus
        refuses every one with invalid_client. Other errors (Zus down, budget spent) propagate: they
        say nothing about the secret."""
        tried: set[str] = set()
        for stage in stages:
            credentials = self._read(target, stage)
            if credentials is None or credentials.client_secret in tried:
                continue
            tried.add(credentials.client_secret)
            try:
                self._vendor.issue_with(target.client, credentials)
            except errors.ZusInvalidClient:
                continue
            return stage
        return None


def _backoff(first: float, cap: float) -> Iterator[float]:
    pause = first
    while True:
        yield pause
        pause = min(cap, pause * 2)
