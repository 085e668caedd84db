"""The CLI's two output formats: JSON as the API answered (for scripts), and aligned tables (for people)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

# Fields holding seconds since the Unix epoch: shown as UTC times in tables.
_EPOCH_FIELDS = frozenset({"createdAt", "lastRotation", "nextRotation", "expiresAt"})

# `clients list --output table`: (header, dotted path into each client).
CLIENT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("NAME", "name"),
    ("ROLE", "roleName"),
    ("CLIENT ID", "clientId"),
    ("CREATED", "createdAt"),
    ("LAST ROTATION", "lastRotation"),
    ("NEXT ROTATION", "nextRotation"),
    ("TOKEN EXPIRES", "token.expiresAt"),
    ("TOKENS LAST HOUR", "budget.usedLastHour"),
    ("CONSUMERS", "consumers"),
)


def as_json(result: object) -> str:
    return json.dumps(result, indent=4)


def as_table(result: Mapping[str, Any] | Sequence[Mapping[str, Any]], columns: Sequence[tuple[str, str]]) -> str:
    """Rows under ``columns`` for a list; ``field  value`` lines (nested fields dotted) for one object."""
    if isinstance(result, Mapping):
        pairs = list(_flatten(result))
        return _aligned([("FIELD", "VALUE"), *((key, _cell(key, value)) for key, value in pairs)])
    rows = [tuple(header for header, _ in columns)]
    rows += [tuple(_cell(path, _at(item, path)) for _, path in columns) for item in result]
    return _aligned(rows)


def _flatten(document: Mapping[str, Any], prefix: str = "") -> Any:
    for key, value in document.items():
        if isinstance(value, Mapping) and value:
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _at(document: Mapping[str, Any], path: str) -> Any:
    value: Any = document
    for key in path.split("."):
        value = value.get(key) if isinstance(value, Mapping) else None
    return value


def _cell(path: str, value: Any) -> str:
    if value is None:
        return "-"
    if path.rsplit(".", 1)[-1] in _EPOCH_FIELDS and isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    if isinstance(value, list):
        return ", ".join(str(item) for item in value) or "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _aligned(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    )
