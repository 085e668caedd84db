"""The rate limits of requests on demand (``RequestGuards``), on a client's record item: a rotation at
most once per gap (``lastRotationRequestedAt``), a repair one at a time and at most once per gap
(``lastRepairRequestedAt``, ``repairInFlightUntil``). The bootstrap admin, which has no record, keeps
them in an item of its own partition, ``admin#<name>``/``record``, made on its first request. Each
note is a conditional write, so the limits hold across containers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from zus_m2m.aws._errors import translated, written
from zus_m2m.aws.table import RECORD, Item, TableKeys, number, number_of

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient


class DynamoRequestGuards:
    def __init__(self, dynamodb: DynamoDBClient, table_name: str, keys: TableKeys) -> None:
        self._db = dynamodb
        self._table = table_name
        self._keys = keys

    def request_rotation(self, name: str, now: float, min_gap: float) -> float | None:
        noted, item = self._note(
            "a rotation request",
            name,
            "SET lastRotationRequestedAt = :now",
            "(attribute_not_exists(lastRotationRequestedAt) OR lastRotationRequestedAt <= :cutoff)",
            {":now": number(now), ":cutoff": number(now - min_gap)},
        )
        if noted or item is None:
            return 0.0 if noted else None
        return max(0.001, number_of(item, "lastRotationRequestedAt") + min_gap - now)

    def request_repair(self, name: str, now: float, min_gap: float, lease: float) -> float | None:
        noted, item = self._note(
            "a repair request",
            name,
            "SET lastRepairRequestedAt = :now, repairInFlightUntil = :until",
            "(attribute_not_exists(repairInFlightUntil) OR repairInFlightUntil <= :now) AND "
            "(attribute_not_exists(lastRepairRequestedAt) OR lastRepairRequestedAt <= :cutoff)",
            {":now": number(now), ":until": number(now + lease), ":cutoff": number(now - min_gap)},
        )
        if noted or item is None:
            return 0.0 if noted else None
        waits = [number_of(item, "lastRepairRequestedAt") + min_gap - now]
        if "repairInFlightUntil" in item:
            waits.append(number_of(item, "repairInFlightUntil") - now)
        return max(0.001, *waits)

    def finish_repair(self, name: str, at: float) -> None:
        self._forget("finishing a repair request", name, "repairInFlightUntil", "lastRepairRequestedAt", at)

    def forget_rotation_request(self, name: str, at: float) -> None:
        self._forget("forgetting a rotation request", name, "lastRotationRequestedAt", "lastRotationRequestedAt", at)

    def _note(self, what: str, name: str, update: str, condition: str, values: Item) -> tuple[bool, Item | None]:
        """Whether the request was noted; if not, the item as it is (None: the client has no record).
        A managed client's request is noted on its record, which must exist; the bootstrap admin's in its
        own partition's record item, made on its first request."""
        must_exist = "" if name == self._keys.admin_client_name else "attribute_exists(pk) AND "
        key = self._keys.key(name, RECORD)
        noted = written(
            f"noting {what}",
            lambda: self._db.update_item(
                TableName=self._table,
                Key=key,
                UpdateExpression=update,
                ConditionExpression=must_exist + condition,
                ExpressionAttributeValues=values,
            ),
        )
        if noted:
            return True, None
        with translated(f"reading {what}"):
            return False, self._db.get_item(TableName=self._table, Key=key, ConsistentRead=True).get("Item")

    def _forget(self, operation: str, name: str, attribute: str, noted_by: str, at: float) -> None:
        """Remove ``attribute`` if the request noted at ``at`` (``noted_by``) is still the last one."""
        written(
            operation,
            lambda: self._db.update_item(
                TableName=self._table,
                Key=self._keys.key(name, RECORD),
                UpdateExpression=f"REMOVE {attribute}",
                ConditionExpression=f"{noted_by} = :at",
                ExpressionAttributeValues={":at": number(at)},
            ),
        )
