"""The app clients: list (any client's token) and create, read, delete and rotate-secret (a Builder
Admin's token), with the guide's step 2 document checked field by field."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from .api import JSON, JSON_API, NO_STORE, ApiError, Reply, Request, error_object, phrase
from .resources import APP_CLIENT_TYPE, BUILDER_USER_TYPE, MACHINE_TO_MACHINE, ROLE_TYPE, ROLES_BY_ID
from .state import EmulatorState

APP_CLIENTS = "/auth/app-clients"
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 100


def list_clients(state: EmulatorState, request: Request) -> Reply:
    params = dict(request.query_pairs())
    size = min(_page_param(params, "page[size]", DEFAULT_PAGE_SIZE), MAX_PAGE_SIZE)
    number = _page_param(params, "page[number]", 1)
    clients = state.list_app_clients()
    start = (number - 1) * size
    page = clients[start : start + size]
    next_link: str | None = None
    if start + size < len(clients):
        query = [(k, v) for k, v in request.query_pairs() if k != "page[number]"]
        query.append(("page[number]", str(number + 1)))
        host = request.header("Host")
        base_url = f"http://{host}" if host else state.issuer
        next_link = f"{base_url}{APP_CLIENTS}?{urlencode(query, safe='[]')}"
    return Reply(200, {"data": [c.resource() for c in page], "links": {"next": next_link}})


def create_client(state: EmulatorState, request: Request) -> Reply:
    if request.media_type not in ("", JSON_API, JSON):
        raise ApiError(415, f"Content-Type must be {JSON_API} or {JSON}")
    name, role = _validate_create(request.json())
    client, secret = state.create_app_client(name, role)
    return Reply(201, {"data": client.resource(secret)}, headers=NO_STORE)


def get_client(state: EmulatorState, request: Request) -> Reply:
    client = state.get_app_client(request.params["id"])
    if client is None:
        raise _not_found(request)
    return Reply(200, {"data": client.resource()})


def delete_client(state: EmulatorState, request: Request) -> Reply:
    if not state.delete_app_client(request.params["id"]):
        raise _not_found(request)
    return Reply(204)


def rotate_secret(state: EmulatorState, request: Request) -> Reply:
    rotated = state.rotate_secret(request.params["id"])
    if rotated is None:
        raise _not_found(request)
    client, secret = rotated
    return Reply(200, {"data": client.resource(secret)}, headers=NO_STORE)


def _not_found(request: Request) -> ApiError:
    return ApiError(404, f"App client {request.params['id']} not found")


def _page_param(params: dict[str, str], key: str, default: int) -> int:
    raw = params.get(key)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ApiError(400, f"{key} must be a positive integer", errors=[_param_error(key)])
    return value


def _param_error(key: str) -> dict[str, Any]:
    return {
        "status": "400",
        "title": phrase(400),
        "detail": f"{key} must be a positive integer",
        "source": {"parameter": key},
    }


def _validate_create(document: Any) -> tuple[str, str]:
    """Check a create-app-client document (the guide's step 2); returns (name, role id)."""
    errors: list[dict[str, Any]] = []

    def fail(pointer: str, detail: str) -> None:
        errors.append(error_object(422, detail, pointer))

    data = document.get("data") if isinstance(document, dict) else None
    if not isinstance(data, dict):
        fail("/data", "data must be an object")
        raise ApiError(422, "", errors=errors)
    if data.get("type") != APP_CLIENT_TYPE:
        fail("/data/type", f"type must be {APP_CLIENT_TYPE!r}")
    attributes = data.get("attributes")
    name = ""
    if not isinstance(attributes, dict):
        fail("/data/attributes", "attributes must be an object")
    else:
        if attributes.get("type") != MACHINE_TO_MACHINE:
            fail("/data/attributes/type", f"type must be {MACHINE_TO_MACHINE!r}")
        raw_name = attributes.get("name")
        if not isinstance(raw_name, str) or not raw_name.strip():
            fail("/data/attributes/name", "name must be a non-empty string")
        elif len(raw_name) > 256:
            fail("/data/attributes/name", "name must be at most 256 characters")
        else:
            name = raw_name
        if attributes.get("userType") != BUILDER_USER_TYPE:
            fail("/data/attributes/userType", f"userType must be {BUILDER_USER_TYPE!r}")
    role = ""
    relationships = data.get("relationships")
    role_rel = relationships.get(ROLE_TYPE) if isinstance(relationships, dict) else None
    role_data = role_rel.get("data") if isinstance(role_rel, dict) else None
    pointer = "/data/relationships/auth~1roles/data"
    if not isinstance(role_data, dict):
        fail(pointer, "relationships['auth/roles'].data must be an object")
    else:
        if "type" in role_data and role_data["type"] != ROLE_TYPE:
            fail(pointer + "/type", f"type must be {ROLE_TYPE!r}")
        role_id = role_data.get("id")
        if not isinstance(role_id, str) or role_id not in ROLES_BY_ID:
            fail(pointer + "/id", "id must be the id of an existing role")
        else:
            role = role_id
    if errors:
        raise ApiError(422, errors[0]["detail"], errors=errors)
    return name, role
