"""Checks of caller input shared by every route."""

from __future__ import annotations

import re

from zus_m2m.errors import InvalidRequest
from zus_m2m.values import FINGERPRINT_REGEX

# "." and ".." are excluded: clients and gateways collapse them as dot-segments in a URL path (RFC 3986),
# so a client so named could never be addressed as /app-clients/{name}. Names are lower case, so that
# uniqueness (records, secrets, the protected bootstrap admin's name) is case-insensitive everywhere:
# no `ZUS-M2M-ADMIN` beside `zus-m2m-admin`, no `Billing` beside `billing`.
CLIENT_NAME_REGEX = r"^(?!\.{1,2}$)[a-z0-9._-]{1,64}$"
CLIENT_NAME_PATTERN = re.compile(CLIENT_NAME_REGEX)


def client_name(value: object) -> str:
    """An app client name: 1-64 characters of ``a-z0-9._-``, other than "." and ".."."""
    if not isinstance(value, str) or not CLIENT_NAME_PATTERN.fullmatch(value):
        lower = value.lower() if isinstance(value, str) else None
        hint = f" (names are lower case: {lower!r})" if lower and CLIENT_NAME_PATTERN.fullmatch(lower) else ""
        raise InvalidRequest(
            f"name must be 1-64 characters of a-z, 0-9, '.', '_' or '-' (lower case), and not '.' or '..'{hint}"
        )
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


def token_fingerprint(field_name: str, raw: str | None) -> str | None:
    """A query-string token fingerprint (16 lowercase hex characters, ``values.fingerprint``); absent: None."""
    if raw is None:
        return None
    if not re.fullmatch(FINGERPRINT_REGEX, raw):
        raise InvalidRequest(
            f"{field_name} must be a token's fingerprint: the first 16 lowercase hex characters of its SHA-256"
        )
    return raw
