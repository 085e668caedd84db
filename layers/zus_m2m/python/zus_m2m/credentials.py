"""The JSON document stored in each managed client's secret (docs/design.md, Secrets Manager)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from zus_m2m.errors import ConfigurationError


@dataclass(frozen=True)
class ClientCredentials:
    name: str
    app_client_id: str
    client_id: str
    client_secret: str = field(repr=False)
    role_id: str = ""
    role_name: str = ""
    audience: str = ""

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
    def from_json(cls, text: str, secret_id: str) -> ClientCredentials:
        """Parse a stored secret. Errors name the secret and the missing fields, never a value."""
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
        )

    def with_secret(self, client_secret: str) -> ClientCredentials:
        return ClientCredentials(
            self.name,
            self.app_client_id,
            self.client_id,
            client_secret,
            self.role_id,
            self.role_name,
            self.audience,
        )
