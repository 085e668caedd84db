"""Provisioning: create, inspect, rotate and retire managed Zus app clients (SPEC.md, service API).

The create flow follows the guide's steps 1-4: look up the role, create the app client at Zus, store
its credentials in Secrets Manager, then prove them by obtaining a token (through the token vendor,
so the token is cached rather than wasted) and reading the client with it.

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
* Every external step is followed by ``checkpoint(step)``: a no-op in production, a hook with which
  tests kill the flow at a chosen step.

Nothing here imports boto3, requests or event shapes; the collaborators are the Protocols below.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from zus_m2m import errors, validation
from zus_m2m.credentials import ClientCredentials
from zus_m2m.ports import AWSCURRENT, CachedToken, Clock, MetricsSink, SecretStore, TokenState
from zus_m2m.zus.models import AppClient, AppClientSecret, Role

logger = logging.getLogger(__name__)

DEFAULT_ROLE = "Builder Admin"
CREATE_FIELDS = ("name", "roleName")
_ROLE_NAME_MAX = 128
_NAMESPACE = uuid.UUID("5b0c7f5e-52a4-4f3e-9a43-0d1b8e0f6a11")

Status = Literal["creating", "active", "deleting"]
Checkpoint = Callable[[str], None]


class Steps:
    """The names ``checkpoint`` is called with, after each external step."""

    CLAIMED = "claimed"
    APP_CLIENT_CREATED = "app-client-created"
    SECRET_RECOVERED = "secret-recovered"
    SECRET_STORED = "secret-stored"
    VERIFIED = "verified"
    RECORD_WRITTEN = "record-written"
    DELETE_MARKED = "delete-marked"
    APP_CLIENT_DELETED = "app-client-deleted"
    SECRET_DELETION_SCHEDULED = "secret-deletion-scheduled"
    TOKENS_PURGED = "tokens-purged"


class AdminForbidden(errors.TemporarilyUnavailable):
    """Zus refused an admin call with 403: the bootstrap admin client lacks the Builder Admin role."""


# --- values -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CreateRequest:
    name: str
    role_name: str = DEFAULT_ROLE


@dataclass(frozen=True)
class ClientRecord:
    """What the service remembers of a managed client; never its secret."""

    name: str
    app_client_id: str
    client_id: str
    role_id: str
    role_name: str
    secret_arn: str
    created_at: int

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "appClientId": self.app_client_id,
            "clientId": self.client_id,
            "roleId": self.role_id,
            "roleName": self.role_name,
            "secretArn": self.secret_arn,
            "createdAt": self.created_at,
        }


@dataclass(frozen=True)
class RecordItem:
    """The record item of one name: a claim being created, an active client, or one being deleted."""

    name: str
    status: Status
    role_name: str
    record: ClientRecord | None = None  # set when active or deleting
    claim_owner: str | None = None
    claim_until: float = 0.0
    # When the name was first claimed; Zus clients created before it are not this flow's.
    claimed_at: float = 0.0
    # When we last asked Zus to create the client: from then on a client may exist at Zus.
    create_started_at: float | None = None
    # The Zus client created under the claim, once known.
    app_client_id: str | None = None

    def claim_live(self, now: float) -> bool:
        return self.claim_owner is not None and self.claim_until > now

    @property
    def create_started(self) -> bool:
        return self.create_started_at is not None


@dataclass(frozen=True)
class ProvisioningPolicy:
    stage: str
    audience: str
    admin_client_name: str
    kms_key_id: str = ""
    recovery_window_days: int = 7
    rotation_interval_days: int = 30
    rotation_function_arn: str = ""
    token_budget_per_hour: int = 100
    # Longer than the function's timeout (29 s), so a live creator always keeps its claim.
    claim_seconds: float = 40.0
    # How long an identical request waits for the claim's holder before answering 503.
    wait_seconds: float = 20.0
    # Tolerated clock difference between us and Zus when comparing createdAt with the claim.
    clock_skew_seconds: float = 5.0
    # A create we gave up on (a timeout) may still land at Zus for as long as the Zus client waits for
    # an answer (3 s connect + 10 s read); until then a retry that finds no client must not make one.
    create_settle_seconds: float = 15.0


# --- collaborators --------------------------------------------------------------------------------


class ClientRecords(Protocol):
    """The record items (docs/design.md); every write that decides something is conditional."""

    def get(self, name: str) -> RecordItem | None:
        """The item, read consistently, or None."""
        ...

    def list_active(self) -> list[ClientRecord]: ...

    def claim(
        self, name: str, role_name: str, owner: str, now: float, until: float, *, previous_owner: str | None
    ) -> RecordItem | None:
        """Take the claim: on a free name (``previous_owner`` None), or over ``previous_owner``'s
        expired claim. Keeps the first ``claimed_at``. None when someone else got there first."""
        ...

    def mark_create_started(self, name: str, owner: str, now: float) -> bool:
        """Record that a Zus client may now exist; False if ``owner`` no longer holds the claim."""
        ...

    def forget_create_started(self, name: str, owner: str) -> None:
        """Zus refused the create: no client of this attempt exists."""
        ...

    def note_app_client(self, name: str, owner: str, app_client_id: str) -> bool: ...

    def complete(self, record: ClientRecord, owner: str) -> bool:
        """Turn ``owner``'s claim into the active record; False if the claim was lost."""
        ...

    def release(self, name: str, owner: str) -> None:
        """Give up a claim after a failure: forget it if nothing was started at Zus, otherwise leave
        it, expired, for the next attempt to take over at once."""
        ...

    def mark_deleting(self, name: str) -> bool:
        """Active (or already deleting) → deleting; False if the item is in another state."""
        ...

    def delete(self, name: str) -> None:
        """Remove a deleting item."""
        ...


