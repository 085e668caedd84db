"""What API Gateway does around a Lambda proxy integration (HTTP API, payload format 2.0): the event it
sends a handler for a request (lower-cased headers, decoded query and path parameters, cookies, the
request context with the IAM authorizer's ``iam`` block, base64 for binary bodies), and the HTTP
response it makes of the handler's answer (status, headers, cookies, base64 bodies; a bare return value
becomes a 200 JSON body). Plain data in, plain data out: ``local_api`` does the serving and
``iam_authorizer`` the authorizing.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from zus_local.event_sources import Route

PROBLEM_JSON = "application/problem+json"
# Content types API Gateway passes as text; anything else arrives base64-encoded.
_TEXT_TYPES = ("text/", "application/json", "application/xml", "application/x-www-form-urlencoded", "+json", "+xml")
LOCAL_API_ID = "local"


@dataclass(frozen=True)
class HttpRequest:
    method: str
    target: str  # path and query, as sent
    headers: list[tuple[str, str]]
    body: bytes
    source_ip: str
    protocol: str = "HTTP/1.1"


def _is_text(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return any(media.startswith(kind) if kind.endswith("/") else kind in media for kind in _TEXT_TYPES)


def build_event(
    request: HttpRequest,
    route: Route,
    path_parameters: Mapping[str, str],
    *,
    authorizer_iam: Mapping[str, Any],
    account_id: str = "123456789012",
    request_id: str | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """The HTTP API payload 2.0 event API Gateway would send for ``request`` on ``route``, signed by the
    principal ``authorizer_iam`` describes (``requestContext.authorizer.iam``)."""
    now = time.time() if now is None else now
    split = urlsplit(request.target)
    raw_path = split.path or "/"
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in request.headers:
        key = name.lower()
        if key == "cookie":
            cookies.extend(part.strip() for part in value.split(";") if part.strip())
            continue
        headers[key] = f"{headers[key]},{value}" if key in headers else value
    host = headers.get("host", "localhost")
    headers.setdefault("x-forwarded-for", request.source_ip)
    headers.setdefault("x-forwarded-proto", "http")
    port = host.rsplit(":", 1)[1] if ":" in host and not host.endswith("]") else "80"
    headers.setdefault("x-forwarded-port", port)
    query: dict[str, str] = {}
    for key, value in parse_qsl(split.query, keep_blank_values=True):
        query[key] = f"{query[key]},{value}" if key in query else value
    request_id = request_id or str(uuid.uuid4())
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route.route_key,
        "rawPath": raw_path,
        "rawQueryString": split.query,
        "headers": headers,
        "requestContext": {
            "accountId": account_id,
            "apiId": LOCAL_API_ID,
            "authorizer": {"iam": dict(authorizer_iam)},
            "domainName": host.split(":", 1)[0] if not host.startswith("[") else host,
            "domainPrefix": host.split(".", 1)[0].split(":", 1)[0],
            "http": {
                "method": request.method,
                "path": raw_path,
                "protocol": request.protocol,
                "sourceIp": request.source_ip,
                "userAgent": headers.get("user-agent", ""),
            },
            "requestId": request_id,
            "routeKey": route.route_key,
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": False,
    }
    if cookies:
        event["cookies"] = cookies
    if query:
        event["queryStringParameters"] = query
    if path_parameters:
        event["pathParameters"] = {name: unquote(value) for name, value in path_parameters.items()}
    if request.body:
        if _is_text(headers.get("content-type", "")):
            try:
                event["body"] = request.body.decode("utf-8")
            except UnicodeDecodeError:
                event["body"] = base64.b64encode(request.body).decode()
                event["isBase64Encoded"] = True
        else:
            event["body"] = base64.b64encode(request.body).decode()
            event["isBase64Encoded"] = True
    return event


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


class InvalidFunctionResponse(ValueError):
    """The handler answered something API Gateway would refuse (it answers 500 then)."""


def map_response(result: Any) -> HttpResponse:
    """A handler's return value as API Gateway (payload 2.0) turns it into an HTTP response."""
    if not isinstance(result, dict) or "statusCode" not in result:
        # "If your Lambda function doesn't return valid JSON with a statusCode, API Gateway assumes 200
        # and treats the whole return value as a JSON body."
        text = result if isinstance(result, str) else json.dumps(result)
        return HttpResponse(200, [("Content-Type", "application/json")], text.encode())
    status = result["statusCode"]
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        raise InvalidFunctionResponse(f"statusCode must be an HTTP status, got {status!r}")
    headers: list[tuple[str, str]] = []
    for name, value in (result.get("headers") or {}).items():
        headers.append((str(name), str(value)))
    for name, values in (result.get("multiValueHeaders") or {}).items():
        headers.extend((str(name), str(value)) for value in values)
    headers.extend(("Set-Cookie", str(cookie)) for cookie in result.get("cookies") or [])
    raw = result.get("body")
    body: bytes
    if raw is None:
        body = b""
    elif not isinstance(raw, str):
        raise InvalidFunctionResponse(f"body must be a string, got {type(raw).__name__}")
    elif result.get("isBase64Encoded"):
        try:
            body = base64.b64decode(raw, validate=True)
        except ValueError as exc:
            raise InvalidFunctionResponse("isBase64Encoded is set but the body is not base64") from exc
    else:
        body = raw.encode()
    return HttpResponse(status, headers, body)


def problem(status: int, title: str, detail: str, kind: str) -> HttpResponse:
    body = {"type": f"urn:zus-m2m:problem:{kind}", "title": title, "status": status, "detail": detail}
    headers = [("Content-Type", PROBLEM_JSON), ("Cache-Control", "no-store")]
    return HttpResponse(status, headers, json.dumps(body).encode())
