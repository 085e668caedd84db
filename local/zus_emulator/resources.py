"""What the emulator's Zus holds: the three managed roles Zus lists (Builder Admin, Care Team User,
Permissionless) and the app clients, as the guide shows them."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass, field, replace
from typing import Any

BUILDER_ADMIN = "Builder Admin"
CARE_TEAM_USER = "Care Team User"
PERMISSIONLESS = "Permissionless"
APP_CLIENT_TYPE = "auth/app-clients"
ROLE_TYPE = "auth/roles"
MACHINE_TO_MACHINE = "machine_to_machine"
BUILDER_USER_TYPE = "builder"
# The roles' timestamps are fixed (the guide's example epoch) so role documents are deterministic.
ROLE_TIMESTAMP = 1651254340


def role_id(name: str) -> str:
    """The deterministic id of a role: uuid5 of its name."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"zus-emulator:role:{name}"))


BUILDER_ADMIN_ROLE_ID = role_id(BUILDER_ADMIN)
CARE_TEAM_USER_ROLE_ID = role_id(CARE_TEAM_USER)
PERMISSIONLESS_ROLE_ID = role_id(PERMISSIONLESS)


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
    Role(
        id=PERMISSIONLESS_ROLE_ID,
        name=PERMISSIONLESS,
        description="No permissions: authenticates, reads its own app client, and nothing else.",
        permissions=(),
    ),
)
ROLES_BY_ID = {role.id: role for role in ROLES}


def digest(secret: str) -> bytes:
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
    # Which of the client's secrets each digest is: 1 for the one made at creation, +1 per rotation. A
    # token names the one that minted it (``SECRET_GENERATION_CLAIM``), so a test can tell which stored
    # secret version Zus accepted.
    secret_generation: int = 1
    pending_generation: int = 0
    secrets_issued: int = 1

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


class AppClientRegistry:
    """The app clients, by id and by client id, starting with the bootstrap admin.

    Not locked itself: ``EmulatorState`` calls it under its lock. Secrets are made here and returned
    once; only their digests stay.
    """

    def __init__(self, admin: AppClient) -> None:
        self._admin = admin
        self._clients: dict[str, AppClient] = {}
        self._by_client_id: dict[str, AppClient] = {}
        self.reset()

    def reset(self) -> None:
        """Every client but the admin forgotten; the admin as at start (its first secret, too)."""
        self._clients.clear()
        self._by_client_id.clear()
        self._add(replace(self._admin))

    def _add(self, client: AppClient) -> None:
        self._clients[client.id] = client
        self._by_client_id[client.client_id] = client

    def __len__(self) -> int:
        return len(self._clients)

    def get(self, app_client_id: str) -> AppClient | None:
        return self._clients.get(app_client_id)

    def by_client_id(self, client_id: str) -> AppClient | None:
        return self._by_client_id.get(client_id)

    def in_creation_order(self) -> list[AppClient]:
        return sorted(self._clients.values(), key=lambda c: (c.created_at, c.id))

    def create(self, name: str, role: str, now: int) -> tuple[AppClient, str]:
        secret = secrets.token_urlsafe(48)
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
            secret_digest=digest(secret),
        )
        self._add(client)
        return client, secret

    def delete(self, app_client_id: str) -> AppClient | None:
        client = self._clients.pop(app_client_id, None)
        if client is not None:
            self._by_client_id.pop(client.client_id, None)
        return client

    def rotate_secret(self, client: AppClient, now: float, propagation: float) -> str:
        """A new secret for ``client``: current at once, or pending for ``propagation`` seconds."""
        secret = secrets.token_urlsafe(48)
        _promote(client, now)
        client.secrets_issued += 1
        if propagation > 0:
            client.pending_digest = digest(secret)
            client.pending_until = now + propagation
            client.pending_generation = client.secrets_issued
        else:
            client.secret_digest = digest(secret)
            client.secret_generation = client.secrets_issued
            client.pending_digest = None
        client.updated_at = int(now)
        return secret

    @staticmethod
    def secret_ok(client: AppClient, secret: str, now: float, meets_new_secret: bool = False) -> int:
        """The generation of ``secret`` if it is the one known to the node this request meets (the
        pending secret if it ``meets_new_secret``, during a propagation window, else the current one);
        0 if it is not."""
        _promote(client, now)
        known, generation = client.secret_digest, client.secret_generation
        if meets_new_secret and client.pending_digest is not None:
            known, generation = client.pending_digest, client.pending_generation
        return generation if hmac.compare_digest(known, digest(secret)) else 0


def _promote(client: AppClient, now: float) -> None:
    """A pending secret whose propagation window has passed becomes the current one."""
    if client.pending_digest is not None and now >= client.pending_until:
        client.secret_digest = client.pending_digest
        client.secret_generation = client.pending_generation
        client.pending_digest = None
