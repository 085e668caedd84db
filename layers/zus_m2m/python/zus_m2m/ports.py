"""Every collaborator the domain logic depends on, as a small ``typing.Protocol``.

Adapters implement them against AWS (``zus_m2m.aws``) and Zus (``zus_m2m.zus``), token vending
implements the token ports, and unit tests implement them in memory. The values they pass are in
``zus_m2m.values`` and, for the admin side's, ``zus_m2m.admin_values``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from zus_m2m.values import (
    AccessToken,
    Budget,
    CachedToken,
    ClientCredentials,
    ClientRecord,
    ClientView,
    DueMark,
    FailureCause,
    LeaseAttempt,
    RecordItem,
    SecretDescription,
    TokenState,
    WorkItem,
    ZusQuota,
)

if TYPE_CHECKING:  # annotations only: the token vending function, which imports this module, never builds them
    from zus_m2m.admin_values import AppClient, AppClientSecret, Role, RotationFailure

Clock = Callable[[], float]
Sleep = Callable[[float], None]
# Called with a name after each external call of a flow: a no-op in production, the hook with which
# tests kill a flow at a chosen point (each use case lists its names in a ``...Checkpoints`` class).
Checkpoint = Callable[[str], None]


def no_checkpoint(name: str) -> None:
    return None


class MetricsSink(Protocol):
    def count(self, name: str, value: float = 1.0) -> None: ...

    def duration(self, name: str, seconds: float) -> None:
        """One timing (published in milliseconds)."""
        ...


@dataclass(frozen=True)
class Runtime:
    """What every flow runs with, besides its ports: where its metrics go, the time it goes by, how it
    pauses, and the checkpoint hook. One bundle, built once in the composition root."""

    metrics: MetricsSink
    clock: Clock = time.time
    sleep: Sleep = time.sleep
    checkpoint: Checkpoint = no_checkpoint


# --- Zus ----------------------------------------------------------------------------------------


class TokenEndpoint(Protocol):
    """Zus's OAuth token endpoint: one client-credentials grant (``ZusClient`` implements it)."""

    def request_token(self, client_id: str, client_secret: str) -> AccessToken: ...


class ZusAdmin(Protocol):
    """Zus's app-client API; each call takes a bearer token (``ZusClient`` implements it)."""

    def find_role(self, name: str, bearer: str) -> Role: ...

    def create_app_client(self, name: str, role_id: str, bearer: str) -> AppClientSecret: ...

    def list_app_clients(self, bearer: str) -> list[AppClient]: ...

    def get_app_client(self, app_client_id: str, bearer: str) -> AppClient: ...

    def delete_app_client(self, app_client_id: str, bearer: str) -> None: ...

    def rotate_secret(self, app_client_id: str, bearer: str) -> AppClientSecret: ...


# --- tokens -------------------------------------------------------------------------------------


class TokenIssuer(Protocol):
    """Issues a token with given credentials (a new or pending secret) and caches it, so that a
    check of credentials costs no token request later (``TokenVendor`` implements it)."""

    def issue_with(self, client: str, credentials: ClientCredentials) -> CachedToken: ...


class AdminTokens(Protocol):
    """A Builder Admin bearer token of the bootstrap admin client, for Zus's admin calls."""

    def bearer(self) -> str:
        """ResourceNotFound when the bootstrap admin's secret is missing."""
        ...


