"""Error answers become typed errors: problem documents, API Gateway's own bodies, Retry-After. No sockets."""

from __future__ import annotations

import calendar
import copy
import json

import pytest

from zus_m2m_client import (
    BadRequestError,
    ConflictError,
    ForbiddenError,
    NotFoundError,
    ThrottledError,
    UnavailableError,
    ZusM2MApiError,
)
from zus_m2m_client.errors import error_from_response, parse_retry_after

NOW = 1_800_000_000.0
PROBLEM = {"content-type": "application/problem+json"}


def problem_body(status: int, title: str, detail: str, kind: str = "resource-not-found") -> bytes:
    return json.dumps(
        {"type": f"urn:zus-m2m:problem:{kind}", "title": title, "status": status, "detail": detail}
    ).encode()


def test_a_problem_document_gives_every_field() -> None:
    error = error_from_response(
        404, PROBLEM, problem_body(404, "Not Found", "no managed app client named 'x'"), now=NOW
    )
    assert isinstance(error, NotFoundError)
    assert (error.status, error.problem_type, error.title, error.detail, error.retry_after) == (
        404,
        "urn:zus-m2m:problem:resource-not-found",
        "Not Found",
        "no managed app client named 'x'",
        None,
    )
    assert str(error) == "404 Not Found: no managed app client named 'x'"
    assert error.exit_code == 3


@pytest.mark.parametrize(
    ("status", "kind", "exit_code"),
    [
        (400, BadRequestError, 1),
        (422, BadRequestError, 1),
        (401, ForbiddenError, 4),
        (403, ForbiddenError, 4),
        (404, NotFoundError, 3),
        (409, ConflictError, 5),
        (429, ThrottledError, 6),
        (500, UnavailableError, 7),
        (503, UnavailableError, 7),
        (418, ZusM2MApiError, 1),
    ],
)
def test_each_status_has_its_class_and_exit_code(status: int, kind: type[ZusM2MApiError], exit_code: int) -> None:
    error = error_from_response(status, PROBLEM, problem_body(status, "T", "d"), now=NOW)
    assert type(error) is kind
    assert error.exit_code == exit_code


def test_retry_after_in_seconds_and_as_a_date() -> None:
    seconds = error_from_response(429, {**PROBLEM, "retry-after": "7"}, problem_body(429, "T", "d"), now=NOW)
    assert seconds.retry_after == 7
    date, epoch = "Fri, 15 Jan 2027 08:00:10 GMT", calendar.timegm((2027, 1, 15, 8, 0, 10))
    assert parse_retry_after(date, now=epoch - 10) == 10
    assert parse_retry_after(date, now=epoch + 10) == 0  # already past
    assert parse_retry_after("soon", now=NOW) is None
    assert parse_retry_after(None, now=NOW) is None


def test_api_gateway_answers_without_a_problem_document() -> None:
    """API Gateway itself refuses unsigned or unauthorised requests with {"message": ...}."""
    error = error_from_response(403, {"content-type": "application/json"}, b'{"message":"Forbidden"}', now=NOW)
    assert isinstance(error, ForbiddenError)
    assert (error.title, error.detail, error.problem_type) == ("Forbidden", "Forbidden", "about:blank")


def test_an_unknown_body_is_never_echoed() -> None:
    html = b"<html><body>upstream said: eyJhbGciOi.secret</body></html>"
    error = error_from_response(502, {"content-type": "text/html"}, html, now=NOW)
    assert isinstance(error, UnavailableError)
    assert str(error) == "502 Bad Gateway: the API answered 502 without a problem document"


def test_details_are_one_line_and_bounded() -> None:
    error = error_from_response(400, PROBLEM, problem_body(400, "Bad Request", "a\nb  " + "x" * 900), now=NOW)
    assert "\n" not in error.detail
    assert len(error.detail) == 500


def test_an_error_copies_whole_and_shows_its_fields() -> None:
    error = ThrottledError("budget spent", status=429, title="Too Many Requests", retry_after=5.0)
    mine = copy.copy(error)
    assert mine is not error
    assert (
        repr(mine)
        == repr(error)
        == (
            "ThrottledError(status=429, problem_type='about:blank', title='Too Many Requests', "
            "detail='budget spent', retry_after=5.0)"
        )
    )
