"""The values the domain speaks of: a client's stored credentials, cached tokens, what Secrets Manager
says of a secret, the provisioning record, and where a client's secret lives.

Plain, immutable values with the few rules that belong to them; no I/O. ``zus_m2m.ports`` names the
collaborators that produce and store them. They include what Zus's token endpoint answers (tokens and
quota) and the kinds of scheduled work, so that the ports need nothing above this layer; the values
only the admin side uses (what Zus's admin API answers, the admin routes' requests, a failed rotation
step) are in ``zus_m2m.admin_values``, which the token vending function does not import.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from zus_m2m.errors import ConfigurationError

# --- Secrets Manager's version stages, and the tags that mark a secret as ours ----------------------

AWSCURRENT = "AWSCURRENT"
AWSPENDING = "AWSPENDING"
AWSPREVIOUS = "AWSPREVIOUS"

# docs/design.md, Secrets Manager.
MANAGED_TAG = "zus-m2m:managed"
STAGE_TAG = "zus-m2m:stage"
CLIENT_TAG = "zus-m2m:client"

DEFAULT_ROLE = "Builder Admin"


def rotation_started(stages: Collection[str]) -> bool:
    """A version labelled AWSPENDING and not AWSCURRENT: the new version of a rotation that has not
    finished. (AWSPENDING on the AWSCURRENT version is a finished rotation's label.)"""
    return AWSPENDING in stages and AWSCURRENT not in stages


def managed_tags(stage: str, client: str) -> dict[str, str]:
    return {MANAGED_TAG: "true", STAGE_TAG: stage, CLIENT_TAG: client}


# --- a client's secret --------------------------------------------------------------------------


@dataclass(frozen=True)
class ClientCredentials:
    """The JSON document stored in each managed client's secret (docs/design.md, Secrets Manager)."""

    name: str
    app_client_id: str
    client_id: str
    client_secret: str = field(repr=False)
    role_id: str = ""
    role_name: str = ""
    audience: str = ""
    # The Secrets Manager version these credentials were read from ("" when not read from a version):
    # not part of the stored JSON. A token minted with them names it (``CachedToken.secret_version``).
    version_id: str = field(default="", compare=False)
    # When Secrets Manager stored this version (its CreatedDate), if known; not part of the document.
    # A version stored moments ago may still be propagating at Zus.
    stored_at: float | None = field(default=None, compare=False, repr=False)

    def to_json(self) -> str:
        return json.dumps(
            {
                "name": self.name,
                "appClientId": self.app_client_id,
                "clientId": self.client_id,
                "clientSecret": self.client_secret,
                "roleId": self.role_id,
                "roleName": self.role_name,
                "audience": self.audience,
            }
        )

    @classmethod
    def from_json(
        cls, text: str, secret_id: str, version_id: str = "", stored_at: float | None = None
    ) -> ClientCredentials:
        """Parse a stored secret (of version ``version_id``, stored at ``stored_at``). Errors name the
        secret and the missing fields, never a value."""
        try:
            document: Any = json.loads(text)
        except ValueError as exc:
            raise ConfigurationError(f"secret {secret_id} does not hold a JSON object") from exc
        if not isinstance(document, dict):
            raise ConfigurationError(f"secret {secret_id} does not hold a JSON object")
        missing = [key for key in ("clientId", "clientSecret") if not document.get(key)]
        if missing:
            raise ConfigurationError(f"secret {secret_id} lacks {', '.join(missing)}")
        return cls(
            name=str(document.get("name", "")),
            app_client_id=str(document.get("appClientId", "")),
            client_id=str(document["clientId"]),
            client_secret=str(document["clientSecret"]),
            role_id=str(document.get("roleId", "")),
            role_name=str(document.get("roleName", "")),
            audience=str(document.get("audience", "")),
            version_id=version_id,
            stored_at=stored_at,
        )

    def with_secret(self, client_secret: str) -> ClientCredentials:
        """The same client with another secret (not yet stored: of no version)."""
        return replace(self, client_secret=client_secret, version_id="", stored_at=None)

    def unsettled_for(self, now: float, settle_seconds: float) -> float:
        """Seconds until this version is ``settle_seconds`` old (0: settled, or its age unknown): until
        then Zus may not accept it everywhere yet (Auth0 takes up to 30 s to propagate a rotated secret)."""
        return 0.0 if self.stored_at is None else max(0.0, self.stored_at + settle_seconds - now)


@dataclass(frozen=True)
class SecretNaming:
    """Where each client's secret lives, how it is tagged, and which secrets are ours: one managed
    client's secret is ``<prefix>/<stage>/<name>``, except the bootstrap admin's, which has its own
    configured name (an operator creates it, perhaps without our tags)."""

    prefix: str
    stage: str
    admin_client_name: str
    admin_secret_name: str

    def secret_id(self, client: str) -> str:
        if client == self.admin_client_name:
            return self.admin_secret_name
        return f"{self.prefix}/{self.stage}/{client}"

    def tags(self, client: str) -> dict[str, str]:
        return managed_tags(self.stage, client)

    def client_of(self, description: SecretDescription) -> str | None:
        """The managed client a secret belongs to, or None if it is not one of this stage's: the
        admin's by its configured name; any other by our tags for this stage, and only if its client's
        secret is this very secret."""
        if description.name == self.admin_secret_name:
            return self.admin_client_name
        tags = description.tags
        client = tags.get(CLIENT_TAG, "")
        ours = tags.get(MANAGED_TAG) == "true" and tags.get(STAGE_TAG) == self.stage and client != ""
        return client if ours and self.secret_id(client) == description.name else None


@dataclass(frozen=True)
class SecretDescription:
    """What Secrets Manager says of a secret, without its value."""

    arn: str
    name: str
    tags: dict[str, str]
    rotation_enabled: bool
    versions: dict[str, list[str]]  # version id -> stages
    last_rotated: float | None = None
    next_rotation: float | None = None
    created: float | None = None
    deleted: bool = False
    # When the secret last changed in any way (a version added, a stage moved): a rotation's age.
    last_changed: float | None = None

    def version_at(self, stage: str) -> str | None:
        return next((version for version, stages in self.versions.items() if stage in stages), None)

    @property
    def rotation_in_progress(self) -> bool:
        """A rotation started and has not finished (decided from VersionIdsToStages)."""
        return self.rotation_version is not None

    @property
    def rotation_version(self) -> str | None:
        """The version a rotation in progress is making (AWSPENDING, not AWSCURRENT), or None."""
        return next((version for version, stages in self.versions.items() if rotation_started(stages)), None)


# --- tokens -------------------------------------------------------------------------------------

# memory: this container; table: DynamoDB; lease-wait: DynamoDB after waiting for another fetch.
TokenSource = Literal["memory", "table", "lease-wait", "zus"]

# How a caller names a token Zus refused (``?refused=``): the first 16 hex characters of its SHA-256.
FINGERPRINT_REGEX = r"^[0-9a-f]{16}$"


def fingerprint(access_token: str) -> str:
    """What names a token without revealing it (the client library computes the same)."""
    return hashlib.sha256(access_token.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class CachedToken:
    access_token: str = field(repr=False)
    token_type: str
    expires_at: float
    # The Zus app client the token was minted for: a token is only ever served for that client, never
    # for a client created later under the same name ("" on items written before tokens were bound).
    app_client_id: str = ""
    # Which tier served this copy; not part of the token's identity.
    source: TokenSource = field(default="zus", compare=False)
    # The version of the client's secret the token was minted with ("" if unknown): a token minted with
    # the AWSCURRENT version proves that version works, so a health check needs no token of its own.
    secret_version: str = field(default="", compare=False)
    # Seconds Zus said it lives (``expires_in``) when it issued it; 0: unknown.
    lifetime: float = field(default=0.0, compare=False)

    def seconds_left(self, now: float) -> float:
        return self.expires_at - now

    def served_from(self, source: TokenSource) -> CachedToken:
        """This token as ``source`` serves it (itself if already marked so: no copy on every hit)."""
        return self if self.source == source else replace(self, source=source)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.access_token)

    def refresh_margin(self, margin: float) -> float:
        """How long before expiry this token is due for renewal: ``margin``, or half its life if that is
        shorter. A token that lives no longer than the margin would otherwise be due from the moment it
        is minted, and every renewal would start the next: token requests until the budget is spent."""
        return min(margin, self.lifetime / 2) if self.lifetime else margin

    @property
    def minted_at(self) -> float | None:
        """When Zus issued it (None: its lifetime is unknown)."""
        return self.expires_at - self.lifetime if self.lifetime else None

    def outlives(self, min_ttl: float) -> bool:
        """Whether a token like this one, fresh, can have ``min_ttl`` seconds left (unknown: yes)."""
        return not self.lifetime or min_ttl <= self.lifetime


# Why the last upstream attempt failed (docs/design.md, the token item's ``failedBy``).
FailureCause = Literal["unavailable", "refused", "forbidden"]


@dataclass(frozen=True)
class TokenState:
    """The token item of one client: its token, its single-flight lease, a Zus 429 block, and the
    memory of failed upstream attempts every container backs off by."""

    token: CachedToken | None = None
    lease_owner: str | None = None
    lease_until: float = 0.0
    blocked_until: float = 0.0
    last_requested_at: float = 0.0
    # Consecutive failed upstream attempts, the last one's cause, and until when nobody asks again.
    failures: int = 0
    failed_by: FailureCause | None = None
    failed_until: float = 0.0
    # When a token a caller reported as refused was last replaced (0: never): the next report within
    # ``VendingPolicy.refused_replacement_min_gap`` is ignored, so chained reports cannot spend the budget.
    refused_replaced_at: float = 0.0
    # How long the last lease holder took from taking the lease to storing its token (0: unknown): a
    # waiter reads the item again when the current holder should be done, not at fixed intervals.
    fetch_seconds: float = 0.0

    def lease_held(self, now: float, by_other_than: str | None = None) -> bool:
        """A live lease, other than ``by_other_than``'s (a caller's own lease holds it back from nothing:
        ``SingleFlight._owner``)."""
        return self.lease_owner is not None and self.lease_owner != by_other_than and self.lease_until > now

    def paused_until(self, now: float) -> float:
        """Until when no container may ask Zus for this client's token (a 429, or a back-off), or 0."""
        until = max(self.blocked_until, self.failed_until)
        return until if until > now else 0.0

    @property
    def after_outage(self) -> bool:
        """The last attempt found Zus unavailable: the next one is a recovery, which may use the reserve."""
        return self.failures > 0 and self.failed_by == "unavailable"


@dataclass(frozen=True)
class LeaseAttempt:
    """An attempt to take a token item's lease: whether this call took it, and the item as the attempt
    left it (with this call's lease) or found it (with another's live lease)."""

    taken: bool
    state: TokenState


@dataclass(frozen=True)
class ClientView:
    """What token vending reads of a client in one round trip: of its record, the Zus app client it
    names and its consumers (``app_client_id`` None when there is no active client of that name: none,
    or one being created or deleted), and its token item."""

    app_client_id: str | None
    consumers: tuple[str, ...]
    token: TokenState


@dataclass(frozen=True)
class ZusCount:
    """Zus's last report of a client's quota, and when it was seen."""

    quota: ZusQuota
    seen_at: float


@dataclass(frozen=True)
class Budget:
    """A client's budget item as read: the requests sent in the last hour (epoch seconds), the item's
    version (for the optimistic write back) and Zus's last report of its own count."""

    stamps: tuple[float, ...] = ()
    version: int = 0
    zus: ZusCount | None = None


@dataclass(frozen=True)
class BudgetVerdict:
    allowed: bool
    used: int
    retry_after: float = 0.0
    # Refused because Zus reported fewer requests left than our own count allows.
    by_zus: bool = False


# --- provisioning -------------------------------------------------------------------------------


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
    # The principals that may get the client's token (``zus_m2m.access``), sorted; none on a record
    # written before consumers existed: nobody gets its token until an admin grants some.
    consumers: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "appClientId": self.app_client_id,
            "clientId": self.client_id,
            "roleId": self.role_id,
            "roleName": self.role_name,
            "secretArn": self.secret_arn,
            "createdAt": self.created_at,
            "consumers": list(self.consumers),
        }