class TokenTable(Protocol):
    """The shared tier: one token item and one budget item per client (docs/design.md)."""

    def get(self, client: str, *, consistent: bool = False) -> TokenState: ...

    def view(self, client: str) -> ClientView:
        """The client's active record and its token item, read together (consistently)."""
        ...

    def acquire_lease(self, client: str, owner: str, now: float, until: float) -> LeaseAttempt:
        """Take the fetch lease if nobody else holds a live one (``owner``'s own is taken again); either
        way, the item as it is now (with the live lease of another if not taken)."""
        ...

    def release_lease(self, client: str, owner: str) -> None: ...

    def put_token(
        self,
        client: str,
        token: CachedToken,
        owner: str | None,
        *,
        replacing: CachedToken | None = None,
        fetch_seconds: float = 0.0,
    ) -> None:
        """Store a token (unless a later-expiring one of the same app client is there; ``replacing``, a
        token Zus refused, is replaced whatever its expiry), forget failed attempts, and release
        ``owner``'s lease; ``fetch_seconds``, how long its holder took, is kept for the next waiters."""
        ...

    def discard_token(self, client: str, app_client_id: str) -> None:
        """Remove the cached token if it is still the one minted for ``app_client_id`` (a deleted client's)."""
        ...

    def record_failure(self, client: str, owner: str, failures: int, cause: FailureCause, until: float) -> None:
        """As ``owner`` of the lease: remember the failed attempt (nobody asks again before ``until``) and
        release the lease, in one write."""
        ...

    def block(self, client: str, until: float) -> None:
        """Remember that Zus asked us not to request tokens for ``client`` before ``until``."""
        ...

    def read_budget(self, client: str, now: float) -> Budget:
        """The client's budget item, its requests cut to the last hour's (``tokens.budget`` spends it)."""
        ...

    def count_request(self, client: str, budget: Budget, now: float) -> bool:
        """Add a request at ``now`` to ``budget`` as read: False, and nothing written, if the item
        changed since it was read."""
        ...

    def note_zus_quota(self, client: str, quota: ZusQuota, seen_at: float) -> None:
        """Remember what Zus said of the client's hourly quota (for the budget)."""
        ...

    def mark_requested(self, client: str, now: float, *, unless_since: float | None = None) -> None:
        """Remember that ``client`` is in use (for the pre-refresh: its token item joins the due index),
        unless a mark later than ``unless_since`` is there (a conditional write: one per interval for the
        fleet)."""
        ...

    def retire(self, client: str, now: float) -> None:
        """Purge a client being deleted of its cached token and budget, and keep anything in flight from
        writing them again (a tombstone: ``aws/table.py``)."""
        ...


# --- secrets ------------------------------------------------------------------------------------


class SecretReader(Protocol):
    """What token vending needs of the secret store: reads by stage (through a short cache)."""

    def read(
        self, secret_id: str, stage: str, *, fresh: bool = False, current_version: str | None = None
    ) -> ClientCredentials | None:
        """The credentials at a version stage, or None if the secret or the stage does not exist.
        ``current_version``: a version the caller knows the stage held lately (the one that minted the
        cached token); the store may answer its cached credentials of that version, however old."""
        ...


class SecretStore(SecretReader, Protocol):
    """Client secrets in Secrets Manager: every read and write the service makes."""

    def describe(self, secret_id: str) -> SecretDescription | None: ...

    def read_version(self, secret_id: str, version_id: str) -> ClientCredentials | None:
        """The credentials of one version, or None if it does not exist or holds no value."""
        ...

    def create(
        self, name: str, credentials: ClientCredentials, *, kms_key_id: str, tags: dict[str, str], idempotency_key: str
    ) -> str:
        """Create the secret (idempotent for the same key); returns its ARN."""
        ...

    def put_current(self, secret_id: str, credentials: ClientCredentials, version_id: str) -> None:
        """Store credentials as a new AWSCURRENT version."""
        ...

    def put_pending(self, secret_id: str, credentials: ClientCredentials, version_id: str) -> None:
        """Store credentials as version ``version_id`` at stage AWSPENDING."""
        ...

    def move_stage(self, secret_id: str, stage: str, to_version: str, from_version: str | None) -> None: ...

    def remove_stage(self, secret_id: str, stage: str, from_version: str) -> None: ...

    def configure_rotation(self, secret_id: str, rotation_function_arn: str, interval_days: int) -> None:
        """Turn on scheduled rotation by the rotation function, without rotating now."""
        ...

    def start_rotation(self, secret_id: str, rotation_function_arn: str | None) -> None: ...

    def cancel_rotation(self, secret_id: str) -> None:
        """CancelRotateSecret: Secrets Manager invokes no more steps of a started rotation and turns
        scheduled rotation off; the rotation's AWSPENDING label stays where it was."""
        ...

    def schedule_deletion(self, secret_id: str, recovery_window_days: int) -> None: ...

    def restore(self, secret_id: str) -> None:
        """Cancel a scheduled deletion."""
        ...

    def resource_policy(self, secret_id: str) -> str | None:
        """The secret's resource policy (JSON), or None if it has none."""
        ...

    def put_resource_policy(self, secret_id: str, policy: str) -> None:
        """Replace the secret's resource policy (Secrets Manager refuses one that grants public access)."""
        ...


class RotationFailures(Protocol):
    """The rotation steps that failed and are not repaired yet, at most one per client (docs/design.md)."""

    def record(self, failure: RotationFailure) -> None:
        """Remember the failure, replacing the client's earlier one (and whether a run saw it)."""
        ...

    def list(self) -> list[RotationFailure]:
        """Every recorded failure: one query, never a scan of the clients."""
        ...

    def mark_seen(self, failure: RotationFailure, now: float) -> bool:
        """Note that a repair run saw ``failure``; False if the client's record changed meanwhile."""
        ...

    def clear(self, client: str, version: str) -> None:
        """Forget the client's failure if it is one of rotation ``version`` (a newer one stays)."""
        ...


