"""``POST /oauth/token``: the client-credentials grant, as the guide's step 3 sends it (a JSON body), or
as RFC 6749 allows (a form body, client credentials in Basic auth). Refusals and headers are worded in
the configured dialect (``dialects.py``)."""

from __future__ import annotations

import base64
import binascii
from typing import Any
from urllib.parse import parse_qsl, unquote_plus

from . import dialects
from .api import JSON, Reply, Request
from .state import EmulatorState
from .tokens import OAuthError, TokenRequest

FORM = "application/x-www-form-urlencoded"
STRING_FIELDS = ("grant_type", "client_id", "client_secret", "audience")


def issue_token(state: EmulatorState, request: Request) -> Reply:
    fields = _fields(request)
    client_id = fields.get("client_id")
    client_secret = fields.get("client_secret")
    basic = _basic_credentials(request, state.settings.dialect)
    if basic is not None:
        basic_id, basic_secret = basic
        if client_id and client_id != basic_id:
            raise OAuthError(400, "invalid_request", "client_id differs from the Basic credentials")
        if client_secret and client_secret != basic_secret:
            raise OAuthError(400, "invalid_request", "Use only one client authentication method")
        client_id, client_secret = basic_id, basic_secret
    token_request = TokenRequest(
        grant_type=fields.get("grant_type"),
        client_id=client_id,
        client_secret=client_secret,
        audience=fields.get("audience"),
    )
    try:
        response = state.issue_token(token_request)
    except OAuthError as exc:
        if exc.status == 401 and basic is not None:  # RFC 6749 5.2: challenge the scheme that was used
            exc.headers["WWW-Authenticate"] = 'Basic realm="zus-emulator"'
        exc.headers.update(state.rate_limit_headers(client_id))
        raise
    headers = {"Cache-Control": "no-store", "Pragma": "no-cache", **state.rate_limit_headers(client_id)}
    return Reply(200, response, JSON, headers)


def _fields(request: Request) -> dict[str, Any]:
    media_type = request.media_type
    if media_type == "" and request.body.lstrip().startswith(b"{"):
        media_type = JSON
    fields: dict[str, Any]
    if media_type == JSON:
        parsed = request.json()
        if not isinstance(parsed, dict):
            raise OAuthError(400, "invalid_request", "The request body must be a JSON object")
        fields = parsed
    elif media_type in (FORM, ""):
        try:
            text = request.body.decode("utf-8")
        except UnicodeDecodeError:
            raise OAuthError(400, "invalid_request", "The request body is not UTF-8") from None
        fields = dict(parse_qsl(text, keep_blank_values=True))
    else:
        raise OAuthError(400, "invalid_request", "Content-Type must be application/json or x-www-form-urlencoded")
    for key in STRING_FIELDS:
        if key in fields and not isinstance(fields[key], str):
            raise OAuthError(400, "invalid_request", f"Parameter {key} must be a string")
    return fields


def _basic_credentials(request: Request, dialect: str) -> tuple[str, str] | None:
    scheme, _, value = request.header("Authorization").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise dialects.bad_credentials(dialect) from None
    user, sep, password = decoded.partition(":")
    if not sep:
        raise dialects.bad_credentials(dialect)
    return unquote_plus(user), unquote_plus(password)
