"""The emulator's routes: method, path pattern, who may call, and the handler, in one table.

Adding a route is one row here and one handler ``(state, request) -> Reply`` in the module of its
resource. A path no row matches answers 404; a path some row matches with another method answers 405
with ``Allow`` listing the rows' methods in table order. Bearer tokens are checked before the handler
runs: 401 without a valid one, 403 when the route needs a Builder Admin and the client is not one.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable
from dataclasses import dataclass

from . import app_clients, control, oauth, roles
from .api import ApiError, Reply, Request
from .state import EmulatorState
from .tokens import BearerError

Handler = Callable[[EmulatorState, Request], Reply]


class Access(enum.Enum):
    PUBLIC = "no token"
    ANY_CLIENT = "any app client's bearer token"
    BUILDER_ADMIN = "a Builder Admin's bearer token"


@dataclass(frozen=True)
class Route:
    method: str
    pattern: str  # literal segments and {name} parameters, each one non-empty path segment
    handler: Handler
    access: Access

    def match(self, path: str) -> dict[str, str] | None:
        """The path parameters if ``path`` has this route's shape, else None."""
        expected, actual = self.pattern.split("/"), path.split("/")
        if len(expected) != len(actual):
            return None
        params: dict[str, str] = {}
        for want, have in zip(expected, actual, strict=True):
            if want.startswith("{") and want.endswith("}") and have:
                params[want[1:-1]] = have
            elif want != have:
                return None
        return params


ROUTES: tuple[Route, ...] = (
    Route("POST", "/oauth/token", oauth.issue_token, Access.PUBLIC),
    Route("GET", "/auth/roles", roles.find_roles, Access.BUILDER_ADMIN),
    Route("GET", "/auth/app-clients", app_clients.list_clients, Access.ANY_CLIENT),
    Route("POST", "/auth/app-clients", app_clients.create_client, Access.BUILDER_ADMIN),
    Route("GET", "/auth/app-clients/{id}", app_clients.get_client, Access.ANY_CLIENT),
    Route("DELETE", "/auth/app-clients/{id}", app_clients.delete_client, Access.BUILDER_ADMIN),
    Route("POST", "/auth/app-clients/{id}/rotate-secret", app_clients.rotate_secret, Access.BUILDER_ADMIN),
    Route("GET", "/_emulator/stats", control.stats, Access.PUBLIC),
    Route("GET", "/_emulator/faults", control.get_faults, Access.PUBLIC),
    Route("POST", "/_emulator/faults", control.set_faults, Access.PUBLIC),
    Route("GET", "/_emulator/config", control.get_config, Access.PUBLIC),
    Route("POST", "/_emulator/config", control.set_config, Access.PUBLIC),
    Route("POST", "/_emulator/reset", control.reset, Access.PUBLIC),
    Route("GET", "/_emulator/health", control.health, Access.PUBLIC),
)


def dispatch(state: EmulatorState, request: Request, routes: tuple[Route, ...] = ROUTES) -> Reply:
    """Answer ``request`` with the route its method and path select."""
    matches = [(route, params) for route in routes if (params := route.match(request.path)) is not None]
    if not matches:
        raise ApiError(404, f"No route for {request.path}")
    chosen = next(((route, params) for route, params in matches if route.method == request.method), None)
    if chosen is None:
        allowed = ", ".join(route.method for route, _ in matches)
        raise ApiError(405, f"{request.method} is not allowed on {request.path}", headers={"Allow": allowed})
    route, params = chosen
    authorize(state, request, route.access)
    return route.handler(state, dataclasses.replace(request, params=params))


def authorize(state: EmulatorState, request: Request, access: Access) -> None:
    if access is Access.PUBLIC:
        return
    challenge = {"WWW-Authenticate": 'Bearer realm="zus-emulator"'}
    header = request.header("Authorization")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if not header:
        raise ApiError(401, "Missing bearer token", headers=challenge)
    if scheme.lower() != "bearer" or not token or " " in token:
        raise ApiError(401, "Malformed Authorization header; expected 'Bearer <token>'", headers=challenge)
    try:
        client = state.authenticate(token)
    except BearerError as exc:
        raise ApiError(401, exc.detail, headers=challenge) from None
    if access is Access.BUILDER_ADMIN and not client.is_admin:
        raise ApiError(403, "This operation needs an app client with the Builder Admin role")
