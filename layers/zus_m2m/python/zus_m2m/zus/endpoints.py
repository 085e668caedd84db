"""Where Zus lives: base URLs per environment and every path the client calls, in one place."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

# Zus's guide names a rotate-secret call without giving its path: this path is an assumption, made
# after the app-client paths beside it.
ROTATE_SECRET_PATH = "/auth/app-clients/{app_client_id}/rotate-secret"
ROLES_PATH = "/auth/roles"
APP_CLIENTS_PATH = "/auth/app-clients"
APP_CLIENT_PATH = "/auth/app-clients/{app_client_id}"
TOKEN_PATH = "/oauth/token"

_ENVIRONMENTS = {
    "sandbox": ("https://api.sandbox.zusapi.com", "https://auth.sandbox.zusapi.com"),
    "production": ("https://api.zusapi.com", "https://auth.zusapi.com"),
}


@dataclass(frozen=True)
class ZusEndpoints:
    """Base URLs of one Zus environment. The audience is the API base URL unless overridden."""

    api_base: str
    auth_base: str
    audience: str

    @classmethod
    def for_environment(
        cls,
        environment: str,
        *,
        api_base: str | None = None,
        auth_base: str | None = None,
        audience: str | None = None,
    ) -> ZusEndpoints:
        """``sandbox`` or ``production``, each URL overridable (``custom`` needs both bases)."""
        defaults = _ENVIRONMENTS.get(environment)
        if defaults is None and not (api_base and auth_base):
            known = ", ".join([*_ENVIRONMENTS, "custom"])
            raise ValueError(
                f"unknown Zus environment {environment!r} (known: {known}); "
                "a custom environment needs both an API and an auth base URL"
            )
        default_api, default_auth = defaults or ("", "")
        resolved_api = (api_base or default_api).rstrip("/")
        return cls(
            api_base=resolved_api,
            auth_base=(auth_base or default_auth).rstrip("/"),
            # The audience is an identifier: a custom API base (an emulator) still uses the
            # environment's public API URL unless told otherwise.
            audience=audience or default_api or resolved_api,
        )

    def api(self, path: str, **params: str) -> str:
        return self.api_base + path.format(**{k: quote(v, safe="") for k, v in params.items()})

    @property
    def token_url(self) -> str:
        return self.auth_base + TOKEN_PATH
