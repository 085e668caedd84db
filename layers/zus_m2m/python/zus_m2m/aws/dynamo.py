"""The table's keys and DynamoDB's attribute values, for both adapters of the one table
(docs/design.md, DynamoDB)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

CLIENT_PARTITION = "client#"
# The bootstrap admin's items live apart, under a prefix the token vending function's role may not
# touch (template.yaml scopes it to client#* with dynamodb:LeadingKeys).
ADMIN_PARTITION = "admin#"

# The sparse global secondary index of due work (template.yaml's Table): only items that carry both
# attributes are in it. ``dueKind`` is the kind of work (``zus_m2m.work.items``), ``dueAt`` when it is due.
DUE_INDEX = "due"
DUE_KIND = "dueKind"
DUE_AT = "dueAt"


def client_key(client: str, kind: str) -> dict[str, Any]:
    """The key of one of a managed client's items: ``kind`` is ``token``, ``budget`` or ``record``."""
    return {"pk": {"S": f"{CLIENT_PARTITION}{client}"}, "sk": {"S": kind}}


@dataclass(frozen=True)
class TableKeys:
    """Which partition holds a client's items: ``client#<name>``, or ``admin#<name>`` for the
    bootstrap admin client."""

    admin_client_name: str

    def partition(self, client: str) -> str:
        prefix = ADMIN_PARTITION if client == self.admin_client_name else CLIENT_PARTITION
        return prefix + client

    def key(self, client: str, kind: str) -> dict[str, Any]:
        return {"pk": {"S": self.partition(client)}, "sk": {"S": kind}}

    def client_of(self, partition: str) -> str | None:
        """The client a partition key belongs to (None for a key of neither scheme)."""
        for prefix in (CLIENT_PARTITION, ADMIN_PARTITION):
            if partition.startswith(prefix):
                return partition[len(prefix) :]
        return None


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
