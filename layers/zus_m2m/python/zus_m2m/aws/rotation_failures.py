"""Recorded rotation failures in DynamoDB: one item per client in one partition, ``pk=rotation-failures``,
``sk=<client>``, so that the repair job reads every failure with one query and never scans the clients.
Each item expires (TTL) a month after its failure, should nothing ever clear it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from zus_m2m.admin_values import RotationFailure
from zus_m2m.aws._errors import CONDITION_FAILED, answer_or_none, translated
from zus_m2m.aws.table import number, number_of, string, string_of

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

PARTITION = "rotation-failures"
_KEPT_SECONDS = 30 * 86400.0
# What a reason may take of the item: an error's detail, cut.
_REASON_MAX = 300


def _key(client: str) -> dict[str, Any]:
    return {"pk": string(PARTITION), "sk": string(client)}


def _failure(item: dict[str, Any]) -> RotationFailure:
    return RotationFailure(
        client=string_of(item, "sk") or "",
        version=string_of(item, "versionId") or "",
        step=string_of(item, "step") or "",
        failed_at=number_of(item, "failedAt"),
        reason=string_of(item, "reason") or "",
        seen_at=number_of(item, "seenAt") if "seenAt" in item else None,
    )


class DynamoRotationFailures:
    def __init__(self, dynamodb: DynamoDBClient, table_name: str) -> None:
        self._db = dynamodb
        self._table = table_name

    def record(self, failure: RotationFailure) -> None:
        item = {
            **_key(failure.client),
            "versionId": string(failure.version),
            "step": string(failure.step),
            "failedAt": number(failure.failed_at),
            "reason": string(failure.reason[:_REASON_MAX]),
            "ttl": number(int(failure.failed_at + _KEPT_SECONDS)),
        }
        with translated("recording a rotation failure"):
            self._db.put_item(TableName=self._table, Item=item)

    def list(self) -> list[RotationFailure]:
        found: list[RotationFailure] = []
        with translated("listing rotation failures"):
            for page in self._db.get_paginator("query").paginate(
                TableName=self._table,
                KeyConditionExpression="pk = :partition",
                ExpressionAttributeValues={":partition": string(PARTITION)},
                ConsistentRead=True,
            ):
                found.extend(_failure(item) for item in page.get("Items", []))
        return found

    def mark_seen(self, failure: RotationFailure, now: float) -> bool:
        answer = answer_or_none(
            "marking a rotation failure as seen",
            lambda: self._db.update_item(
                TableName=self._table,
                Key=_key(failure.client),
                UpdateExpression="SET seenAt = :now",
                ConditionExpression="versionId = :version AND failedAt = :failed",
                ExpressionAttributeValues={
                    ":now": number(now),
                    ":version": string(failure.version),
                    ":failed": number(failure.failed_at),
                },
            ),
            none_when=CONDITION_FAILED,
        )
        return answer is not None

    def clear(self, client: str, version: str) -> None:
        answer_or_none(
            "clearing a rotation failure",
            lambda: self._db.delete_item(
                TableName=self._table,
                Key=_key(client),
                ConditionExpression="versionId = :version",
                ExpressionAttributeValues={":version": string(version)},
            ),
            none_when=CONDITION_FAILED,
        )
