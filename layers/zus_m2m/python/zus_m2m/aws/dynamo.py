"""The table's keys and DynamoDB's attribute values, for both adapters of the one table
(docs/design.md, DynamoDB)."""

from __future__ import annotations

from typing import Any


def client_key(client: str, kind: str) -> dict[str, Any]:
    """The key of one of a client's items: ``kind`` is ``token``, ``budget`` or ``record``."""
    return {"pk": {"S": f"client#{client}"}, "sk": {"S": kind}}


def string(value: str) -> dict[str, str]:
    return {"S": value}


def number(value: float) -> dict[str, str]:
    """Epoch seconds to the millisecond (integers stay integers)."""
    return {"N": repr(round(value, 3))}


def string_of(item: dict[str, Any], name: str) -> str | None:
    value = item.get(name)
    return str(value["S"]) if value and "S" in value else None


def number_of(item: dict[str, Any], name: str, default: float = 0.0) -> float:
    value = item.get(name)
    return float(value["N"]) if value and "N" in value else default
