"""The admin functions' HTTP edge: Powertools' HTTP API resolver on ``zus_m2m.edge`` (the caller,
query strings, JSON and problem+json answers, the error mapping, one audit line per call), and every
admin route's input read strictly: request bodies and pages.

Every route reads its input here or in ``edge``, strictly: a query parameter the route does not take,
a JSON body with a key twice, a field a body does not have, are each a 400 naming what was wrong.

The resolver's exception handlers and its audit line are ``edge``'s, the same code the token vending
function runs without a router. The caller is API Gateway's IAM authorizer context (``caller_of``);
what it may do is ``zus_m2m.access``'s to decide.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2
from aws_lambda_powertools.utilities.data_classes.common import BaseProxyEvent

from zus_m2m import edge, validation
from zus_m2m.access import AccessPolicy, Caller, principal_list
from zus_m2m.admin_values import CreateRequest, RotationRequest
from zus_m2m.errors import InvalidRequest, ZusM2MError
from zus_m2m.values import DEFAULT_ROLE

NO_STORE = edge.NO_STORE
CREATE_FIELDS = ("name", "roleName", "consumers")
UPDATE_FIELDS = ("consumers",)
ROTATION_FIELDS = ("repair",)
_ROLE_NAME_MAX = 128
LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX = 50, 100
_NEXT_TOKEN_MAX = 4096


def _response(answer: edge.Response) -> Response[str]:
    """``edge``'s answer as the resolver's Response (which the resolver turns back into the same dict)."""
    headers = answer["headers"]
    return Response(
        status_code=answer["statusCode"], content_type=headers["Content-Type"], body=answer["body"], headers=headers
    )


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response[str]:
    return _response(edge.json_response(status, body, headers))


def body_text(event: BaseProxyEvent) -> str | None:
    """The request body as text; one that is not UTF-8 is the caller's mistake (400), not ours."""
    try:
        return event.decoded_body
    except UnicodeDecodeError:
        raise InvalidRequest("the body is not UTF-8 text") from None


def query_parameters(event: BaseProxyEvent, allowed: Collection[str] = ()) -> dict[str, str]:
    """``edge.query_parameters`` of the resolver's event."""
    return edge.query_parameters(event.raw_event, allowed)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``json.loads``' object hook: an object with a key twice is refused (which one would count?)."""
    document: dict[str, Any] = {}
    for key, value in pairs:
        if key in document:
            raise InvalidRequest(f"the body has the key {edge.shown(key)} more than once")
        document[key] = value
    return document


def read_json(body: str | None, content_type: str | None) -> Any:
    """A JSON request body, or None when there is none (empty or blank). A body must be JSON
    (Content-Type application/json or ``+json``, when given), valid and without duplicate keys."""
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type and media_type != "application/json" and not media_type.endswith("+json"):
        raise InvalidRequest(f"Content-Type must be application/json, not {media_type!r}")
    if not body or not body.strip():
        return None
    try:
        return json.loads(body, object_pairs_hook=_unique_keys)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser goes ("[[[[…")
        raise InvalidRequest("the body is not valid JSON") from None


def _fields(document: dict[str, Any], allowed: Collection[str]) -> None:
    unknown = sorted(str(key) for key in document if key not in allowed)
    if unknown:
        raise InvalidRequest(f"unknown field(s): {', '.join(unknown)}; allowed: {', '.join(allowed)}")


def _json_object(
    body: str | None, content_type: str | None, allowed: Collection[str], required: str, shape: str
) -> dict[str, Any]:
    """The body as a JSON object of ``allowed`` fields only, ``required`` among them (``shape`` words
    what the body must hold)."""
    document = read_json(body, content_type)
    if not isinstance(document, dict):
        raise InvalidRequest(f"the body must be a JSON object with {shape}")
    _fields(document, allowed)
    if required not in document:
        raise InvalidRequest(f"{required} is required")
    return document


def parse_create_request(body: str | None, content_type: str | None, account: str = "") -> CreateRequest:
    """The ``POST /app-clients`` body: ``{"name": ..., "roleName": ..., "consumers": [...]}`` and nothing else;
    ``account``: the stack's, which every consumer must be of."""
    document = _json_object(body, content_type, CREATE_FIELDS, "name", "name and optionally roleName and consumers")
    name = validation.client_name(document["name"])
    role_name = document.get("roleName", DEFAULT_ROLE)
    if not isinstance(role_name, str) or not role_name.strip() or len(role_name) > _ROLE_NAME_MAX:
        raise InvalidRequest(f"roleName must be a non-empty string of at most {_ROLE_NAME_MAX} characters")
    consumers = principal_list(document["consumers"], "consumers", account=account) if "consumers" in document else None
    return CreateRequest(name=name, role_name=role_name, consumers=consumers)


