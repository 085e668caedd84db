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
    data = document.get("data") if isinstance(document, dict) else None
    if not isinstance(data, dict):
        raise ApiError(422, "", errors=[error_object(422, "data must be an object", "/data")])
    errors: list[dict[str, Any]] = []
    if data.get("type") != APP_CLIENT_TYPE:
        errors.append(error_object(422, f"type must be {APP_CLIENT_TYPE!r}", "/data/type"))
    name = _checked_attributes(data.get("attributes"), errors)
    role = _checked_role(data.get("relationships"), errors)
    if errors:
        raise ApiError(422, errors[0]["detail"], errors=errors)
    return name, role


def _checked_attributes(attributes: Any, errors: list[dict[str, Any]]) -> str:
    """The new client's name from ``data.attributes``; each problem found goes to ``errors``."""
    pointer = "/data/attributes"
    if not isinstance(attributes, dict):
        errors.append(error_object(422, "attributes must be an object", pointer))
        return ""
    if attributes.get("type") != MACHINE_TO_MACHINE:
        errors.append(error_object(422, f"type must be {MACHINE_TO_MACHINE!r}", pointer + "/type"))
    name = attributes.get("name")
    if not isinstance(name, str) or not name.strip():
        errors.append(error_object(422, "name must be a non-empty string", pointer + "/name"))
        name = ""
    elif len(name) > 256:
        errors.append(error_object(422, "name must be at most 256 characters", pointer + "/name"))
        name = ""
    if attributes.get("userType") != BUILDER_USER_TYPE:
        errors.append(error_object(422, f"userType must be {BUILDER_USER_TYPE!r}", pointer + "/userType"))
    return name


def _checked_role(relationships: Any, errors: list[dict[str, Any]]) -> str:
    """The role id from ``data.relationships['auth/roles']``; each problem found goes to ``errors``."""
    pointer = "/data/relationships/auth~1roles/data"
    role_rel = relationships.get(ROLE_TYPE) if isinstance(relationships, dict) else None
    role_data = role_rel.get("data") if isinstance(role_rel, dict) else None
    if not isinstance(role_data, dict):
        errors.append(error_object(422, "relationships['auth/roles'].data must be an object", pointer))
        return ""
    if "type" in role_data and role_data["type"] != ROLE_TYPE:
        errors.append(error_object(422, f"type must be {ROLE_TYPE!r}", pointer + "/type"))
    role_id = role_data.get("id")
    if isinstance(role_id, str) and role_id in ROLES_BY_ID:
        return role_id
    errors.append(error_object(422, "id must be the id of an existing role", pointer + "/id"))
    return ""
