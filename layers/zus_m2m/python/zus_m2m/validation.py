"""Checks of caller input shared by every route."""

from __future__ import annotations

import re

from zus_m2m.errors import InvalidRequest

CLIENT_NAME_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")


def client_name(value: object) -> str:
    """An app client name: 1-64 characters of ``A-Za-z0-9._-``."""
    if not isinstance(value, str) or not CLIENT_NAME_PATTERN.fullmatch(value):
        raise InvalidRequest("name must be 1-64 characters of A-Z, a-z, 0-9, '.', '_' or '-'")
    return value


def integer_in_range(field_name: str, raw: str | None, default: int, low: int, high: int) -> int:
    """A query-string integer; absent means ``default``."""
    if raw is None:
        return default
    if not re.fullmatch(r"-?[0-9]{1,9}", raw.strip()):
        raise InvalidRequest(f"{field_name} must be an integer between {low} and {high}")
    number = int(raw)
    if not low <= number <= high:
        raise InvalidRequest(f"{field_name} must be an integer between {low} and {high}, got {number}")
    return number
