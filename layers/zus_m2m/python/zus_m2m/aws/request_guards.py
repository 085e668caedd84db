"""The rate limits of requests on demand (``RequestGuards``), on a client's record item: a rotation at
most once per gap (``lastRotationRequestedAt``), a repair one at a time and at most once per gap
(``lastRepairRequestedAt``, ``repairInFlightUntil``). The bootstrap admin, which has no record, keeps
them in an item of its own partition, ``admin#<name>``/``record``, made on its first request. Each
note is a conditional write, so the limits hold across containers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from zus_m2m.aws._errors import CONDITION_FAILED, answer_or_none, translated, written
from zus_m2m.aws.table import RECORD, TableKeys, number, number_of

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient


class DynamoRequestGuards:
    def __init__(self, dynamodb: DynamoDBClient, table_name: str, keys: TableKeys) -> None:
        self._db = dynamodb
        self._table = table_name
        self._keys = keys

    def request_rotation(self, name: str, now: float, min_gap: float) -> float | None:
        # A managed client's request is noted on its record, which must exist; the bootstrap admin's in
        # its own partition's record item, made on its first request.
        must_exist = "" if name == self._keys.admin_client_name else "attribute_exists(pk) AND "
        key = self._keys.key(name, RECORD)
        noted = answer_or_none(
            "noting a rotation request",
            lambda: self._db.update_item(
                TableName=self._table,
                Key=key,
                UpdateExpression="SET lastRotationRequestedAt = :now",
                ConditionExpression=(
                    f"{must_exist}(attribute_not_exists(lastRotationRequestedAt) OR lastRotationRequestedAt <= :cutoff)"
                ),
                ExpressionAttributeValues={":now": number(now), ":cutoff": number(now - min_gap)},
            ),
            none_when=CONDITION_FAILED,
        )
        if noted is not None:
            return 0.0
        with translated("reading a rotation request"):
            item = self._db.get_item(TableName=self._table, Key=key, ConsistentRead=True).get("Item")
        if item is None:
            return None
        return max(0.001, number_of(item, "lastRotationRequestedAt") + min_gap - now)

    def request_repair(self, name: str, now: float, min_gap: float, lease: float) -> float | None:
        must_exist = "" if name == self._keys.admin_client_name else "attribute_exists(pk) AND "
        key = self._keys.key(name, RECORD)
        noted = answer_or_none(
            "noting a repair request",
            lambda: self._db.update_item(
                TableName=self._table,
                Key=key,
                UpdateExpression="SET lastRepairRequestedAt = :now, repairInFlightUntil = :until",
                ConditionExpression=(
                    f"{must_exist}(attribute_not_exists(repairInFlightUntil) OR repairInFlightUntil <= :now) AND "
                    "(attribute_not_exists(lastRepairRequestedAt) OR lastRepairRequestedAt <= :cutoff)"
                ),
                ExpressionAttributeValues={
                    ":now": number(now),
                    ":until": number(now + lease),
                    ":cutoff": number(now - min_gap),
                },
            ),
            none_when=CONDITION_FAILED,
        )
        if noted is not None:
            return 0.0
        with translated("reading a repair request"):
            item = self._db.get_item(TableName=self._table, Key=key, ConsistentRead=True).get("Item")
        if item is None:
            return None
        waits = [number_of(item, "lastRepairRequestedAt") + min_gap - now]
        if "repairInFlightUntil" in item:
            waits.append(number_of(item, "repairInFlightUntil") - now)
        return max(0.001, *waits)

    def finish_repair(self, name: str, at: float) -> None:
        written(
            "finishing a repair request",
            lambda: self._db.update_item(
                TableName=self._table,
                Key=self._keys.key(name, RECORD),
                UpdateExpression="REMOVE repairInFlightUntil",
                ConditionExpression="lastRepairRequestedAt = :at",
                ExpressionAttributeValues={":at": number(at)},
            ),
        )

    def forget_rotation_request(self, name: str, at: float) -> None:
        written(
            "forgetting a rotation request",
            lambda: self._db.update_item(
                TableName=self._table,
                Key=self._keys.key(name, RECORD),
                UpdateExpression="REMOVE lastRotationRequestedAt",
                ConditionExpression="lastRotationRequestedAt = :at",
                ExpressionAttributeValues={":at": number(at)},
            ),
        )