class ZusAdmin(Protocol):
    """The Zus calls provisioning makes (``ZusClient`` implements them)."""

    def find_role(self, name: str, bearer: str) -> Role: ...

    def create_app_client(self, name: str, role_id: str, bearer: str) -> AppClientSecret: ...

    def list_app_clients(self, bearer: str) -> list[AppClient]: ...

    def get_app_client(self, app_client_id: str, bearer: str) -> AppClient: ...

    def delete_app_client(self, app_client_id: str, bearer: str) -> None: ...

    def rotate_secret(self, app_client_id: str, bearer: str) -> AppClientSecret: ...


class ProvisioningSecrets(SecretStore, Protocol):
    """The secret store, plus the writes only provisioning makes."""

    def configure_rotation(self, secret_id: str, rotation_function_arn: str, interval_days: int) -> None: ...

    def restore(self, secret_id: str) -> None:
        """Cancel a scheduled deletion."""
        ...

    def put_current(self, secret_id: str, credentials: ClientCredentials, version_id: str) -> None:
        """Store credentials as a new AWSCURRENT version."""
        ...


class TokenCache(Protocol):
    def get(self, client: str, *, consistent: bool = False) -> TokenState: ...

    def budget_used(self, client: str, now: float) -> int: ...

    def purge(self, client: str) -> None: ...


class TokenVerifier(Protocol):
    def issue_with(self, client: str, credentials: ClientCredentials) -> CachedToken: ...


# --- the create body ------------------------------------------------------------------------------


def parse_create_request(body: str | None, content_type: str | None) -> CreateRequest:
    """The ``POST /app-clients`` body: ``{"name": ..., "roleName": ...}`` and nothing else."""
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type and media_type != "application/json" and not media_type.endswith("+json"):
        raise errors.InvalidRequest(f"Content-Type must be application/json, not {media_type!r}")
    if not body or not body.strip():
        raise errors.InvalidRequest("the body must be a JSON object with name and optionally roleName")
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser goes ("[[[[…")
        raise errors.InvalidRequest("the body is not valid JSON") from None
    if not isinstance(document, dict):
        raise errors.InvalidRequest("the body must be a JSON object with name and optionally roleName")
    unknown = sorted(str(key) for key in document if key not in CREATE_FIELDS)
    if unknown:
        raise errors.InvalidRequest(f"unknown field(s): {', '.join(unknown)}; allowed: {', '.join(CREATE_FIELDS)}")
    if "name" not in document:
        raise errors.InvalidRequest("name is required")
    name = validation.client_name(document["name"])
    role_name = document.get("roleName", DEFAULT_ROLE)
    if not isinstance(role_name, str) or not role_name.strip() or len(role_name) > _ROLE_NAME_MAX:
        raise errors.InvalidRequest(f"roleName must be a non-empty string of at most {_ROLE_NAME_MAX} characters")
    return CreateRequest(name=name, role_name=role_name)


