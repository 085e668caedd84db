"""What the route decorators tell Powertools' OpenAPI generator: summaries, parameters, bodies and
every answer a route gives, errors (``application/problem+json``) included.

Documentation only: handlers pass these as decorator arguments and nothing reads them while serving.
The token vending function, which serves its one route without a resolver, does not import this
module: its route's arguments are in ``UNROUTED``.
``scripts/openapi.py`` (``make openapi``) builds ``docs/openapi.json`` from the resolvers with
``app.get_openapi_schema()``, which needs pydantic; that runs in the dev venv, never in Lambda, and
this module imports nothing beyond the standard library and the package's own stdlib-only modules.

Powertools replaces an operation's ``parameters`` with the ones it reads from the handler's
signature (the path's ``name``, as a bare string), so declared parameters travel in the extension
``x-zus-m2m-parameters`` and the script merges them back.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from zus_m2m import problem
from zus_m2m.access import MAX_PRINCIPALS, PRINCIPAL_REGEX
from zus_m2m.validation import CLIENT_NAME_REGEX
from zus_m2m.values import FINGERPRINT_REGEX

PARAMETERS_EXTENSION = "x-zus-m2m-parameters"
JSON = "application/json"


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


_EPOCH = {"type": "integer", "description": "seconds since the Unix epoch"}
_NULLABLE_EPOCH = {"type": ["integer", "null"], "description": "seconds since the Unix epoch, or null"}
_CONSUMERS = {
    "type": "array",
    "maxItems": MAX_PRINCIPALS,
    "description": (
        "IAM principals that may get the client's token: role ARNs (every session of the role), IAM user "
        "ARNs, or an account's root ARN (every principal of the account); no wildcards"
    ),
    "items": {"type": "string", "pattern": PRINCIPAL_REGEX},
}
# The provisioning record's fields: the record itself, and the first part of a client's details.
_RECORD_PROPERTIES: dict[str, Any] = {
    "name": {"type": "string"},
    "appClientId": {"type": "string"},
    "clientId": {"type": "string"},
    "roleId": {"type": "string"},
    "roleName": {"type": "string"},
    "secretArn": {"type": "string"},
    "createdAt": _EPOCH,
    "consumers": _CONSUMERS,
}

# The shared schemas, added to the document's components by scripts/openapi.py.
SCHEMAS: Mapping[str, dict[str, Any]] = {
    "Problem": problem.SCHEMA,
    "CreateAppClient": {
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": {"type": "string", "pattern": CLIENT_NAME_REGEX},
            "roleName": {
                "enum": ["Builder Admin", "Care Team User"],
                "default": "Builder Admin",
                "description": (
                    "a role Zus knows and the stack allows (AllowedZusRoles; 422 otherwise); Builder Admin is the "
                    "one recommended for M2M"
                ),
            },
            "consumers": {
                **_CONSUMERS,
                "description": "who may get the client's token; a repeated create naming other consumers is 409",
            },
        },
        "additionalProperties": False,
    },
    "UpdateAppClient": {
        "type": "object",
        "required": ["consumers"],
        "properties": {"consumers": {**_CONSUMERS, "description": "replaces the client's consumers"}},
        "additionalProperties": False,
    },
    "AppClient": {
        "type": "object",
        "description": "A managed client's record; never its secret.",
        "required": list(_RECORD_PROPERTIES),
        "properties": _RECORD_PROPERTIES,
        "additionalProperties": False,
    },
    "AppClientDetails": {
        "type": "object",
        "description": "The record, its rotation dates, its cached token's expiry and its hourly budget.",
        "required": [*_RECORD_PROPERTIES, "lastRotation", "nextRotation", "token", "budget"],
        "properties": {
            **_RECORD_PROPERTIES,
            "lastRotation": _NULLABLE_EPOCH,
            "nextRotation": _NULLABLE_EPOCH,
            "token": {
                "type": "object",
                "required": ["cached", "expiresAt"],
                "properties": {"cached": {"type": "boolean"}, "expiresAt": _NULLABLE_EPOCH},
                "additionalProperties": False,
            },
            "budget": {
                "type": "object",
                "required": ["usedLastHour", "limit"],
                "properties": {"usedLastHour": {"type": "integer"}, "limit": {"type": "integer"}},
                "additionalProperties": False,
            },
        },
        "additionalProperties": False,
    },
    "AppClientList": {
        "type": "object",
        "required": ["appClients", "nextToken"],
        "properties": {
            "appClients": {"type": "array", "items": ref("AppClient")},
            "nextToken": {"type": ["string", "null"], "description": "the next page's token; null on the last"},
        },
        "additionalProperties": False,
    },
    "AppClientDrift": {
        "type": "object",
        "required": ["unmanagedAtZus", "missingAtZus"],
        "properties": {
            "unmanagedAtZus": {
                "type": "array",
                "description": "app clients at Zus that this stack does not manage",
                "items": {
                    "type": "object",
                    "required": ["appClientId", "clientId", "name", "roleId"],
                    "properties": {
                        "appClientId": {"type": "string"},
                        "clientId": {"type": "string"},
                        "name": {"type": "string"},
                        "roleId": {"type": ["string", "null"]},
                    },
                    "additionalProperties": False,
                },
            },
            "missingAtZus": {
                "type": "array",
                "description": "managed clients whose app client Zus no longer has",
                "items": {
                    "type": "object",
                    "required": ["name", "appClientId", "clientId"],
                    "properties": {
                        "name": {"type": "string"},
                        "appClientId": {"type": "string"},
                        "clientId": {"type": "string"},
                    },
                    "additionalProperties": False,
                },
            },
        },
        "additionalProperties": False,
    },
    "RotationRequest": {
        "type": "object",
        "properties": {
            "repair": {
                "type": "boolean",
                "default": False,
                "description": "repair the rotation in progress now (roll it forward, or start it again) "
                "instead of answering 409",
            },
        },
        "additionalProperties": False,
    },
    "RotationStarted": {
        "type": "object",
        "required": ["name", "secretArn", "rotation"],
        "properties": {
            "name": {"type": "string"},
            "secretArn": {"type": "string"},
            "rotation": {
                "enum": ["started", "rolled-forward", "rotation-restarted", "recovery-started"],
                "description": "started: a new rotation; otherwise how the rotation in progress was repaired",
            },
        },
        "additionalProperties": False,
    },
    "AccessToken": {
        "type": "object",
        "required": ["access_token", "token_type", "expires_in", "expires_at"],
        "properties": {
            "access_token": {"type": "string"},
            "token_type": {"type": "string"},
            "expires_in": {"type": "integer", "description": "seconds left"},
            "expires_at": _EPOCH,
        },
        "additionalProperties": False,
    },
}

NAME: dict[str, Any] = {
    "name": "name",
    "in": "path",
    "required": True,
    "description": "the app client's name: 1-64 characters of a-z0-9._- (lower case), other than '.' and '..'",
    "schema": {"type": "string", "pattern": CLIENT_NAME_REGEX},
}


def query_parameter(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    """An optional query parameter."""
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}


MIN_TTL = query_parameter(
    "minTtl",
    "seconds the token must still be valid for",
    {"type": "integer", "minimum": 0, "maximum": 3000, "default": 60},
)
REFUSED = query_parameter(
    "refused",
    "the fingerprint (the first 16 hex characters of its SHA-256) of a token Zus refused: if it is the"
    " cached token, one new token replaces it for every caller; otherwise the cached token is returned",
    {"type": "string", "pattern": FINGERPRINT_REGEX},
)
LIMIT = query_parameter("limit", "records per page", {"type": "integer", "minimum": 1, "maximum": 100, "default": 50})
NEXT_TOKEN = query_parameter(
    "nextToken",
    "the nextToken of the previous page (opaque)",
    {"type": "string", "minLength": 1, "maxLength": 4096},
)
CREATE_BODY: dict[str, Any] = {
    "required": True,
    "content": {JSON: {"schema": ref("CreateAppClient")}},
}
ROTATION_BODY: dict[str, Any] = {
    "required": False,
    "content": {JSON: {"schema": ref("RotationRequest")}},
}
UPDATE_BODY: dict[str, Any] = {
    "required": True,
    "content": {JSON: {"schema": ref("UpdateAppClient")}},
}

_ERRORS = {
    400: "the input is malformed (a name, a query parameter or the body) or unexpected (a parameter the route "
    "does not take, a key given twice)",
    403: (
        "the caller may not: only the stack's admins manage clients, only a client's consumers get its token "
        "(a caller that is not an admin gets 403 also for a client that does not exist)"
    ),
    404: "no managed app client of that name",
    409: "the request conflicts with the client's state",
    422: "well formed but impossible (an unknown role, a minTtl longer than tokens live)",
    429: (
        "the client's hourly token budget is spent, or a rotation was requested less than the stack's minimum "
        "gap ago; retry after Retry-After seconds"
    ),
    503: "a dependency (Zus, DynamoDB, Secrets Manager) failed or is busy; retry after Retry-After seconds",
}
_RETRY_AFTER = {
    "Retry-After": {
        "description": "seconds to wait before retrying",
        "required": True,
        "schema": {"type": "string", "pattern": "^[1-9][0-9]*$"},
    }
}
_NO_STORE = {"Cache-Control": {"description": "always no-store", "schema": {"type": "string", "const": "no-store"}}}


def operation(
    *,
    ok: Mapping[int, tuple[str, str | None]],
    errors: Iterable[int],
    parameters: Iterable[Mapping[str, Any]] = (),
    request_body: Mapping[str, Any] | None = None,
    description: str | None = None,
    ok_headers: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Decorator arguments: ``ok`` maps each success status to (description, schema name or None for
    no body); every status in ``errors`` answers a ``Problem``, 429 and 503 with ``Retry-After``."""
    responses: dict[int, dict[str, Any]] = {}
    for status, (text, schema) in ok.items():
        content = {JSON: {"schema": ref(schema)}} if schema else {}
        responses[status] = {"description": text, "content": content, "headers": {**_NO_STORE, **(ok_headers or {})}}
    for status in errors:
        headers = {**_NO_STORE, **(_RETRY_AFTER if status in (429, 503) else {})}
        responses[status] = {
            "description": _ERRORS[status],
            "content": {problem.MEDIA_TYPE: {"schema": ref("Problem")}},
            "headers": headers,
        }
    extensions: dict[str, Any] = {}
    if parameters:
        extensions[PARAMETERS_EXTENSION] = [dict(parameter) for parameter in parameters]
    if request_body is not None:
        extensions["requestBody"] = dict(request_body)
    arguments: dict[str, Any] = {"responses": responses, "openapi_extensions": extensions}
    if description:
        arguments["description"] = description
    return arguments


# The routes served without a resolver, by (method, path as a resolver writes it): the decorator's
# keyword arguments each would have. The token vending function serves its one route with
# zus_m2m.edge.serve and never imports this module; scripts/openapi.py puts the route it declares
# (its ``ROUTE``) on a resolver of its own, with these arguments.
UNROUTED: Mapping[tuple[str, str], Mapping[str, Any]] = {
    ("GET", "/app-clients/<name>/token"): {
        "summary": "A Zus access token with at least minTtl seconds left",
        **operation(
            ok={200: ("the token (X-Token-Source: the tier that answered)", "AccessToken")},
            errors=(400, 403, 404, 422, 429, 503),
            parameters=(NAME, MIN_TTL, REFUSED),
        ),
    },
}
