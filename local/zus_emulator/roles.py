"""``GET /auth/roles[?filter[name]=NAME]``: the guide's step 1. A name lookup answers ``data`` as one
object, as the guide shows, or as a one-element array (``rolesAsArray``)."""

from __future__ import annotations

from .api import Reply, Request
from .state import EmulatorState


def find_roles(state: EmulatorState, request: Request) -> Reply:
    name = dict(request.query_pairs()).get("filter[name]")
    if name is None:
        return Reply(200, {"data": [role.resource() for role in state.roles()]})
    matches = state.roles(name)
    if not matches:
        return Reply(200, {"data": []})
    if state.settings.roles_as_array:
        return Reply(200, {"data": [matches[0].resource()]})
    return Reply(200, {"data": matches[0].resource()})
