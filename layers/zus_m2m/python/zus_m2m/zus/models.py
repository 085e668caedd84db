"""What Zus returns, as plain values. Secrets and tokens are kept out of every repr."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Role:
    id: str
    name: str


@dataclass(frozen=True)
class AppClient:
    """An app client as any bearer may read it (the guide's step 4): no secret."""

    id: str
    client_id: str
    name: str
    role_id: str | None
    created_at: int | None
    updated_at: int | None


@dataclass(frozen=True)
class AppClientSecret:
    """An app client together with a secret Zus shows once: on create and on rotate-secret."""

    app_client: AppClient
    client_secret: str = field(repr=False)


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
