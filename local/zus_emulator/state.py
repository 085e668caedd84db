"""In-memory state and rules of the Zus emulator (no sockets, no HTTP).

Everything here is thread-safe (one re-entrant lock guards all state) and reads time only from the
injectable ``clock`` of :class:`EmulatorConfig`, so the rules can be unit-tested with a fake clock.

Rules worth knowing:

* Token requests are counted per known client id in a sliding hour: a request at time ``t`` counts
  while ``now - t < 3600``. A request is counted when its client id is known and the client is not
  already over the limit — failed secrets count too (as Auth0 does); 429'd requests never count.
* Order of token-request checks: fields present → ``grant_type`` → client id known (401) → hourly
  limit (429) → count → secret (401) → audience (403).
* Secret rotation with a propagation window ``P > 0``: for ``P`` seconds the old secret keeps working
  and the new one is rejected; afterwards only the new one works. A second rotation during the window
  replaces the *pending* secret (the newest wins and its window restarts); the current secret stays
  valid until the newest pending one takes over. The secret that was pending before never works.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import random
import secrets
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jwt

Clock = Callable[[], float]

WINDOW_SECONDS = 3600.0
BUILDER_ADMIN = "Builder Admin"
CARE_TEAM_USER = "Care Team User"
APP_CLIENT_TYPE = "auth/app-clients"
ROLE_TYPE = "auth/roles"
MACHINE_TO_MACHINE = "machine_to_machine"
BUILDER_USER_TYPE = "builder"
GRANT_TYPE = "client_credentials"
# The roles' timestamps are fixed (the guide's example epoch) so role documents are deterministic.
ROLE_TIMESTAMP = 1651254340


def role_id(name: str) -> str:
    """The deterministic id of a role: uuid5 of its name."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"zus-emulator:role:{name}"))


BUILDER_ADMIN_ROLE_ID = role_id(BUILDER_ADMIN)
CARE_TEAM_USER_ROLE_ID = role_id(CARE_TEAM_USER)


@dataclass(frozen=True)
class EmulatorConfig:
    audience: str = "https://api.sandbox.zusapi.com"
    admin_client_id: str = "local-admin"
    admin_client_secret: str = field(default="local-admin-secret", repr=False)
    token_lifetime_seconds: int = 3600
    token_limit_per_hour: int = 200
    secret_propagation_seconds: float = 0.0
    roles_as_array: bool = False
    quiet: bool = False
    clock: Clock = field(default=time.time, repr=False, compare=False)


@dataclass(frozen=True)
class Role:
    id: str
    name: str
    description: str
    permissions: tuple[str, ...]
    created_at: int = ROLE_TIMESTAMP
    updated_at: int = ROLE_TIMESTAMP

    def resource(self) -> dict[str, Any]:
        return {
            "type": ROLE_TYPE,
            "id": self.id,
            "attributes": {
                "createdAt": self.created_at,
                "description": self.description,
                "isManaged": True,
                "name": self.name,
                "permissions": list(self.permissions),
                "updatedAt": self.updated_at,
            },
        }


ROLES: tuple[Role, ...] = (
    Role(
        id=BUILDER_ADMIN_ROLE_ID,
        name=BUILDER_ADMIN,
        description="Full access to the builder's organization, its data and its app clients.",
        permissions=(
            "auth:app-clients:read",
            "auth:app-clients:write",
            "auth:roles:read",
            "fhir:read",
            "fhir:write",
        ),
    ),
    Role(
        id=CARE_TEAM_USER_ROLE_ID,
        name=CARE_TEAM_USER,
        description="Reads and writes patient data for the care team; cannot manage app clients.",
        permissions=("fhir:read", "fhir:write"),
    ),
)
ROLES_BY_ID = {role.id: role for role in ROLES}


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8")).digest()


