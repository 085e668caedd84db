"""Start a rotation of a managed client's secret now: Secrets Manager then invokes the rotation
function's four steps (``zus_m2m.rotation.steps``). Or, asked to repair, repair the rotation in
progress at once (``zus_m2m.rotation.repair``) instead of refusing it. Each new rotation spends Zus's
budget and replaces a secret, so rotations requested of one client are at least
``rotation_request_min_gap_seconds`` apart (a conditional write on its record item). A repair is exempt
from that gap (the 409 of a stuck rotation sends the operator to it, right after the rotation was
requested) and has a guard of its own against a storm of them: one repair of a client in flight at a
time, at least ``repair_request_min_gap_seconds`` apart (another conditional write)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from zus_m2m import errors
from zus_m2m.admin_values import RotationRequest
from zus_m2m.ports import RequestGuards, Runtime, SecretStore
from zus_m2m.provisioning.policy import ProvisioningPolicy
from zus_m2m.provisioning.queries import ClientQueries
from zus_m2m.rotation.repair import RotationRepair
from zus_m2m.values import SecretDescription

logger = logging.getLogger(__name__)

NEW_ROTATION = RotationRequest()


@dataclass(eq=False)
class StartRotation:
    queries: ClientQueries
    guards: RequestGuards
    secrets: SecretStore
    repair: RotationRepair
    policy: ProvisioningPolicy
    runtime: Runtime

    def __call__(self, name: str, request: RotationRequest = NEW_ROTATION) -> dict[str, Any]:
        """The client must exist (ResourceNotFound) and have no rotation requested within the minimum gap
        (Throttled). A rotation in progress is a conflict, unless the request asks for its repair: then
        it is rolled forward, or replaced by a new rotation."""
        record = self.queries.record(name)
        secret_id = self.policy.naming.secret_id(name)
        description = self.secrets.describe(secret_id)
        if description is None or description.deleted:
            raise errors.ResourceNotFound(f"app client {name!r} has no secret to rotate")
        if description.rotation_in_progress and not request.repair:
            gap = self.policy.repair_request_min_gap_seconds
            raise errors.ResourceConflict(
                f'a rotation of {name!r} is already in progress; ask with {{"repair": true}} to repair it now '
                f"(one repair at a time, at most one every {gap:.0f} s)"
            )
        now = self.runtime.clock()
        if description.rotation_in_progress:
            return {
                "name": record.name,
                "secretArn": description.arn,
                "rotation": self._guarded_repair(name, description, now),
            }
        limited = self.policy.rotation_request_min_gap_seconds > 0  # 0: no limit (RotationRequestMinGapSeconds)
        if limited:
            self._note_request(name, now)
        try:
            outcome = self._start(secret_id, name)
        except errors.ZusM2MError:
            if limited:
                self._forget_request(name, now)
            raise
        return {"name": record.name, "secretArn": description.arn, "rotation": outcome}

    def _start(self, secret_id: str, name: str) -> str:
        self.secrets.start_rotation(secret_id, self.policy.rotation_function_arn or None)
        self.runtime.metrics.count("RotationStarted")
        logger.info("rotation started", extra={"client": name})
        return "started"

    def _guarded_repair(self, name: str, description: SecretDescription, now: float) -> str:
        policy = self.policy
        wait = self.guards.request_repair(name, now, policy.repair_request_min_gap_seconds, policy.repair_lease_seconds)
        if wait is None:
            raise errors.ResourceNotFound(f"no managed app client named {name!r}")
        if wait > 0:
            self.runtime.metrics.count("RotationRequestThrottled")
            raise errors.Throttled(
                f"a repair of {name!r}'s rotation is in flight or was requested less than "
                f"{policy.repair_request_min_gap_seconds:.0f} s ago; retry later",
                retry_after=wait,
            )
        try:
            outcome = self.repair.repair(self.repair.steps.target_of(description))
        finally:
            try:
                self.guards.finish_repair(name, now)
            except errors.ZusM2MError as exc:  # its lease runs out by itself
                logger.warning("could not end a repair's lease", extra={"reason": exc.detail})
        logger.info("rotation repaired on request", extra={"client": name, "outcome": outcome})
        return outcome

    def _note_request(self, name: str, now: float) -> None:
        gap = self.policy.rotation_request_min_gap_seconds
        wait = self.guards.request_rotation(name, now, gap)
        if wait is None:
            raise errors.ResourceNotFound(f"no managed app client named {name!r}")
        if wait > 0:
            self.runtime.metrics.count("RotationRequestThrottled")
            raise errors.Throttled(
                f"a rotation of {name!r} was requested less than {gap:.0f} s ago; retry later", retry_after=wait
            )

    def _forget_request(self, name: str, at: float) -> None:
        """The rotation did not start: its request does not count against the gap."""
        try:
            self.guards.forget_rotation_request(name, at)
        except errors.ZusM2MError as exc:
            logger.warning("could not forget a rotation request", extra={"reason": exc.detail})
