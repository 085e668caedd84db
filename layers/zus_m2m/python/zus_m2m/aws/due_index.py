"""The due index: which items of the table are due for scheduled work, found with a query of the sparse
global secondary index ``due`` (partition ``dueKind``, sort ``dueAt``; template.yaml's Table) that reads
the due items only, and the conditional writes that hand work out and put it back (docs/design.md,
Scheduled work).

A token item (``client#<name>``/``token``) is in the index while its client is in use (refresh); a record
item (``client#<name>``/``record``, the bootstrap admin's ``admin#<name>``/``record``) always (its
rotation check). Records written before the index existed are enlisted by ``backfill``, a page of the
table per call, whose position is kept in the item ``due-backfill``/``rotation``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from zus_m2m.aws._errors import CONDITION_FAILED, answer_or_none, translated
from zus_m2m.aws.table import (
    ACTIVE,
    DUE_AT,
    DUE_INDEX,
    DUE_KIND,
    ITEM_OF_KIND,
    RECORD,
    STATUS,
    TableKeys,
    due_mark,
    number,
    number_of,
    string,
)
from zus_m2m.values import ROTATION, DueMark, WorkItem

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

_NAMES = {"#kind": DUE_KIND, "#at": DUE_AT}
_BACKFILL_KEY = {"pk": string("due-backfill"), "sk": string(ROTATION)}
# What a client's item says about its work, nothing else.
_MARKS = "pk, #kind, #at, lastRequestedAt"


class DynamoDueIndex:
    def __init__(self, dynamodb: DynamoDBClient, table_name: str, keys: TableKeys) -> None:
        self._db = dynamodb
        self._table = table_name
        self._keys = keys

    def due(self, kind: str, until: float, limit: int) -> list[WorkItem]:
        found: list[WorkItem] = []
        request: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": DUE_INDEX,
            "KeyConditionExpression": "#kind = :kind AND #at <= :until",
            "ExpressionAttributeNames": _NAMES,
            "ExpressionAttributeValues": {":kind": string(kind), ":until": number(until)},
        }
        with translated("finding due work"):
            while len(found) < limit:
                page = self._db.query(**request, Limit=limit - len(found))
                for item in page.get("Items", []):
                    client = self._keys.client_of(item["pk"]["S"])
                    if client is not None and item["sk"]["S"] == ITEM_OF_KIND[kind]:
                        found.append(WorkItem(kind, client, number_of(item, DUE_AT)))
                if "LastEvaluatedKey" not in page:
                    break
                request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return found

    def claim(self, item: WorkItem, until: float) -> WorkItem | None:
        claimed = WorkItem(item.kind, item.client, round(until, 3))
        return claimed if self.reschedule(item, claimed.due_at) else None

    def mark(self, kind: str, client: str) -> DueMark | None:
        with translated("reading due work"):
            found = self._db.get_item(
                TableName=self._table,
                Key=self._key(kind, client),
                ProjectionExpression=_MARKS,
                ExpressionAttributeNames=_NAMES,
                ConsistentRead=True,
            ).get("Item")
        # An item with no due mark at all has no work of the kind: a token item that only carries its
        # record's copy (no token was ever stored) is no refresh the dispatcher could have sent.
        if not found or (DUE_KIND not in found and DUE_AT not in found):
            return None
        return due_mark(found)

    def reschedule(self, item: WorkItem, at: float) -> bool:
        return self._conditional(
            "rescheduling due work", item, f"SET {DUE_AT} = :next", {":next": number(at)}, holds=True
        )

    def delist(self, item: WorkItem, idle_before: float) -> bool:
        return self._conditional(
            "delisting an idle client's refresh",
            item,
            f"REMOVE {DUE_KIND}",
            {":cutoff": number(idle_before)},
            holds=True,
            also="(attribute_not_exists(lastRequestedAt) OR lastRequestedAt < :cutoff)",
        )

    def enlist(self, kind: str, client: str, at: float) -> bool:
        return self._conditional(
            "enlisting due work", WorkItem(kind, client, at), "SET #kind = :kind, #at = :at", {}, holds=False
        )

    def backfill(self, at: float, page_size: int) -> int:
        with translated("reading the due index backfill"):
            cursor = self._db.get_item(TableName=self._table, Key=_BACKFILL_KEY, ConsistentRead=True).get("Item", {})
        if "done" in cursor:
            return 0
        request: dict[str, Any] = {
            "TableName": self._table,
            "FilterExpression": "sk = :record AND #status = :active AND attribute_not_exists(#kind)",
            "ProjectionExpression": "pk, sk",
            "ExpressionAttributeNames": {"#status": STATUS, "#kind": DUE_KIND},
            "ExpressionAttributeValues": {":record": string(RECORD), ":active": string(ACTIVE)},
            "Limit": page_size,
        }
        if "nextPk" in cursor:
            request["ExclusiveStartKey"] = {"pk": cursor["nextPk"], "sk": cursor["nextSk"]}
        with translated("backfilling the due index"):
            page = self._db.scan(**request)
        enlisted = 0
        for item in page.get("Items", []):
            client = self._keys.client_of(item["pk"]["S"])
            if client is not None and self.enlist(ROTATION, client, at):
                enlisted += 1
        following = page.get("LastEvaluatedKey")
        position = {"nextPk": following["pk"], "nextSk": following["sk"]} if following else {"done": number(at)}
        with translated("recording the due index backfill"):
            self._db.put_item(TableName=self._table, Item={**_BACKFILL_KEY, **position})
        return enlisted

    def _key(self, kind: str, client: str) -> dict[str, Any]:
        return self._keys.key(client, ITEM_OF_KIND[kind])

    def _conditional(
        self, operation: str, item: WorkItem, update: str, values: dict[str, Any], *, holds: bool, also: str = ""
    ) -> bool:
        """True when written. ``holds``: only if the item is still due as ``item`` says; otherwise only if
        it is in no index yet."""
        if holds:
            condition = "#kind = :kind AND #at = :seen"
            values = {**values, ":kind": string(item.kind), ":seen": number(item.due_at)}
        else:
            condition = "attribute_not_exists(#kind)"
            values = {**values, ":kind": string(item.kind), ":at": number(item.due_at)}
        if also:
            condition = f"{condition} AND {also}"
        answer = answer_or_none(
            operation,
            lambda: self._db.update_item(
                TableName=self._table,
                Key=self._key(item.kind, item.client),
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeNames=_NAMES,
                ExpressionAttributeValues=values,
            ),
            none_when=CONDITION_FAILED,
        )
        return answer is not None