def parse_consumers_update(body: str | None, content_type: str | None, account: str = "") -> tuple[str, ...]:
    """The ``PATCH /app-clients/{name}`` body: ``{"consumers": [...]}``, the list that replaces the client's;
    ``account``: the stack's, which every consumer must be of."""
    document = _json_object(body, content_type, UPDATE_FIELDS, "consumers", "consumers")
    return principal_list(document["consumers"], "consumers", account=account)


def stack_account(event: BaseProxyEvent) -> str:
    """The account the API belongs to (API Gateway's ``requestContext.accountId``): the stack's."""
    return APIGatewayProxyEventV2(event.raw_event).request_context.account_id or ""


def caller_of(event: BaseProxyEvent) -> Caller:
    """``edge.caller_of`` of the resolver's event."""
    return edge.caller_of(event.raw_event)


Middleware = Callable[[APIGatewayHttpResolver, NextMiddleware], Response[Any]]


def admin_only(access: AccessPolicy) -> Middleware:
    """A resolver middleware refusing (403) every request of a caller who is not an admin, before its
    route reads its input."""

    def require_admin(app: APIGatewayHttpResolver, next_middleware: NextMiddleware) -> Response[Any]:
        access.require_admin(caller_of(app.current_event))
        return next_middleware(app)

    return require_admin


def parse_rotation_request(body: str | None, content_type: str | None) -> RotationRequest:
    """The ``POST /app-clients/{name}/rotations`` body: none, ``{}`` or ``{"repair": true|false}``."""
    document = read_json(body, content_type)
    if document is None:
        return RotationRequest()
    if not isinstance(document, dict):
        raise InvalidRequest('the body must be empty, {} or {"repair": true}')
    _fields(document, ROTATION_FIELDS)
    repair = document.get("repair", False)
    if not isinstance(repair, bool):
        raise InvalidRequest("repair must be true or false")
    return RotationRequest(repair=repair)


@dataclass(frozen=True)
class PageRequest:
    """Which page of a list: at most ``limit`` items, after the page whose ``nextToken`` this is."""

    limit: int
    next_token: str | None


def parse_page_request(event: BaseProxyEvent) -> PageRequest:
    """``?limit=N`` (1-100, default 50) and ``?nextToken=…`` (a previous page's, opaque), and no other."""
    query = query_parameters(event, ("limit", "nextToken"))
    limit = validation.integer_in_range(
        "limit", query.get("limit"), default=LIST_LIMIT_DEFAULT, low=1, high=LIST_LIMIT_MAX
    )
    token = query.get("nextToken")
    if token is not None and not 0 < len(token) <= _NEXT_TOKEN_MAX:
        raise InvalidRequest("nextToken must be the nextToken of a previous page")
    return PageRequest(limit, token)


def _known_error(error: ZusM2MError) -> Response[str]:
    return _response(edge.known_error(error))


def _unexpected_error(error: Exception) -> Response[str]:
    return _response(edge.unexpected_error(error))


class AuditedHttpResolver(APIGatewayHttpResolver):
    """Powertools' HTTP API resolver, writing each call's audit line once it is answered
    (``zus_m2m.audit``); routes add to it with ``audit_detail``. One call at a time, as on Lambda."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._audit: dict[str, Any] = {}

    def resolve(self, event: Mapping[str, Any], context: Any) -> dict[str, Any]:
        self._audit = {}
        response = super().resolve(event, context)
        edge.audited(event, response, self._audit)
        return response

    def audit_detail(self, **details: Any) -> None:
        """Add to this call's audit line (never a token or a secret)."""
        self._audit.update(details)


def resolver() -> AuditedHttpResolver:
    """An HTTP API (payload 2.0) router whose every error answer is problem+json, auditing every call."""
    app = AuditedHttpResolver()
    app.exception_handler(ZusM2MError)(_known_error)
    app.exception_handler(Exception)(_unexpected_error)

    def no_route(error: Exception) -> Response[str]:
        return _response(edge.no_route(app.current_event.raw_event))

    app.not_found(no_route)
    return app
