"""In-memory state and rules of the Zus emulator (no sockets, no HTTP).

Everything here is thread-safe (one re-entrant lock guards all state) and reads time only from the
injectable ``clock`` of :class:`EmulatorConfig`, so the rules can be unit-tested with a fake clock.

Rules worth knowing:

* Token requests are counted per known client id in a sliding hour: a request at time ``t`` counts
  while ``now - t < 3600``. A request is counted when its client id is known and the client is not
  already over the limit — failed secrets count too (as Auth0 does); 429'd requests never count.
* Order of token-request checks: fields present → ``grant_type`` → client id known (401) → hourly
  limit (429) → count → secret (401) → audience (403). How each refusal is worded depends on the
  dialect (``dialects.py``): Auth0's by default, or RFC 6749's.
* Secret rotation with a propagation window ``P > 0``: for ``P`` seconds each request meets a node
  that knows the old secret or the new one, at random (``propagationMode`` "random", as Auth0 does),
  or the old one alone ("old-then-new"); afterwards only the new one works. A second rotation during
  the window replaces the *pending* secret (the newest wins and its window restarts); the current
  secret stays known until the newest pending one takes over. The secret that was pending before
  never works.
"""

from __future__ import annotations

import random
import threading
import uuid
from typing import Any

from . import dialects
from .config import RANDOM, EmulatorConfig, Settings, parse_settings_patch
from .faults import FaultSwitch
from .resources import BUILDER_ADMIN_ROLE_ID, ROLES, ROLES_BY_ID, AppClient, AppClientRegistry, Role, digest
from .tokens import GRANT_TYPE, WINDOW_SECONDS, BearerError, OAuthError, RequestLog, TokenRequest, TokenSigner


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
        self._rng = rng or random.Random()  # fault sampling and propagation, not cryptography
        self._lock = threading.RLock()
        self._signer = TokenSigner(self.config.audience)
        self.admin_app_client_id = str(
            uuid.uuid5(uuid.NAMESPACE_URL, f"zus-emulator:app-client:{self.config.admin_client_id}")
        )
        created_at = int(self._clock())
        self._clients = AppClientRegistry(
            AppClient(
                id=self.admin_app_client_id,
                client_id=self.config.admin_client_id,
                name=self.config.admin_client_id,
                role_id=BUILDER_ADMIN_ROLE_ID,
                created_at=created_at,
                updated_at=created_at,
                secret_digest=digest(self.config.admin_client_secret),
            )
        )
        self._requests = RequestLog()
        self._tokens_issued = 0
        self._rate_limited = 0
        self.faults = FaultSwitch(self._rng)
        self._settings = Settings.at_start(self.config)

    def reset(self) -> None:
        """Forget every client but the admin (restored as at start), counters, stats, faults, settings."""
        with self._lock:
            self._clients.reset()
            self._requests.clear()
            self._tokens_issued = 0
            self._rate_limited = 0
            self.faults.reset()
            self._settings = Settings.at_start(self.config)

    def now(self) -> float:
        return self._clock()

    # -- settings ------------------------------------------------------------------------------------

    @property
    def settings(self) -> Settings:
        with self._lock:
            return self._settings

    def update_settings(self, patch: object) -> Settings:
        with self._lock:
            self._settings = parse_settings_patch(patch, self._settings)
            return self._settings

    # -- roles and app clients ---------------------------------------------------------------------

    def roles(self, name: str | None = None) -> list[Role]:
        return [role for role in ROLES if name is None or role.name == name]

    def create_app_client(self, name: str, role: str) -> tuple[AppClient, str]:
        """Create a client; returns it and its secret (shown only now). Duplicate names are allowed."""
        if role not in ROLES_BY_ID:
            raise KeyError(role)
        with self._lock:
            return self._clients.create(name, role, int(self._clock()))

    def get_app_client(self, app_client_id: str) -> AppClient | None:
        with self._lock:
            return self._clients.get(app_client_id)

    def list_app_clients(self) -> list[AppClient]:
        with self._lock:
            return self._clients.in_creation_order()

    def delete_app_client(self, app_client_id: str) -> bool:
        with self._lock:
            client = self._clients.delete(app_client_id)
            if client is None:
                return False
            self._requests.forget(client.client_id)
            return True

    def rotate_secret(self, app_client_id: str) -> tuple[AppClient, str] | None:
        """Give the client a new secret; returns it and the new secret, or None if unknown."""
        with self._lock:
            client = self._clients.get(app_client_id)
            if client is None:
                return None
            propagation = self._settings.secret_propagation_seconds
            return client, self._clients.rotate_secret(client, self._clock(), propagation)

    # -- tokens ------------------------------------------------------------------------------------

    def issue_token(self, request: TokenRequest) -> dict[str, Any]:
        """Run the client-credentials grant; returns the token response or raises OAuthError."""
        if not request.grant_type:
            raise OAuthError(400, "invalid_request", "Missing required parameter: grant_type")
        fields = (
            ("client_id", request.client_id),
            ("client_secret", request.client_secret),
            ("audience", request.audience),
        )
        missing = [name for name, value in fields if not value]
        if missing:
            raise OAuthError(400, "invalid_request", f"Missing required parameter: {', '.join(missing)}")
        dialect = self.settings.dialect
        if request.grant_type != GRANT_TYPE:
            raise dialects.grant_not_allowed(dialect)
        assert request.client_id is not None
        assert request.client_secret is not None
        with self._lock:
            now = self._clock()
            settings = self._settings
            client = self._clients.by_client_id(request.client_id)
            if client is None:
                raise dialects.bad_credentials(dialect)
            if self._requests.count(client.client_id, now) >= settings.token_limit_per_hour:
                self._rate_limited += 1
                wait = self._requests.seconds_until_one_expires(client.client_id, now)
                limit = settings.token_limit_per_hour
                raise dialects.throttled(dialect, wait, f"More than {limit} token requests for this client in one hour")
            self._requests.record(client.client_id, now)
            generation = self._clients.secret_ok(
                client, request.client_secret, now, self._meets_new_secret(client, now)
            )
            if not generation:
                raise dialects.bad_credentials(dialect)
            if request.audience != self.config.audience:
                raise dialects.audience_denied(dialect)
            self._tokens_issued += 1
        token = self._signer.sign(
            issuer=self.issuer,
            client_id=client.client_id,
            issued_at=int(now),
            lifetime_seconds=settings.token_lifetime_seconds,
            generation=generation,
        )
        return {"access_token": token, "expires_in": settings.token_lifetime_seconds, "token_type": "Bearer"}

    def _meets_new_secret(self, client: AppClient, now: float) -> bool:
        """Whether this request meets a node that already knows a propagating secret (under the lock)."""
        propagating = client.pending_digest is not None and now < client.pending_until
        return propagating and self._settings.propagation_mode == RANDOM and self._rng.random() < 0.5

    def rate_limit_headers(self, client_id: str | None) -> dict[str, str]:
        """The dialect's rate-limit headers for a token answer to ``client_id`` (none in RFC 6749's)."""
        with self._lock:
            now = self._clock()
            settings = self._settings
            used = self._requests.count(client_id, now) if client_id else 0
            oldest = self._requests.oldest(client_id, now) if client_id else None
            reset_at = now if oldest is None else oldest + WINDOW_SECONDS
            return dialects.rate_limit_headers(
                settings.dialect, settings.token_limit_per_hour, settings.token_limit_per_hour - used, reset_at
            )

    def authenticate(self, token: str) -> AppClient:
        """The live client a bearer token was issued to; raises BearerError otherwise."""
        client_id, expires = self._signer.verify(token)
        with self._lock:
            if self._clock() >= expires:
                raise BearerError("The access token has expired")
            client = self._clients.by_client_id(client_id)
            if client is None:
                raise BearerError("The access token's app client no longer exists")
            return client

    # -- stats -------------------------------------------------------------------------------------

    def token_requests(self, client_id: str) -> int:
        with self._lock:
            return self._requests.count(client_id, self._clock())

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "tokenRequests": self._requests.counts(self._clock()),
                "tokensIssued": self._tokens_issued,
                "appClients": len(self._clients),
                "rateLimited": self._rate_limited,
                "faultsFired": self.faults.fired(),
            }
