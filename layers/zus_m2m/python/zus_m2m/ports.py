"""The small interfaces domain logic depends on. Adapters in ``zus_m2m.aws`` and ``zus_m2m.zus``
implement them against AWS and Zus; unit tests implement them in memory."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from zus_m2m.credentials import ClientCredentials
from zus_m2m.zus.models import AccessToken

Clock = Callable[[], float]

AWSCURRENT = "AWSCURRENT"
AWSPENDING = "AWSPENDING"
AWSPREVIOUS = "AWSPREVIOUS"


# memory: this container; table: DynamoDB; lease-wait: DynamoDB after waiting for another fetch.
TokenSource = Literal["memory", "table", "lease-wait", "zus"]


@dataclass(frozen=True)
class CachedToken:
    access_token: str = field(repr=False)
    token_type: str
    expires_at: float
    # Which tier served this copy; not part of the token's identity.
    source: TokenSource = field(default="zus", compare=False)

    def seconds_left(self, now: float) -> float:
        return self.expires_at - now


@dataclass(frozen=True)
class TokenState:
    """The token item of one client: its token, its single-flight lease, and a Zus 429 block."""

    token: CachedToken | None = None
    lease_owner: str | None = None
    lease_until: float = 0.0
    blocked_until: float = 0.0
    last_requested_at: float = 0.0

    def lease_held(self, now: float) -> bool:
        return self.lease_owner is not None and self.lease_until > now


@dataclass(frozen=True)
class BudgetVerdict:
    allowed: bool
    used: int
    retry_after: float = 0.0


class TokenTable(Protocol):
    """The shared tier: one token item and one budget item per client (docs/design.md)."""

    def get(self, client: str, *, consistent: bool = False) -> TokenState: ...

    def acquire_lease(self, client: str, owner: str, now: float, until: float) -> bool:
        """Take the fetch lease if nobody holds a live one. True when taken."""
        ...

    def release_lease(self, client: str, owner: str) -> None: ...

    def put_token(self, client: str, token: CachedToken, owner: str | None) -> None:
        """Store a token (unless a later-expiring one is there) and release ``owner``'s lease."""
        ...

    def block(self, client: str, until: float) -> None:
        """Remember that Zus asked us not to request tokens for ``client`` before ``until``."""
        ...

    def spend_budget(self, client: str, now: float, limit: int) -> BudgetVerdict:
        """Count one token request in the rolling hour, atomically, unless ``limit`` is reached."""
        ...

    def budget_used(self, client: str, now: float) -> int: ...

    def mark_requested(self, client: str, now: float) -> None: ...

    def requested_since(self, since: float) -> list[str]: ...

    def purge(self, client: str) -> None: ...


class SecretReader(Protocol):
    def read(self, secret_id: str, stage: str, *, fresh: bool = False) -> ClientCredentials | None:
        """The credentials at a version stage, or None if the secret or the stage does not exist."""
        ...


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
    # When the secret last changed in any way (a new version, a stage move); rotation's stuck check.
    last_changed: float | None = None

    def version_at(self, stage: str) -> str | None:
        return next((version for version, stages in self.versions.items() if stage in stages), None)

    @property
    def rotation_in_progress(self) -> bool:
        """AWSPENDING on a version that is not AWSCURRENT: a rotation started and has not finished.

        Decided here, from VersionIdsToStages, because moto's own check is inverted.
        """
        pending = self.version_at(AWSPENDING)
        return pending is not None and pending != self.version_at(AWSCURRENT)


class SecretStore(SecretReader, Protocol):
    """Everything the service does to client secrets besides reading them."""

    def create(
        self, name: str, credentials: ClientCredentials, *, kms_key_id: str, tags: dict[str, str], request_token: str
    ) -> str:
        """Create the secret (idempotent for the same request token); returns its ARN."""
        ...

    def describe(self, secret_id: str) -> SecretDescription | None: ...

    def read_version(self, secret_id: str, version_id: str) -> ClientCredentials | None: ...

    def put_pending(self, secret_id: str, credentials: ClientCredentials, version_id: str) -> None:
        """Store credentials as version ``version_id`` at stage AWSPENDING."""
        ...

    def move_stage(self, secret_id: str, stage: str, to_version: str, from_version: str | None) -> None: ...

    def remove_stage(self, secret_id: str, stage: str, from_version: str) -> None: ...

    def start_rotation(self, secret_id: str, rotation_function_arn: str | None) -> None: ...

    def schedule_deletion(self, secret_id: str, recovery_window_days: int) -> None: ...

    def list_managed(self, stage: str) -> list[SecretDescription]: ...


class TokenIssuer(Protocol):
    def request_token(self, client_id: str, client_secret: str) -> AccessToken: ...


class MetricsSink(Protocol):
    def count(self, name: str, value: float = 1.0) -> None: ...


# Tags that mark a secret as one this service manages (docs/design.md, Secrets Manager).
MANAGED_TAG = "zus-m2m:managed"
STAGE_TAG = "zus-m2m:stage"
CLIENT_TAG = "zus-m2m:client"
