"""Every error the client raises, and how an HTTP error answer becomes one.

``ZusM2MApiError`` carries the API's RFC 9457 problem document (``status``, ``problem_type``, ``title``,
``detail``) and ``retry_after``; a subclass per kind of failure lets callers catch what they can act on.
Messages are built from those fields and from names only, never from a token, a credential or a request
header, so an error is always safe to log. ``exit_code`` is what the CLI exits with.
"""

from __future__ import annotations

import email.utils
import json
from collections.abc import Mapping
from datetime import UTC
from http import HTTPStatus
from typing import Any

_MAX_DETAIL = 500


class ZusM2MError(Exception):
    """Base of every error this package raises."""

    exit_code = 1


class ConfigurationError(ZusM2MError):
    """Something the client needs is missing or malformed: the API URL, the region, AWS credentials."""

    exit_code = 9


class TokenRefusedError(ZusM2MError):
    """Zus kept refusing the client's fresh tokens: no replacement is asked for before ``retry_after``
    seconds (the back-off that keeps a refused client from spending its hourly token budget)."""

    exit_code = 4

    def __init__(self, detail: str, *, retry_after: float) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class ZusM2MApiError(ZusM2MError):
    """The API answered with an error (or, for ``TransportError``, did not answer at all)."""

    exit_code = 1

    def __init__(
        self,
        detail: str,
        *,
        status: int | None = None,
        title: str = "",
        problem_type: str = "about:blank",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status
        self.title = title
        self.problem_type = problem_type
        self.retry_after = retry_after

    def __str__(self) -> str:
        if self.status is None:
            return self.detail
        return f"{self.status} {self.title}: {self.detail}" if self.title else f"{self.status}: {self.detail}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status!r}, problem_type={self.problem_type!r}, "
            f"title={self.title!r}, detail={self.detail!r}, retry_after={self.retry_after!r})"
        )


class BadRequestError(ZusM2MApiError):
    """400 or 422: the API refused the request as sent (a bad name, an unknown role, an unknown field)."""


class ForbiddenError(ZusM2MApiError):
    """401 or 403: API Gateway refused the SigV4 signature, or the caller's IAM identity may not call the route."""

    exit_code = 4


class NotFoundError(ZusM2MApiError):
    """404: no such managed client (or no such route on this deployment)."""

    exit_code = 3


class ConflictError(ZusM2MApiError):
    """409: e.g. the name exists with another role, or a rotation is already in progress."""

    exit_code = 5


class ThrottledError(ZusM2MApiError):
    """429: try again after ``retry_after`` seconds."""

    exit_code = 6


class UnavailableError(ZusM2MApiError):
    """5xx: the service or one of its dependencies failed; ``retry_after`` says when to try again if known."""

    exit_code = 7


class TransportError(ZusM2MApiError):
    """No answer at all: the connection failed or timed out. ``status`` is None."""

    exit_code = 8


def error_class(status: int) -> type[ZusM2MApiError]:
    if status in (400, 422):
        return BadRequestError
    if status in (401, 403):
        return ForbiddenError
    if status == 404:
        return NotFoundError
    if status == 409:
        return ConflictError
    if status == 429:
        return ThrottledError
    if status >= 500:
        return UnavailableError
    return ZusM2MApiError


def phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Retry-After as seconds from ``now`` (epoch seconds): delta-seconds or an HTTP date (RFC 9110 10.2.3)."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return float(int(text))
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def error_from_response(status: int, headers: Mapping[str, str], body: bytes, *, now: float) -> ZusM2MApiError:
    """The typed error for an error answer: from its problem document, from API Gateway's own
    ``{"message": ...}``, or, for any other body, from the status alone (an unknown body is never echoed)."""
    document = _json_object(headers.get("content-type", ""), body)
    title = phrase(status)
    problem_type = "about:blank"
    if document is not None and isinstance(document.get("detail"), str):
        detail = document["detail"]
        if isinstance(document.get("title"), str) and document["title"]:
            title = document["title"]
        if isinstance(document.get("type"), str) and document["type"]:
            problem_type = document["type"]
    elif document is not None and isinstance(document.get("message", document.get("Message")), str):
        # API Gateway's own answers: {"message"} (a bad signature, throttling, an unknown route) and
        # {"Message"} (an IAM policy that does not allow execute-api:Invoke, with the reason)
        detail = document.get("message", document.get("Message"))
    else:
        detail = f"the API answered {status} without a problem document"
    return error_class(status)(
        _one_line(detail),
        status=status,
        title=title,
        problem_type=problem_type,
        retry_after=parse_retry_after(headers.get("retry-after"), now),
    )


def _json_object(content_type: str, body: bytes) -> dict[str, Any] | None:
    if "json" not in content_type.lower():
        return None
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    return document if isinstance(document, dict) else None


def _one_line(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _MAX_DETAIL else flat[: _MAX_DETAIL - 1] + "…"
