"""The HTTP edge's one implementation, on API Gateway's HTTP API (payload 2.0) event as it comes (a
plain mapping) and Lambda's response as it goes (a plain dict): the caller, the query string, JSON and
problem+json answers, the error mapping, one audit line per call, and ``serve``, a single route without
a router.

No Powertools event handler or event classes here: importing them (every resolver, asyncio, every event
class) would cost the token vending function, whose cold start matters most and which serves one route,
about a tenth of its cold start. ``zus_m2m.api`` builds the admin functions' Powertools resolver on
these same functions, so both answer alike.

Each ``ZusM2MError`` carries its status, so one mapping serves every route; anything else is a bug,
logged with its traceback and answered 500 without one.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable, Collection, Mapping
from typing import Any

from zus_m2m import audit, problem
from zus_m2m.access import Caller
from zus_m2m.errors import InvalidRequest, ZusM2MError

logger = logging.getLogger(__name__)

NO_STORE = {"Cache-Control": "no-store"}
JSON = "application/json"
# How much of a caller's unexpected name an error repeats.
_SHOWN_MAX = 64
# What a path parameter matches: one segment of the characters Powertools' router takes in one (RFC
# 3986's unreserved and sub-delimiters, ``:@%`` and a few unsafe ones), so that a route served here
# routes the same paths as it would behind the admin functions' resolver.
_SEGMENT = r"[-._~()'!*:@,;=+&$%<> \[\]{}|^\w]+"

Response = dict[str, Any]
# A route's handler: the event, its path parameters, and the call's audit details to add to.
Handler = Callable[[Mapping[str, Any], Mapping[str, str], dict[str, Any]], Response]


def shown(name: str) -> str:
    return repr(name[:_SHOWN_MAX])


def response(status: int, body: str, content_type: str, headers: Mapping[str, str] | None = None) -> Response:
    """Lambda's answer to API Gateway (payload 2.0), never cached (``Cache-Control: no-store``)."""
    all_headers = {**NO_STORE, **(headers or {})}
    all_headers.setdefault("Content-Type", content_type)
    return {"statusCode": status, "body": body, "isBase64Encoded": False, "headers": all_headers, "cookies": []}


def json_response(status: int, body: Any, headers: Mapping[str, str] | None = None) -> Response:
    return response(status, json.dumps(body), JSON, headers)


def problem_response(status: int, title: str, detail: str, kind: str, retry_after: float | None = None) -> Response:
    """An RFC 9457 problem document, with Retry-After when the caller should wait."""
    headers = {} if retry_after is None else {"Retry-After": str(max(1, math.ceil(retry_after)))}
    body = json.dumps(problem.document(status, title, detail, kind))
    return response(status, body, problem.MEDIA_TYPE, headers)


def _kind(error: ZusM2MError) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "-", type(error).__name__).lower()


def known_error(error: ZusM2MError) -> Response:
    log = logger.warning if error.http_status >= 500 else logger.info
    log("request refused", extra={"status": error.http_status, "reason": error.detail})
    return problem_response(error.http_status, error.title, error.detail, _kind(error), error.retry_after)


def unexpected_error(error: Exception) -> Response:
    logger.exception("unexpected error")
    return problem_response(500, "Internal Server Error", "an unexpected error occurred", "internal-error")


def method(event: Mapping[str, Any]) -> str:
    return str(event["requestContext"]["http"]["method"])


def path(event: Mapping[str, Any]) -> str:
    """The request's path without its stage (API Gateway's ``rawPath`` starts with it unless the stage
    is ``$default``)."""
    stage = event["requestContext"]["stage"]
    raw_path = str(event["rawPath"])
    return raw_path if stage == "$default" else raw_path[len("/" + stage) :]


def no_route(event: Mapping[str, Any]) -> Response:
    return problem_response(404, "Not Found", f"no route for {method(event)} {path(event)}", "no-route")


def query_parameters(event: Mapping[str, Any], allowed: Collection[str] = ()) -> dict[str, str]:
    """The query string's parameters; a parameter the route does not take (``allowed``) is a 400
    naming it (a misspelt ``minttl`` is refused, not ignored)."""
    given: Mapping[str, str] = event.get("queryStringParameters") or {}
    unknown = sorted(name for name in given if name not in allowed)
    if unknown:
        takes = f"it takes {', '.join(allowed)}" if allowed else "this route takes none"
        raise InvalidRequest(f"unknown query parameter {', '.join(shown(name) for name in unknown)}; {takes}")
    return dict(given)


def caller_of(event: Mapping[str, Any]) -> Caller:
    """Who signed the request: ``requestContext.authorizer.iam`` and the source address, as API
    Gateway's IAM authorizer sets them (an empty ``arn`` without that context)."""
    iam = audit.authorizer_iam(event)
    return Caller(
        arn=iam.get("userArn") or "",
        account_id=iam.get("accountId") or "",
        access_key=iam.get("accessKey") or "",
        source_ip=event["requestContext"]["http"]["sourceIp"],
    )


def _problem_kind(answer: Mapping[str, Any]) -> str | None:
    """The kind of a problem document answer (an error's body, never a token's)."""
    if int(answer.get("statusCode", 200)) < 400:
        return None
    try:
        kind = json.loads(answer.get("body") or "{}").get("type", "")
    except (ValueError, AttributeError):
        return None
    return str(kind).removeprefix(problem.TYPE_PREFIX) or None


def audited(event: Mapping[str, Any], answer: Mapping[str, Any], details: Mapping[str, Any]) -> None:
    """Writes the call's audit line, once it is answered: what the route added (``details``) and the
    problem's kind, if it was one."""
    line = dict(details)
    kind = _problem_kind(answer)
    if kind is not None:
        line["problem"] = kind
    audit.emit(event, int(answer.get("statusCode", 200)), line)


def route_pattern(route_path: str) -> re.Pattern[str]:
    """The regular expression of a route's path as the resolver declares it (``/a/<name>/b``)."""
    return re.compile("^" + re.sub(r"<(\w+)>", lambda name: f"(?P<{name[1]}>{_SEGMENT})", route_path) + "$")


def serve(event: Mapping[str, Any], route_method: str, pattern: re.Pattern[str], handler: Handler) -> Response:
    """One route without a router: ``handler`` answers the call if it is ``route_method`` on a path
    ``pattern`` matches, else a 404 problem; errors are mapped to problem+json; one audit line."""
    matched = pattern.match(path(event)) if method(event).upper() == route_method else None
    details: dict[str, Any] = {}
    try:
        answer = no_route(event) if matched is None else handler(event, matched.groupdict(), details)
    except ZusM2MError as error:
        answer = known_error(error)
    except Exception as error:  # a bug: logged with its traceback, answered 500 without one
        answer = unexpected_error(error)
    audited(event, answer, details)
    return answer
