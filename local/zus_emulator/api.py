"""What a route handler of the emulator gets and gives: the request, its reply, and JSON:API errors."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import Message
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl

JSON_API = "application/vnd.api+json"
JSON = "application/json"
NO_STORE = {"Cache-Control": "no-store"}


def phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def error_object(status: int, detail: str, pointer: str | None = None) -> dict[str, Any]:
    obj: dict[str, Any] = {"status": str(status), "title": phrase(status), "detail": detail}
    if pointer is not None:
        obj["source"] = {"pointer": pointer}
    return obj


class ApiError(Exception):
    """A JSON:API error response (one or more error objects)."""

    def __init__(
        self,
        status: int,
        detail: str,
        pointer: str | None = None,
        *,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.errors = errors or [error_object(status, detail, pointer)]
        self.headers = headers or {}


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # without the query; one trailing slash dropped
    query: str
    headers: Message
    body: bytes
    # The route's path parameters, e.g. {"id": …} for /auth/app-clients/{id}.
    params: Mapping[str, str] = field(default_factory=dict)

    def header(self, name: str) -> str:
        return str(self.headers.get(name, ""))

    @property
    def media_type(self) -> str:
        """The Content-Type without its parameters, lower-cased ("" when absent)."""
        return self.header("Content-Type").split(";", 1)[0].strip().lower()

    def query_pairs(self) -> list[tuple[str, str]]:
        return parse_qsl(self.query, keep_blank_values=True)

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError):
            raise ApiError(400, "The request body is not valid JSON") from None


@dataclass(frozen=True)
class Reply:
    status: int
    payload: Any = None
    content_type: str = JSON_API
    headers: Mapping[str, str] = field(default_factory=dict)