Status = Literal["creating", "active", "deleting"]


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
    # The consumers the claim's create asked for; the record gets them.
    consumers: tuple[str, ...] = ()

    def claim_live(self, now: float) -> bool:
        return self.claim_owner is not None and self.claim_until > now

    @property
    def create_started(self) -> bool:
        return self.create_started_at is not None


# --- what Zus's token endpoint answers (tokens are kept out of every repr) --------------------------


@dataclass(frozen=True)
class ZusQuota:
    """What Zus says of a client's hourly token quota (Auth0's ``x-ratelimit-*`` headers): how many
    token requests it still accepts, until ``reset_at`` (epoch seconds)."""

    remaining: int
    reset_at: float


@dataclass(frozen=True)
class AccessToken:
    """A client-credentials token; ``expires_in`` is seconds from when Zus issued it."""

    access_token: str = field(repr=False)
    expires_in: int
    token_type: str = "Bearer"
    quota: ZusQuota | None = None


# --- scheduled work (docs/design.md, Scheduled work) ----------------------------------------------

# The kinds of work: a token item of a client in use is due for its ``refresh``, a record item for its
# ``rotation`` check.
REFRESH = "refresh"
ROTATION = "rotation"
KINDS = (REFRESH, ROTATION)


@dataclass(frozen=True)
class WorkItem:
    """One client's due work of one kind, due at ``due_at`` (epoch seconds, to the millisecond)."""

    kind: str
    client: str
    due_at: float

    def to_message(self) -> str:
        return json.dumps({"kind": self.kind, "client": self.client, "dueAt": round(self.due_at, 3)})


@dataclass(frozen=True)
class DueMark:
    """A table item's due marks, as read: the kind of work it is due for (None: not in the due index),
    when, and for a token item when its client was last used."""

    kind: str | None
    due_at: float | None
    last_requested_at: float = 0.0

    def holds(self, item: WorkItem) -> bool:
        """The item is still due as ``item`` says: nobody did the work or dispatched it again since."""
        return self.kind == item.kind and self.due_at is not None and round(self.due_at, 3) == round(item.due_at, 3)
