"""In-memory fakes of Zus's admin API, the token issuer and admin tokens."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from fakes import ADMIN, FakeTokenTable

from zus_m2m import errors
from zus_m2m.admin_values import AppClient, AppClientSecret, Role
from zus_m2m.values import CachedToken, ClientCredentials


@dataclass
class FakeZusAdmin:
    """Zus's admin API in memory. ``fail`` maps an operation to the errors its next calls raise;
    ``after`` maps an operation to a hook run after it changed state (e.g. to drop its answer)."""

    clock: Callable[[], float] = lambda: 1_000_000.0
    admin_token: str = "admin-token"
    roles: dict[str, str] = field(
        default_factory=lambda: {"Builder Admin": "role-builder-admin", "Care Team User": "role-care-team"}
    )
    clients: dict[str, tuple[AppClient, str]] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    fail: dict[str, list[Exception]] = field(default_factory=dict)
    after: dict[str, Callable[[], None]] = field(default_factory=dict)
    delay: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)
    counter: int = 0

    def _enter(self, operation: str, bearer: str, admin: bool = True) -> None:
        with self.lock:
            self.calls.append(operation)
            failures = self.fail.get(operation)
            failure = failures.pop(0) if failures else None
        if failure is not None:
            raise failure
        if admin and bearer != self.admin_token:
            raise errors.ZusForbidden(operation, 403, "Forbidden")

    def find_role(self, name: str, bearer: str) -> Role:
        self._enter("role lookup", bearer)
        if name not in self.roles:
            raise errors.UnknownRole(name, list(self.roles))
        return Role(id=self.roles[name], name=name)

    def add_client(self, name: str, role_id: str, created_at: int) -> AppClientSecret:
        with self.lock:
            self.counter += 1
            client = AppClient(
                id=f"app-{self.counter}",
                client_id=f"cid-{self.counter}",
                name=name,
                role_id=role_id,
                created_at=created_at,
                updated_at=created_at,
            )
            secret = f"secret-{self.counter}"
            self.clients[client.id] = (client, secret)
        return AppClientSecret(client, secret)

    def create_app_client(self, name: str, role_id: str, bearer: str) -> AppClientSecret:
        self._enter("create app client", bearer)
        if self.delay:
            time.sleep(self.delay)
        created = self.add_client(name, role_id, int(self.clock()))
        hook = self.after.get("create app client")
        if hook is not None:
            hook()
        return created

    def list_app_clients(self, bearer: str) -> list[AppClient]:
        self._enter("list app clients", bearer, admin=False)
        return [client for client, _ in self.clients.values()]

    def get_app_client(self, app_client_id: str, bearer: str) -> AppClient:
        self._enter("get app client", bearer, admin=False)
        if app_client_id not in self.clients:
            raise errors.ZusNotFound("get app client", 404, "Not Found")
        return self.clients[app_client_id][0]

    def delete_app_client(self, app_client_id: str, bearer: str) -> None:
        self._enter("delete app client", bearer)
        if self.clients.pop(app_client_id, None) is None:
            raise errors.ZusNotFound("delete app client", 404, "Not Found")

    def rotate_secret(self, app_client_id: str, bearer: str) -> AppClientSecret:
        self._enter("rotate secret", bearer)
        with self.lock:
            client, _ = self.clients[app_client_id]
            self.counter += 1
            secret = f"rotated-{self.counter}"
            self.clients[app_client_id] = (client, secret)
        return AppClientSecret(client, secret)

    def named(self, name: str) -> list[AppClient]:
        return [client for client, _ in self.clients.values() if client.name == name]

    def secret_of(self, app_client_id: str) -> str:
        return self.clients[app_client_id][1]


@dataclass
class FakeTokenIssuer:
    """Token vending's issue_with against FakeZusAdmin: a token only for the client's current secret,
    cached in ``table`` when given (with the secret version that minted it); ``refusals`` makes it
    refuse that many requests first (a secret still propagating at Zus)."""

    zus: FakeZusAdmin
    issued: list[str] = field(default_factory=list)
    refusals: int = 0
    attempts: list[str] = field(default_factory=list)
    table: FakeTokenTable | None = None

    def issue_with(self, client: str, credentials: ClientCredentials) -> CachedToken:
        self.attempts.append(client)
        if self.refusals > 0:
            self.refusals -= 1
            raise errors.ZusCredentialsRefused("token request", 401, "invalid_client")
        current = self.zus.clients.get(credentials.app_client_id)
        if current is None or current[1] != credentials.client_secret:
            raise errors.ZusCredentialsRefused("token request", 401, "invalid_client")
        self.issued.append(client)
        token = CachedToken(
            f"token-for-{client}",
            "Bearer",
            self.zus.clock() + 3600,
            credentials.app_client_id,
            secret_version=credentials.version_id,
        )
        if self.table is not None:
            self.table.put_token(client, token, None)
        return token


@dataclass
class FakeAdminTokens:
    """The bootstrap admin's bearer token: FakeZusAdmin's admin token unless a test swaps ``token``
    (e.g. for a Care Team User's) or removes the admin's secret (``missing``)."""

    zus: FakeZusAdmin
    token: str | None = None
    missing: bool = False
    taken: int = 0

    def bearer(self) -> str:
        if self.missing:
            raise errors.ResourceNotFound(f"no managed app client named {ADMIN!r}")
        self.taken += 1
        return self.token or self.zus.admin_token