@dataclass
class AppClient:
    id: str
    client_id: str
    name: str
    role_id: str
    created_at: int
    updated_at: int
    # Only digests of secrets are kept; the plain secret is returned once by create/rotate.
    secret_digest: bytes = field(repr=False)
    pending_digest: bytes | None = field(default=None, repr=False)
    pending_until: float = 0.0

    @property
    def is_admin(self) -> bool:
        return self.role_id == BUILDER_ADMIN_ROLE_ID

    def resource(self, secret: str | None = None) -> dict[str, Any]:
        attributes: dict[str, Any] = {"clientId": self.client_id}
        if secret is not None:
            attributes["clientSecret"] = secret
        attributes.update(
            {
                "createdAt": self.created_at,
                "name": self.name,
                "type": MACHINE_TO_MACHINE,
                "updatedAt": self.updated_at,
                "userType": BUILDER_USER_TYPE,
            }
        )
        return {
            "type": APP_CLIENT_TYPE,
            "id": self.id,
            "attributes": attributes,
            "relationships": {ROLE_TYPE: {"data": {"type": ROLE_TYPE, "id": self.role_id}}},
        }


class OAuthError(Exception):
    """An error of the token endpoint: ``{"error": code, "error_description": description}``."""

    def __init__(self, status: int, code: str, description: str, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.code = code
        self.description = description
        self.retry_after = retry_after
        self.headers: dict[str, str] = {}

    def body(self) -> dict[str, str]:
        return {"error": self.code, "error_description": self.description}


class BearerError(Exception):
    """A bearer token that is missing, malformed, badly signed, expired or names a deleted client."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class SettingsError(ValueError):
    """A rejected /_emulator/config or /_emulator/faults document."""


@dataclass(frozen=True)
class Settings:
    token_lifetime_seconds: int
    token_limit_per_hour: int
    secret_propagation_seconds: float
    roles_as_array: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "tokenLifetimeSeconds": self.token_lifetime_seconds,
            "tokenLimitPerHour": self.token_limit_per_hour,
            "secretPropagationSeconds": self.secret_propagation_seconds,
            "rolesAsArray": self.roles_as_array,
        }


@dataclass(frozen=True)
class Fault:
    status: int | None = None
    rate: float = 1.0
    latency_ms: int = 0
    paths: tuple[str, ...] = ()
    drop: bool = False
    retry_after: int = 1

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "rate": self.rate,
            "latencyMs": self.latency_ms,
            "paths": list(self.paths),
            "drop": self.drop,
            "retryAfter": self.retry_after,
        }
        if self.status is not None:
            out["status"] = self.status
        return out

    def matches(self, path: str) -> bool:
        if path.startswith("/_emulator"):
            return False
        return not self.paths or any(path.startswith(prefix) for prefix in self.paths)


@dataclass(frozen=True)
class TokenRequest:
    grant_type: str | None
    client_id: str | None
    client_secret: str | None
    audience: str | None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def parse_settings_patch(patch: object, current: Settings) -> Settings:
    """Validate a ``POST /_emulator/config`` document and apply it to ``current``."""
    if not isinstance(patch, dict):
        raise SettingsError("the body must be a JSON object")
    known = {"tokenLifetimeSeconds", "tokenLimitPerHour", "secretPropagationSeconds", "rolesAsArray"}
    unknown = sorted(set(patch) - known)
    if unknown:
        raise SettingsError(f"unknown keys: {', '.join(unknown)}")
    lifetime = patch.get("tokenLifetimeSeconds", current.token_lifetime_seconds)
    if not _is_int(lifetime) or lifetime < 1:
        raise SettingsError("tokenLifetimeSeconds must be an integer >= 1")
    limit = patch.get("tokenLimitPerHour", current.token_limit_per_hour)
    if not _is_int(limit) or limit < 1:
        raise SettingsError("tokenLimitPerHour must be an integer >= 1")
    propagation = patch.get("secretPropagationSeconds", current.secret_propagation_seconds)
    if not _is_number(propagation) or propagation < 0:
        raise SettingsError("secretPropagationSeconds must be a number >= 0")
    as_array = patch.get("rolesAsArray", current.roles_as_array)
    if not isinstance(as_array, bool):
        raise SettingsError("rolesAsArray must be a boolean")
    return Settings(int(lifetime), int(limit), float(propagation), as_array)


def parse_fault(spec: object) -> Fault | None:
    """Validate a ``POST /_emulator/faults`` document; ``{}`` means no fault."""
    if not isinstance(spec, dict):
        raise SettingsError("the body must be a JSON object")
    if not spec:
        return None
    known = {"status", "rate", "latencyMs", "paths", "drop", "retryAfter"}
    unknown = sorted(set(spec) - known)
    if unknown:
        raise SettingsError(f"unknown keys: {', '.join(unknown)}")
    status = spec.get("status")
    if status is not None and (not _is_int(status) or not 400 <= status <= 599):
        raise SettingsError("status must be an integer from 400 to 599")
    rate = spec.get("rate", 1.0)
    if not _is_number(rate) or not 0 <= rate <= 1:
        raise SettingsError("rate must be a number from 0 to 1")
    latency = spec.get("latencyMs", 0)
    if not _is_int(latency) or not 0 <= latency <= 600_000:
        raise SettingsError("latencyMs must be an integer from 0 to 600000")
    paths = spec.get("paths", [])
    if not isinstance(paths, list) or not all(isinstance(p, str) and p.startswith("/") for p in paths):
        raise SettingsError("paths must be a list of path prefixes starting with '/'")
    drop = spec.get("drop", False)
    if not isinstance(drop, bool):
        raise SettingsError("drop must be a boolean")
    retry_after = spec.get("retryAfter", 1)
    if not _is_int(retry_after) or retry_after < 0:
        raise SettingsError("retryAfter must be an integer >= 0")
    if drop and status is not None:
        raise SettingsError("drop and status cannot be combined")
    if status is None and not drop and latency == 0:
        raise SettingsError("a fault needs status, drop or latencyMs")
    return Fault(
        status=status,
        rate=float(rate),
        latency_ms=latency,
        paths=tuple(paths),
        drop=drop,
        retry_after=retry_after,
    )


class EmulatorState:
    """The emulator's world: roles, app clients, token counters, settings, faults and stats."""

    def __init__(
        self,
        config: EmulatorConfig | None = None,
        issuer: str = "zus-emulator",
        rng: random.Random | None = None,
    ) -> None:
        self.config = config or EmulatorConfig()
        self.issuer = issuer
        self._clock = self.config.clock
        self._rng = rng or random.Random()  # fault sampling, not cryptography
        self._key = secrets.token_bytes(32)
        self._lock = threading.RLock()
        self.admin_app_client_id = str(
            uuid.uuid5(uuid.NAMESPACE_URL, f"zus-emulator:app-client:{self.config.admin_client_id}")
        )
        self._clients: dict[str, AppClient] = {}
        self._by_client_id: dict[str, AppClient] = {}
        self._requests: dict[str, deque[float]] = {}
        self._tokens_issued = 0
        self._rate_limited = 0
        self._fault: Fault | None = None
        self._settings = self._default_settings()
        self._admin_created_at = int(self._clock())
        self._add_admin()

    # -- setup -------------------------------------------------------------------------------------

    def _default_settings(self) -> Settings:
        c = self.config
        return Settings(
            token_lifetime_seconds=c.token_lifetime_seconds,
            token_limit_per_hour=c.token_limit_per_hour,
            secret_propagation_seconds=float(c.secret_propagation_seconds),
            roles_as_array=c.roles_as_array,
        )

    def _add_admin(self) -> None:
        admin = AppClient(
            id=self.admin_app_client_id,
            client_id=self.config.admin_client_id,
            name=self.config.admin_client_id,
            role_id=BUILDER_ADMIN_ROLE_ID,
            created_at=self._admin_created_at,
            updated_at=self._admin_created_at,
            secret_digest=_digest(self.config.admin_client_secret),
        )
        self._clients[admin.id] = admin
        self._by_client_id[admin.client_id] = admin

    def reset(self) -> None:
        """Forget every client but the admin (restored as at start), counters, stats, faults, settings."""
        with self._lock:
            self._clients.clear()
            self._by_client_id.clear()
            self._requests.clear()
            self._tokens_issued = 0
            self._rate_limited = 0
            self._fault = None
            self._settings = self._default_settings()
            self._add_admin()

    def now(self) -> float:
        return self._clock()

    # -- settings and faults -----------------------------------------------------------------------

    @property
    def settings(self) -> Settings:
        with self._lock:
            return self._settings

    def update_settings(self, patch: object) -> Settings:
        with self._lock:
            self._settings = parse_settings_patch(patch, self._settings)
            return self._settings

    @property
    def fault(self) -> Fault | None:
        with self._lock:
            return self._fault

    def set_fault(self, spec: object) -> Fault | None:
        fault = parse_fault(spec)
        with self._lock:
            self._fault = fault
            return fault

    def pick_fault(self, path: str) -> Fault | None:
        """The fault to apply to a request for ``path`` (sampled with the fault's rate), if any."""
        with self._lock:
            fault = self._fault
            if fault is None or not fault.matches(path):
                return None
            if fault.rate >= 1.0 or self._rng.random() < fault.rate:
                return fault
            return None

    # -- roles -------------------------------------------------------------------------------------

    def roles(self, name: str | None = None) -> list[Role]:
        return [role for role in ROLES if name is None or role.name == name]

    # -- app clients -------------------------------------------------------------------------------

    def create_app_client(self, name: str, role: str) -> tuple[AppClient, str]:
        """Create a client; returns it and its secret (shown only now). Duplicate names are allowed."""
        if role not in ROLES_BY_ID:
            raise KeyError(role)
        secret = secrets.token_urlsafe(48)
        with self._lock:
            now = int(self._clock())
            client_id = secrets.token_urlsafe(24)
            while client_id in self._by_client_id:  # pragma: no cover - astronomically unlikely
                client_id = secrets.token_urlsafe(24)
            client = AppClient(
                id=str(uuid.uuid4()),
                client_id=client_id,
                name=name,
                role_id=role,
                created_at=now,
                updated_at=now,
                secret_digest=_digest(secret),
            )
            self._clients[client.id] = client
            self._by_client_id[client.client_id] = client
            return client, secret

    def get_app_client(self, app_client_id: str) -> AppClient | None:
        with self._lock:
            return self._clients.get(app_client_id)

    def list_app_clients(self) -> list[AppClient]:
        with self._lock:
            return sorted(self._clients.values(), key=lambda c: (c.created_at, c.id))

    def delete_app_client(self, app_client_id: str) -> bool:
        with self._lock:
            client = self._clients.pop(app_client_id, None)
            if client is None:
                return False
            self._by_client_id.pop(client.client_id, None)
            self._requests.pop(client.client_id, None)
            return True

    def rotate_secret(self, app_client_id: str) -> tuple[AppClient, str] | None:
        """Give the client a new secret; returns it and the new secret, or None if unknown."""
        secret = secrets.token_urlsafe(48)
        with self._lock:
            client = self._clients.get(app_client_id)
            if client is None:
                return None
            now = self._clock()
            self._promote(client, now)
            propagation = self._settings.secret_propagation_seconds
            if propagation > 0:
                client.pending_digest = _digest(secret)
                client.pending_until = now + propagation
            else:
                client.secret_digest = _digest(secret)
                client.pending_digest = None
            client.updated_at = int(now)
            return client, secret

    @staticmethod
    def _promote(client: AppClient, now: float) -> None:
        if client.pending_digest is not None and now >= client.pending_until:
            client.secret_digest = client.pending_digest
            client.pending_digest = None

    def _secret_ok(self, client: AppClient, secret: str, now: float) -> bool:
        self._promote(client, now)
        return hmac.compare_digest(client.secret_digest, _digest(secret))

    # -- tokens ------------------------------------------------------------------------------------

    def _window(self, client_id: str, now: float) -> deque[float]:
        window = self._requests.setdefault(client_id, deque())
        while window and now - window[0] >= WINDOW_SECONDS:
            window.popleft()
        return window

    def issue_token(self, request: TokenRequest) -> dict[str, Any]:
        """Run the client-credentials grant; returns the token response or raises OAuthError."""
        if not request.grant_type:
            raise OAuthError(400, "invalid_request", "Missing required parameter: grant_type")
        missing = [
            name
            for name, value in (
                ("client_id", request.client_id),
                ("client_secret", request.client_secret),
                ("audience", request.audience),
            )
            if not value
        ]
        if missing:
            raise OAuthError(400, "invalid_request", f"Missing required parameter: {', '.join(missing)}")
        if request.grant_type != GRANT_TYPE:
            raise OAuthError(
                400, "unsupported_grant_type", "Grant type not allowed; only client_credentials is supported"
            )
        assert request.client_id is not None
        assert request.client_secret is not None
        with self._lock:
            now = self._clock()
            settings = self._settings
            client = self._by_client_id.get(request.client_id)
            if client is None:
                raise OAuthError(401, "invalid_client", "Unknown client or wrong client credentials")
            window = self._window(client.client_id, now)
            if len(window) >= settings.token_limit_per_hour:
                self._rate_limited += 1
                retry_after = max(1, math.ceil(window[0] + WINDOW_SECONDS - now))
                raise OAuthError(
                    429,
                    "too_many_requests",
                    f"More than {settings.token_limit_per_hour} token requests for this client in one hour",
                    retry_after=retry_after,
                )
            window.append(now)
            if not self._secret_ok(client, request.client_secret, now):
                raise OAuthError(401, "invalid_client", "Unknown client or wrong client credentials")
            if request.audience != self.config.audience:
                raise OAuthError(403, "access_denied", "Service not found for the requested audience")
            iat = int(now)
            claims = {
                "iss": self.issuer,
                "sub": f"{client.client_id}@clients",
                "aud": self.config.audience,
                "iat": iat,
                "exp": iat + settings.token_lifetime_seconds,
                "gty": "client-credentials",
                "azp": client.client_id,
                "jti": str(uuid.uuid4()),
            }
            self._tokens_issued += 1
        token = jwt.encode(claims, self._key, algorithm="HS256")
        return {
            "access_token": token,
            "expires_in": settings.token_lifetime_seconds,
            "token_type": "Bearer",
        }

    def authenticate(self, token: str) -> AppClient:
        """The live client a bearer token was issued to; raises BearerError otherwise."""
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=["HS256"],
                audience=self.config.audience,
                options={
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                    "require": ["sub", "aud", "exp", "iat", "jti"],
                },
            )
        except jwt.InvalidTokenError as exc:
            raise BearerError(f"Invalid access token ({type(exc).__name__})") from None
        exp = claims["exp"]
        sub = claims["sub"]
        if not _is_number(exp) or not isinstance(sub, str) or not sub.endswith("@clients"):
            raise BearerError("Invalid access token (claims)")
        with self._lock:
            if self._clock() >= exp:
                raise BearerError("The access token has expired")
            client = self._by_client_id.get(sub.removesuffix("@clients"))
            if client is None:
                raise BearerError("The access token's app client no longer exists")
            return client

    # -- stats -------------------------------------------------------------------------------------

    def token_requests(self, client_id: str) -> int:
        with self._lock:
            return len(self._window(client_id, self._clock()))

    def stats(self) -> dict[str, Any]:
        with self._lock:
            now = self._clock()
            counts = {cid: len(self._window(cid, now)) for cid in list(self._requests)}
            return {
                "tokenRequests": {cid: n for cid, n in counts.items() if n},
                "tokensIssued": self._tokens_issued,
                "appClients": len(self._clients),
                "rateLimited": self._rate_limited,
            }
