"""Create a managed client: the guide's steps 1-4. Look up the role, create the app client at Zus,
store its credentials in Secrets Manager, then prove them by having a token issued (through token
vending, so the token is cached rather than wasted) and reading the client with it.

Idempotency and crash safety rest on one DynamoDB item per name (``client#<name>`` / ``record``):

* A create first takes a *claim* on the name by conditional write. The claim has an owner and an
  expiry longer than a function can run, so a live creator is never overtaken, and a dead one's claim
  is taken over by the next request once it expires. Concurrent identical requests wait for the
  claim's holder and answer with the record it writes; another role for the same name is a conflict.
* Before asking Zus to create anything the claim is marked "create started". Zus shows a secret once,
  so an attempt that died (or timed out) after that mark may have left a client at Zus without a
  stored secret. The attempt that takes the claim over looks for that client by name, adopting it
  only if Zus created it after the name was first claimed (a same-named client made by someone else
  earlier is never hijacked), and recovers a usable secret with rotate-secret unless the secret it
  stored before dying is still there. Never a second client, never an orphan.
* Every external step is followed by ``checkpoint(name)`` (``CreateCheckpoints``).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from zus_m2m import errors
from zus_m2m.admin_values import AppClient, CreateRequest, Role
from zus_m2m.backoff import backoff
from zus_m2m.ports import ClientRecords, Runtime
from zus_m2m.provisioning.admin import BootstrapAdmin
from zus_m2m.provisioning.policy import ProvisioningPolicy
from zus_m2m.provisioning.secret_keeper import SecretKeeper
from zus_m2m.values import ClientCredentials, ClientRecord, RecordItem

logger = logging.getLogger(__name__)


class CreateCheckpoints:
    """The names ``checkpoint`` is called with, after each external step of a create."""

    CLAIMED = "claimed"
    APP_CLIENT_CREATED = "app-client-created"
    SECRET_RECOVERED = "secret-recovered"
    SECRET_STORED = "secret-stored"
    VERIFIED = "verified"
    RECORD_WRITTEN = "record-written"


@dataclass(eq=False)
class CreateClient:
    records: ClientRecords
    admin: BootstrapAdmin
    keeper: SecretKeeper
    policy: ProvisioningPolicy
    runtime: Runtime

    def __call__(self, request: CreateRequest) -> tuple[ClientRecord, bool]:
        """The client's record, and True when this call created it (201) or False when it existed (200)."""
        name, role_name = request.name, request.role_name
        if name == self.policy.admin_client_name:
            raise errors.ResourceConflict(f"{name!r} is the bootstrap admin client's name and cannot be provisioned")
        if role_name not in self.policy.allowed_roles:
            allowed = ", ".join(self.policy.allowed_roles)
            raise errors.UnprocessableRequest(f"role {role_name!r} is not one this stack allows; allowed: {allowed}")
        consumers = request.consumers or ()
        owner = str(uuid.uuid4())
        deadline = self.runtime.clock() + self.policy.wait_seconds
        for pause in backoff(0.05, 0.5):
            now = self.runtime.clock()
            item = self.records.get(name)
            claimed: RecordItem | None = None
            if item is None:
                claimed = self.records.claim(
                    name, role_name, consumers, owner, now, now + self.policy.claim_seconds, previous_owner=None
                )
            elif item.status == "creating" and item.claim_owner == owner:
                claimed = item  # our claim write succeeded though its answer was lost (an SDK retry)
            elif item.status == "active" and item.record is not None:
                return _existing(item.record, request), False
            elif item.status != "creating":
                raise errors.ResourceConflict(f"app client {name!r} is being deleted; retry the DELETE to finish it")
            elif item.role_name != role_name and (item.claim_live(now) or item.create_started):
                raise errors.ResourceConflict(
                    f"app client {name!r} is being created with role {item.role_name!r}, not {role_name!r}"
                )
            elif not item.claim_live(now):
                claimed = self.records.claim(
                    name,
                    role_name,
                    consumers,
                    owner,
                    now,
                    now + self.policy.claim_seconds,
                    previous_owner=item.claim_owner,
                )
            if claimed is not None:
                return self._create_under_claim(claimed, owner), True
            if now + pause > deadline:
                wait = item.claim_until - now if item is not None else 1.0
                raise errors.TemporarilyUnavailable(
                    f"another request is creating app client {name!r}; retry shortly", retry_after=max(1.0, wait)
                )
            self.runtime.metrics.count("ProvisioningClaimWait")
            self.runtime.sleep(pause)
        raise AssertionError("unreachable: backoff never ends")

    def _create_under_claim(self, item: RecordItem, owner: str) -> ClientRecord:
        try:
            return self._build(item, owner)
        except errors.ZusM2MError as exc:
            try:
                self.records.release(item.name, owner)
            except errors.ZusM2MError as release_error:  # the claim then simply expires
                logger.warning("could not release a claim", extra={"client": item.name, "reason": release_error.detail})
            raise self.admin.translated(exc) from exc

    def _build(self, item: RecordItem, owner: str) -> ClientRecord:
        name = item.name
        self.runtime.checkpoint(CreateCheckpoints.CLAIMED)
        admin = self.admin.bearer()
        role = self.admin.zus.find_role(item.role_name, admin)
        found = self._find_own_app_client(item, role, admin) if item.create_started else None
        if found is None:
            app_client, client_secret = self._create_at_zus(item, owner, role, admin)
        else:
            app_client = found
            client_secret = self.keeper.stored_secret(name, app_client) or self._rotated_secret(app_client, admin)
        credentials = ClientCredentials(
            name=name,
            app_client_id=app_client.id,
            client_id=app_client.client_id,
            client_secret=client_secret,
            role_id=role.id,
            role_name=role.name,
            audience=self.policy.audience,
        )
        arn = self.keeper.store(credentials)
        self.runtime.checkpoint(CreateCheckpoints.SECRET_STORED)
        self.keeper.configure_rotation(name)
        self.keeper.prove(name, app_client)
        self.runtime.checkpoint(CreateCheckpoints.VERIFIED)
        created_at = app_client.created_at if isinstance(app_client.created_at, int) else int(self.runtime.clock())
        record = ClientRecord(
            name, app_client.id, app_client.client_id, role.id, role.name, arn, created_at, item.consumers
        )
        if not self.records.complete(record, owner):
            current = self.records.get(name)
            if current is not None and current.record is not None and current.record.app_client_id == app_client.id:
                return current.record
            raise errors.TemporarilyUnavailable(f"lost the claim on {name!r} to another request", retry_after=1.0)
        self.runtime.checkpoint(CreateCheckpoints.RECORD_WRITTEN)
        logger.info("app client provisioned", extra={"client": name, "app_client_id": app_client.id})
        return record

    def _create_at_zus(self, item: RecordItem, owner: str, role: Role, admin: str) -> tuple[AppClient, str]:
        """Step 2, once: a retry whose predecessor's create may still land at Zus waits for it first."""
        name = item.name
        if item.create_started_at is not None:
            settling = item.create_started_at + self.policy.create_settle_seconds - self.runtime.clock()
            if settling > 0:
                raise errors.TemporarilyUnavailable(
                    f"an earlier create of {name!r} may still be completing at Zus; retry shortly",
                    retry_after=settling,
                )
        if not self.records.mark_create_started(name, owner, self.runtime.clock()):
            raise errors.TemporarilyUnavailable(f"lost the claim on {name!r} to another request", retry_after=1.0)
        try:
            created = self.admin.zus.create_app_client(name, role.id, admin)
        except errors.ZusError as exc:
            if _refused(exc):  # Zus said no: no client can land later, so no retry need wait for one
                self.records.forget_create_started(name, owner)
            raise
        self.runtime.checkpoint(CreateCheckpoints.APP_CLIENT_CREATED)
        self.records.note_app_client(name, owner, created.app_client.id)
        self.runtime.metrics.count("AppClientCreated")
        logger.info("app client created at Zus", extra={"client": name, "app_client_id": created.app_client.id})
        return created.app_client, created.client_secret

    def _find_own_app_client(self, item: RecordItem, role: Role, admin: str) -> AppClient | None:
        """The Zus client an earlier attempt under this claim created, if any."""
        if item.app_client_id:
            try:
                known = self.admin.zus.get_app_client(item.app_client_id, admin)
            except errors.ZusNotFound:
                known = None
            if known is not None and known.name == item.name:
                return known
        earliest = item.claimed_at - self.policy.clock_skew_seconds
        candidates = sorted(
            (
                client
                for client in self.admin.zus.list_app_clients(admin)
                if client.name == item.name
                and client.role_id in (None, role.id)
                and isinstance(client.created_at, int)
                and client.created_at >= earliest
            ),
            key=lambda client: (client.created_at or 0, client.id),
        )
        if not candidates:
            return None
        if len(candidates) > 1:
            logger.warning(
                "more than one Zus app client matches an interrupted create; adopting the earliest",
                extra={"client": item.name, "app_client_ids": [client.id for client in candidates]},
            )
        self.runtime.metrics.count("AppClientAdopted")
        logger.info("adopting the app client of an interrupted create", extra={"client": item.name})
        return candidates[0]

    def _rotated_secret(self, app_client: AppClient, admin: str) -> str:
        """An adopted client whose secret was lost: Zus shows a new one (rotate-secret needs no old one)."""
        rotated = self.admin.zus.rotate_secret(app_client.id, admin)
        self.runtime.checkpoint(CreateCheckpoints.SECRET_RECOVERED)
        self.runtime.metrics.count("AppClientSecretRecovered")
        logger.info("recovered an interrupted create's secret with rotate-secret", extra={"client": app_client.name})
        return rotated.client_secret


def _existing(record: ClientRecord, request: CreateRequest) -> ClientRecord:
    """The record a repeated create answers with: its role must be the one asked for, and so must its
    consumers if the request names some (PATCH changes consumers; a create does not)."""
    if record.role_name != request.role_name:
        raise errors.ResourceConflict(
            f"app client {record.name!r} exists with role {record.role_name!r}, not {request.role_name!r}"
        )
    if request.consumers is not None and request.consumers != record.consumers:
        raise errors.ResourceConflict(
            f"app client {record.name!r} exists with other consumers; change them with PATCH /app-clients/{record.name}"
        )
    return record


def _refused(error: errors.ZusError) -> bool:
    """Zus answered that it did not act: a 4xx (429 included) or a 503. A 500, 502 or 504, a timeout or a
    dropped connection leave it unknown whether the client was created."""
    return error.status is not None and (error.status < 500 or error.status == 503)