# --- provisioning records -----------------------------------------------------------------------


class RequestGuards(Protocol):
    """The rate limits of requests on demand, kept on a client's record item (the bootstrap admin's in
    an item of its own partition): rotations at most one per gap, repairs one at a time."""

    def request_rotation(self, name: str, now: float, min_gap: float) -> float | None:
        """Note a rotation requested at ``now`` unless one was noted less than ``min_gap`` seconds ago:
        0 when noted, else the seconds until one may be; None when the client has no record."""
        ...

    def forget_rotation_request(self, name: str, at: float) -> None:
        """Take back the request noted at ``at`` (the rotation did not start)."""
        ...

    def request_repair(self, name: str, now: float, min_gap: float, lease: float) -> float | None:
        """Note a repair requested at ``now``, in flight until ``now + lease``, unless one is in flight or
        was noted less than ``min_gap`` seconds ago: 0 when noted, else the seconds until one may be;
        None when the client has no record."""
        ...

    def finish_repair(self, name: str, at: float) -> None:
        """The repair noted at ``at`` is over (whatever its outcome): no longer in flight."""
        ...


class ClientRecords(Protocol):
    """The record items (docs/design.md); every write that decides something is conditional."""

    def get(self, name: str) -> RecordItem | None:
        """The item, read consistently, or None."""
        ...

    def list_page(self, limit: int, after: str | None) -> tuple[list[ClientRecord], str | None]:
        """Up to ``limit`` active records after the record named ``after`` (None: from the start), and
        the name the next page starts after (None: no more)."""
        ...

    def claim(
        self,
        name: str,
        role_name: str,
        consumers: tuple[str, ...],
        owner: str,
        now: float,
        until: float,
        *,
        previous_owner: str | None,
    ) -> RecordItem | None:
        """Claim the name: a free one (``previous_owner`` None), or over ``previous_owner``'s
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

    def set_consumers(self, name: str, consumers: tuple[str, ...]) -> ClientRecord | None:
        """Replace an active record's consumers; the record as written, or None if it is not active."""
        ...

    def mark_deleting(self, name: str) -> bool:
        """Active (or already deleting) → deleting; False if the item is in another state."""
        ...

    def delete(self, name: str) -> None:
        """Remove a deleting item."""
        ...


# --- scheduled work -----------------------------------------------------------------------------


class DueIndex(Protocol):
    """The table's items that are due for scheduled work, by kind (``zus_m2m.work.items``): a token item of
    a client in use (refresh), a record item (rotation check). Every write is conditional on the item
    still being due as the caller saw it."""

    def due(self, kind: str, until: float, limit: int) -> list[WorkItem]:
        """Up to ``limit`` items of ``kind`` due at or before ``until``, the longest due first: a query of
        the index that reads those items only."""
        ...

    def claim(self, item: WorkItem, until: float) -> WorkItem | None:
        """Move the item's ``dueAt`` to ``until`` if it is still ``item.due_at`` (the work is handed out,
        and due again at ``until`` unless done by then): the item as claimed, or None if it moved."""
        ...

    def mark(self, kind: str, client: str) -> DueMark | None:
        """The due marks of the client's item of that kind, read consistently; None if there is no item."""
        ...

    def reschedule(self, item: WorkItem, at: float) -> bool:
        """The item's next ``dueAt``, if it still holds ``item``; False if it moved on."""
        ...

    def delist(self, item: WorkItem, idle_before: float) -> bool:
        """Take a token item out of the index (its client went idle), unless it was used at or after
        ``idle_before`` or no longer holds ``item``. True when taken out."""
        ...

    def enlist(self, kind: str, client: str, at: float) -> bool:
        """Put the client's item in the index, due at ``at``, unless it is in already (True when put)."""
        ...

    def backfill(self, at: float, page_size: int) -> int:
        """Enlist, due at ``at``, active record items written before the index existed: one page of the
        table per call, from where the last call stopped; how many were enlisted (0 for good once the
        whole table was read)."""
        ...


class WorkQueue(Protocol):
    """The queue that hands due work to the worker function: one message per item."""

    def send(self, items: Sequence[WorkItem]) -> list[WorkItem]:
        """Send every item (in batches); the items that could not be sent."""
        ...


class PageTokens(Protocol):
    """A list's position as the opaque, tamper-evident ``nextToken`` a client sends back."""

    def seal(self, position: str) -> str:
        """The token of ``position``."""
        ...

    def open(self, token: str) -> str:
        """The position ``token`` was sealed from; InvalidRequest if this service did not issue it."""
        ...