# --- the service ----------------------------------------------------------------------------------


def _no_checkpoint(step: str) -> None:
    return None


class Provisioner:
    def __init__(
        self,
        records: ClientRecords,
        secrets: ProvisioningSecrets,
        zus: ZusAdmin,
        admin_token: Callable[[], str],
        verifier: TokenVerifier,
        tokens: TokenCache,
        secret_id: Callable[[str], str],
        secret_tags: Callable[[str], dict[str, str]],
        policy: ProvisioningPolicy,
        metrics: MetricsSink,
        *,
        clock: Clock = time.time,
        sleep: Callable[[float], None] = time.sleep,
        checkpoint: Checkpoint | None = None,
    ) -> None:
        self._records = records
        self._secrets = secrets
        self._zus = zus
        self._admin_token = admin_token
        self._verifier = verifier
        self._tokens = tokens
        self._secret_id = secret_id
        self._secret_tags = secret_tags
        self.policy = policy
        self._metrics = metrics
        self._clock = clock
        self._sleep = sleep
        self.checkpoint: Checkpoint = checkpoint or _no_checkpoint

    # --- create -----------------------------------------------------------------------------

    def create(self, request: CreateRequest) -> tuple[ClientRecord, bool]:
        """The client's record, and True when this call created it (201) or False when it existed (200)."""
        name, role_name = request.name, request.role_name
        if name == self.policy.admin_client_name:
            raise errors.ResourceConflict(f"{name!r} is the bootstrap admin client's name and cannot be provisioned")
        owner = str(uuid.uuid4())
        deadline = self._clock() + self.policy.wait_seconds
        for pause in _backoff(0.05, 0.5):
            now = self._clock()
            item = self._records.get(name)
            claimed: RecordItem | None = None
            if item is None:
                claimed = self._records.claim(
                    name, role_name, owner, now, now + self.policy.claim_seconds, previous_owner=None
                )
            elif item.status == "creating" and item.claim_owner == owner:
                claimed = item  # our claim write succeeded though its answer was lost (an SDK retry)
            elif item.status == "active" and item.record is not None:
                return self._existing(item.record, role_name), False
            elif item.status != "creating":
                raise errors.ResourceConflict(f"app client {name!r} is being deleted; retry the DELETE to finish it")
            elif item.role_name != role_name and (item.claim_live(now) or item.create_started):
                raise errors.ResourceConflict(
                    f"app client {name!r} is being created with role {item.role_name!r}, not {role_name!r}"
                )
            elif not item.claim_live(now):
                claimed = self._records.claim(
                    name, role_name, owner, now, now + self.policy.claim_seconds, previous_owner=item.claim_owner
                )
            if claimed is not None:
                return self._create_under_claim(claimed, owner), True
            if now + pause > deadline:
                wait = item.claim_until - now if item is not None else 1.0
                raise errors.TemporarilyUnavailable(
                    f"another request is creating app client {name!r}; retry shortly", retry_after=max(1.0, wait)
                )
            self._metrics.count("ProvisioningClaimWait")
            self._sleep(pause)
        raise AssertionError("unreachable: _backoff never ends")

    def _existing(self, record: ClientRecord, role_name: str) -> ClientRecord:
        if record.role_name != role_name:
            raise errors.ResourceConflict(
                f"app client {record.name!r} exists with role {record.role_name!r}, not {role_name!r}"
            )
        return record

    def _create_under_claim(self, item: RecordItem, owner: str) -> ClientRecord:
        try:
            return self._build(item, owner)
        except errors.ZusM2MError as exc:
            try:
                self._records.release(item.name, owner)
            except errors.ZusM2MError as release_error:  # the claim then simply expires
                logger.warning("could not release a claim", extra={"client": item.name, "reason": release_error.detail})
            raise self._translated(exc) from exc

    def _build(self, item: RecordItem, owner: str) -> ClientRecord:
        name = item.name
        self.checkpoint(Steps.CLAIMED)
        admin = self._admin()
        role = self._zus.find_role(item.role_name, admin)
        secret_id = self._secret_id(name)
        found = self._find_own_app_client(item, role, admin) if item.create_started else None
        if found is None:
            if item.create_started_at is not None:
                settling = item.create_started_at + self.policy.create_settle_seconds - self._clock()
                if settling > 0:
                    raise errors.TemporarilyUnavailable(
                        f"an earlier create of {name!r} may still be completing at Zus; retry shortly",
                        retry_after=settling,
                    )
            if not self._records.mark_create_started(name, owner, self._clock()):
                raise errors.TemporarilyUnavailable(f"lost the claim on {name!r} to another request", retry_after=1.0)
            try:
                created = self._zus.create_app_client(name, role.id, admin)
            except errors.ZusError as exc:
                if _refused(exc):  # Zus said no: no client can land later, so no retry need wait for one
                    self._records.forget_create_started(name, owner)
                raise
            self.checkpoint(Steps.APP_CLIENT_CREATED)
            app_client, client_secret = created.app_client, created.client_secret
            self._records.note_app_client(name, owner, app_client.id)
            self._metrics.count("AppClientCreated")
            logger.info("app client created at Zus", extra={"client": name, "app_client_id": app_client.id})
        else:
            app_client = found
            client_secret = self._recover_secret(secret_id, app_client, admin)
        credentials = ClientCredentials(
            name=name,
            app_client_id=app_client.id,
            client_id=app_client.client_id,
            client_secret=client_secret,
            role_id=role.id,
            role_name=role.name,
            audience=self.policy.audience,
        )
        arn = self._store_secret(secret_id, credentials)
        self.checkpoint(Steps.SECRET_STORED)
        if self.policy.rotation_function_arn:
            self._secrets.configure_rotation(
                secret_id, self.policy.rotation_function_arn, self.policy.rotation_interval_days
            )
        self._verify(secret_id, app_client)
        self.checkpoint(Steps.VERIFIED)
        created_at = app_client.created_at if isinstance(app_client.created_at, int) else int(self._clock())
        record = ClientRecord(name, app_client.id, app_client.client_id, role.id, role.name, arn, created_at)
        if not self._records.complete(record, owner):
            current = self._records.get(name)
            if current is not None and current.record is not None and current.record.app_client_id == app_client.id:
                return current.record
            raise errors.TemporarilyUnavailable(f"lost the claim on {name!r} to another request", retry_after=1.0)
        self.checkpoint(Steps.RECORD_WRITTEN)
        logger.info("app client provisioned", extra={"client": name, "app_client_id": app_client.id})
        return record

    def _find_own_app_client(self, item: RecordItem, role: Role, admin: str) -> AppClient | None:
        """The Zus client an earlier attempt under this claim created, if any."""
        if item.app_client_id:
            try:
                known = self._zus.get_app_client(item.app_client_id, admin)
            except errors.ZusNotFound:
                known = None
            if known is not None and known.name == item.name:
                return known
        earliest = item.claimed_at - self.policy.clock_skew_seconds
        candidates = sorted(
            (
                client
                for client in self._zus.list_app_clients(admin)
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
        self._metrics.count("AppClientAdopted")
        logger.info("adopting the app client of an interrupted create", extra={"client": item.name})
        return candidates[0]

    def _recover_secret(self, secret_id: str, app_client: AppClient, admin: str) -> str:
        """The adopted client's secret: the one stored before the crash, or a new one from rotate-secret."""
        description = self._secrets.describe(secret_id)
        if description is not None and not description.deleted:
            stored = self._secrets.read(secret_id, AWSCURRENT, fresh=True)
            if stored is not None and (stored.app_client_id, stored.client_id) == (app_client.id, app_client.client_id):
                return stored.client_secret
        rotated = self._zus.rotate_secret(app_client.id, admin)
        self.checkpoint(Steps.SECRET_RECOVERED)
        self._metrics.count("AppClientSecretRecovered")
        logger.info("recovered an interrupted create's secret with rotate-secret", extra={"client": app_client.name})
        return rotated.client_secret

    def _store_secret(self, secret_id: str, credentials: ClientCredentials) -> str:
        """Store the credentials as the secret's current version; idempotent. Returns the secret's ARN."""
        description = self._secrets.describe(secret_id)
        if description is None:
            return self._secrets.create(
                secret_id,
                credentials,
                kms_key_id=self.policy.kms_key_id,
                tags=self._secret_tags(credentials.name),
                request_token=request_token(credentials.name, credentials.app_client_id),
            )
        if description.deleted:
            # A client of the same name was deleted within the recovery window: reuse its secret.
            self._secrets.restore(secret_id)
        else:
            stored = self._secrets.read(secret_id, AWSCURRENT, fresh=True)
            if stored == credentials:
                return description.arn
        self._secrets.put_current(secret_id, credentials, str(uuid.uuid4()))
        return description.arn

    def _verify(self, secret_id: str, app_client: AppClient) -> None:
        """Steps 3-4 with what Secrets Manager now holds: a token from the stored secret, then a read."""
        stored = self._secrets.read(secret_id, AWSCURRENT, fresh=True)
        if stored is None or stored.app_client_id != app_client.id:
            raise errors.StoreUnavailable(f"the secret {secret_id} does not hold the new client's credentials yet")
        token = self._verifier.issue_with(stored.name, stored)
        read = self._zus.get_app_client(app_client.id, token.access_token)
        if read.id != app_client.id or read.client_id != app_client.client_id:
            raise errors.ZusError("get app client", 200, "the app client read back is not the one created")

    # --- read -------------------------------------------------------------------------------

    def get(self, name: str) -> dict[str, Any]:
        """The record, its rotation dates, its token cache state and hourly budget; nothing secret."""
        return self._details(self._record(name))

    def list_details(self) -> list[dict[str, Any]]:
        """Every managed client as ``get`` shows it (a few reads per client: fine at one team's scale)."""
        return [self._details(record) for record in self.list_clients()]

    def _details(self, record: ClientRecord) -> dict[str, Any]:
        description = self._secrets.describe(self._secret_id(record.name))
        now = self._clock()
        state = self._tokens.get(record.name)
        token = state.token if state.token is not None and state.token.seconds_left(now) > 0 else None
        last = next_due = None
        if description is not None:
            last = _epoch(description.last_rotated)
            next_due = self._next_rotation(description.last_rotated, description.next_rotation, description.created)
        return {
            **record.to_json(),
            "lastRotation": last,
            "nextRotation": next_due,
            "token": {"cached": token is not None, "expiresAt": int(token.expires_at) if token else None},
            "budget": {
                "usedLastHour": self._tokens.budget_used(record.name, now),
                "limit": self.policy.token_budget_per_hour,
            },
        }

    def list_clients(self) -> list[ClientRecord]:
        records = {record.name: record for record in self._records.list_active()}
        admin = self._admin_record()
        if admin is not None:
            records[admin.name] = admin
        return [records[name] for name in sorted(records)]

    def _record(self, name: str) -> ClientRecord:
        if name == self.policy.admin_client_name:
            admin = self._admin_record()
            if admin is not None:
                return admin
        item = self._records.get(name)
        if item is None or item.status != "active" or item.record is None:
            raise errors.ResourceNotFound(f"no managed app client named {name!r}")
        return item.record

    def _admin_record(self) -> ClientRecord | None:
        """The bootstrap admin, made by hand, has no record: it is described by its secret."""
        secret_id = self._secret_id(self.policy.admin_client_name)
        description = self._secrets.describe(secret_id)
        if description is None or description.deleted:
            return None
        credentials = self._secrets.read(secret_id, AWSCURRENT)
        if credentials is None:
            return None
        return ClientRecord(
            name=self.policy.admin_client_name,
            app_client_id=credentials.app_client_id,
            client_id=credentials.client_id,
            role_id=credentials.role_id,
            role_name=credentials.role_name,
            secret_arn=description.arn,
            created_at=int(description.created or 0),
        )

    def _next_rotation(self, last: float | None, scheduled: float | None, created: float | None) -> int | None:
        if scheduled is not None:
            return int(scheduled)
        since = last if last is not None else created
        return None if since is None else int(since + self.policy.rotation_interval_days * 86400)

    # --- rotate -----------------------------------------------------------------------------

    def start_rotation(self, name: str) -> dict[str, Any]:
        """Ask Secrets Manager to rotate the client's secret now (the rotation function does the work)."""
        record = self._record(name)
        secret_id = self._secret_id(name)
        description = self._secrets.describe(secret_id)
        if description is None or description.deleted:
            raise errors.ResourceNotFound(f"app client {name!r} has no secret to rotate")
        if description.rotation_in_progress:
            raise errors.ResourceConflict(f"a rotation of {name!r} is already in progress")
        self._secrets.start_rotation(secret_id, self.policy.rotation_function_arn or None)
        self._metrics.count("RotationStarted")
        logger.info("rotation started", extra={"client": name})
        return {"name": record.name, "secretArn": description.arn, "rotation": "started"}

    # --- delete -----------------------------------------------------------------------------

    def delete(self, name: str) -> None:
        """Delete the Zus client, schedule the secret's deletion, purge cached tokens, forget the record.

        Each step is idempotent and the record stays (as "deleting") until the last, so a retry after
        a crash anywhere finishes the job.
        """
        if name == self.policy.admin_client_name:
            raise errors.ResourceConflict("the bootstrap admin client cannot be deleted through the service")
        item = self._records.get(name)
        if item is None:
            raise errors.ResourceNotFound(f"no managed app client named {name!r}")
        if item.status == "creating" or item.record is None:
            raise errors.ResourceConflict(
                f"app client {name!r} is being created; repeat the create to finish it, then delete it"
            )
        try:
            if not self._records.mark_deleting(name):
                raise errors.ResourceConflict(f"app client {name!r} changed while being deleted; retry")
            self.checkpoint(Steps.DELETE_MARKED)
            admin = self._admin()
            try:
                self._zus.delete_app_client(item.record.app_client_id, admin)
            except errors.ZusNotFound:
                logger.info("the Zus app client was already gone", extra={"client": name})
            self.checkpoint(Steps.APP_CLIENT_DELETED)
            secret_id = self._secret_id(name)
            description = self._secrets.describe(secret_id)
            if description is not None and not description.deleted:
                self._secrets.schedule_deletion(secret_id, self.policy.recovery_window_days)
            self.checkpoint(Steps.SECRET_DELETION_SCHEDULED)
            self._tokens.purge(name)
            self.checkpoint(Steps.TOKENS_PURGED)
            self._records.delete(name)
        except errors.ZusM2MError as exc:
            raise self._translated(exc) from exc
        self._metrics.count("AppClientDeleted")
        logger.info("app client deleted", extra={"client": name, "app_client_id": item.record.app_client_id})

    # --- helpers ----------------------------------------------------------------------------

    def _admin(self) -> str:
        try:
            return self._admin_token()
        except errors.ResourceNotFound as exc:
            raise errors.ConfigurationError(
                f"the bootstrap admin secret for {self.policy.admin_client_name!r} is missing"
            ) from exc

    def _translated(self, error: errors.ZusM2MError) -> errors.ZusM2MError:
        """Dependency failures become 503 with Retry-After; a 403 names the admin call Zus refused."""
        if isinstance(error, errors.ZusForbidden):
            return AdminForbidden(
                f"Zus refused the {error.operation} call with 403 ({error.reason}): the admin app client "
                f"{self.policy.admin_client_name!r} needs the Builder Admin role",
                retry_after=300.0,
            )
        if error.http_status == 429:
            return errors.TemporarilyUnavailable(error.detail, retry_after=error.retry_after or 5.0)
        return error


def request_token(name: str, app_client_id: str) -> str:
    """The idempotency token of a secret's creation: the same client always yields the same token."""
    return str(uuid.uuid5(_NAMESPACE, f"{name}\n{app_client_id}"))


def _epoch(value: float | None) -> int | None:
    return None if value is None else int(value)


def _backoff(first: float, cap: float) -> Iterator[float]:
    pause = first
    while True:
        yield pause
        pause = min(cap, pause * 2)


def _refused(error: errors.ZusError) -> bool:
    """Zus answered that it did not act: a 4xx (429 included) or a 503. A 500, 502 or 504, a timeout or a
    dropped connection leave it unknown whether the client was created."""
    return error.status is not None and (error.status < 500 or error.status == 503)
