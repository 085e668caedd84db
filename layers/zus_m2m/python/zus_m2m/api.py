"""The HTTP edge shared by every API function: problem+json errors and JSON responses.

Each ``ZusM2MError`` carries its status, so one exception handler serves every route; anything else
is a bug, logged with its traceback and answered 500 without one.
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.utilities.data_classes.common import BaseProxyEvent

from zus_m2m.errors import InvalidRequest, ZusM2MError

logger = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
NO_STORE = {"Cache-Control": "no-store"}


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response[str]:
    return Response(
        status_code=status,
        content_type="application/json",
        body=json.dumps(body),
        headers={**NO_STORE, **(headers or {})},
    )


def body_text(event: BaseProxyEvent) -> str | None:
    """The request body as text; one that is not UTF-8 is the caller's mistake (400), not ours."""
    try:
        return event.decoded_body
    except UnicodeDecodeError:
        raise InvalidRequest("the body is not UTF-8 text") from None


def problem(status: int, title: str, detail: str, kind: str, retry_after: float | None = None) -> Response[str]:
    """An RFC 9457 problem document."""
    headers = dict(NO_STORE)
    if retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    body = {"type": f"urn:zus-m2m:problem:{kind}", "title": title, "status": status, "detail": detail}
    return Response(status_code=status, content_type=PROBLEM_JSON, body=json.dumps(body), headers=headers)


def _kind(error: ZusM2MError) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "-", type(error).__name__).lower()


def _known_error(error: ZusM2MError) -> Response[str]:
    log = logger.warning if error.http_status >= 500 else logger.info
    log("request refused", extra={"status": error.http_status, "reason": error.detail})
    return problem(error.http_status, error.title, error.detail, _kind(error), error.retry_after)


def _unexpected_error(error: Exception) -> Response[str]:
    logger.exception("unexpected error")
    return problem(500, "Internal Server Error", "an unexpected error occurred", "internal-error")


class ThreadSafeHttpResolver(APIGatewayHttpResolver):
    """Powertools' HTTP API resolver with the request being resolved kept per thread.

    Powertools keeps the current event and Lambda context on its ``BaseRouter`` class and the route
    arguments on the instance: right for Lambda, which runs one invocation per container at a time,
    but the local stack and the benchmarks call handlers from several threads of one process.
    """

    def __init__(self, **options: Any) -> None:
        self._request = threading.local()
        super().__init__(**options)

    @property
    def current_event(self) -> Any:
        return self._request.event

    @current_event.setter
    def current_event(self, value: Any) -> None:
        self._request.event = value

    @property
    def lambda_context(self) -> Any:
        return self._request.lambda_context

    @lambda_context.setter
    def lambda_context(self, value: Any) -> None:
        self._request.lambda_context = value

    @property
    def context(self) -> dict[str, Any]:
        if not hasattr(self._request, "context"):
            self._request.context = {}
        return self._request.context  # type: ignore[no-any-return]

    @context.setter
    def context(self, value: dict[str, Any]) -> None:
        self._request.context = value

    def resolve(self, event: Mapping[str, Any], context: Any) -> dict[str, Any]:
        self.current_event = self._to_proxy_event(dict(event))
        self.lambda_context = context
        return super().resolve(event, context)


def resolver() -> APIGatewayHttpResolver:
    """An HTTP API (payload 2.0) router whose every error answer is problem+json."""
    app = ThreadSafeHttpResolver()
    app.exception_handler(ZusM2MError)(_known_error)
    app.exception_handler(Exception)(_unexpected_error)

    def no_route(error: Exception) -> Response[str]:
        event = app.current_event
        return problem(404, "Not Found", f"no route for {event.http_method} {event.path}", "no-route")

    app.not_found(no_route)
    return app
