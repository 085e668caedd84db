"""The provisioning record of each managed client in DynamoDB: ``pk=client#<name>``, ``sk=record``.

One item per name goes through ``creating`` (a claim with an owner and an expiry) → ``active`` (the
record) → ``deleting`` → gone. Every write that decides something is conditional, so the claim is
atomic across containers (see ``zus_m2m.provisioning``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from zus_m2m.aws._errors import error_code, translated
from zus_m2m.aws.token_table import client_key
from zus_m2m.provisioning import ClientRecord, RecordItem, Status

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

RECORD = "record"
# "name" and "status" are DynamoDB reserved words.
_NAMES = {"#name": "name", "#status": "status"}
_STATUSES: tuple[Status, ...] = ("creating", "active", "deleting")


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def _n(value: float) -> dict[str, str]:
    return {"N": repr(round(value, 3))}


def _string(item: dict[str, Any], name: str) -> str | None:
    value = item.get(name)
    return str(value["S"]) if value and "S" in value else None


def _number(item: dict[str, Any], name: str) -> float:
    value = item.get(name)
    return float(value["N"]) if value and "N" in value else 0.0


def _item(item: dict[str, Any]) -> RecordItem:
    status = _string(item, "status")
    if status not in _STATUSES:
        status = "creating"
    name = _string(item, "name") or ""
    record = None
    if status != "creating":
        record = ClientRecord(
            name=name,
            app_client_id=_string(item, "appClientId") or "",
            client_id=_string(item, "clientId") or "",
            role_id=_string(item, "roleId") or "",
            role_name=_string(item, "roleName") or "",
            secret_arn=_string(item, "secretArn") or "",
            created_at=int(_number(item, "createdAt")),
        )
    return RecordItem(
        name=name,
        status=status,  # type: ignore[arg-type]  # narrowed by the membership test above
        role_name=_string(item, "roleName") or "",
        record=record,
        claim_owner=_string(item, "claimOwner"),
        claim_until=_number(item, "claimUntil"),
        claimed_at=_number(item, "claimedAt"),
        create_started_at=_number(item, "createStartedAt") if "createStartedAt" in item else None,
        app_client_id=_string(item, "appClientId"),
    )


class DynamoClientRecords:
    def __init__(self, dynamodb: DynamoDBClient, table_name: str) -> None:
        self._db = dynamodb
        self._table = table_name

    def get(self, name: str) -> RecordItem | None:
        with translated("reading a client record"):
            item = self._db.get_item(TableName=self._table, Key=client_key(name, RECORD), ConsistentRead=True).get(
                "Item"
            )
        return _item(item) if item else None

    def list_active(self) -> list[ClientRecord]:
        # A scan is fine at the scale of one team's app clients (a few items each).
        found: list[ClientRecord] = []
        with translated("listing client records"):
            for page in self._db.get_paginator("scan").paginate(
                TableName=self._table,
                FilterExpression="sk = :record AND #status = :active",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={":record": _s(RECORD), ":active": _s("active")},
                ConsistentRead=True,
            ):
                found.extend(record for item in page.get("Items", []) if (record := _item(item).record))
        return sorted(found, key=lambda record: record.name)

    def claim(
        self, name: str, role_name: str, owner: str, now: float, until: float, *, previous_owner: str | None
    ) -> RecordItem | None:
        if previous_owner is None:
            condition = "attribute_not_exists(pk)"
            values: dict[str, Any] = {}
        else:
            condition = "#status = :creating AND claimOwner = :previous AND claimUntil <= :now"
            values = {":previous": _s(previous_owner)}
        values.update(
            {
                ":name": _s(name),
                ":creating": _s("creating"),
                ":role": _s(role_name),
                ":owner": _s(owner),
                ":until": _n(until),
                ":now": _n(now),
                ":one": {"N": "1"},
                ":zero": {"N": "0"},
            }
        )
        with translated("claiming a client name"):
            try:
                response = self._db.update_item(
                    TableName=self._table,
                    Key=client_key(name, RECORD),
                    UpdateExpression=(
                        "SET #name = :name, #status = :creating, roleName = :role, claimOwner = :owner, "
                        "claimUntil = :until, claimedAt = if_not_exists(claimedAt, :now), "
                        "attempts = if_not_exists(attempts, :zero) + :one"
                    ),
                    ConditionExpression=condition,
                    ExpressionAttributeNames=_NAMES,
                    ExpressionAttributeValues=values,
                    ReturnValues="ALL_NEW",
                )
            except ClientError as exc:
                if error_code(exc) == "ConditionalCheckFailedException":
                    return None
                raise
        return _item(response["Attributes"])

    def mark_create_started(self, name: str, owner: str, now: float) -> bool:
        return self._update_claim(
            "marking a create as started", name, owner, "SET createStartedAt = :now", {":now": {"N": repr(now)}}
        )

    def forget_create_started(self, name: str, owner: str) -> None:
        self._update_claim("forgetting a refused create", name, owner, "REMOVE createStartedAt")

    def note_app_client(self, name: str, owner: str, app_client_id: str) -> bool:
        return self._update_claim(
            "noting the created app client", name, owner, "SET appClientId = :app", {":app": _s(app_client_id)}
        )

    def complete(self, record: ClientRecord, owner: str) -> bool:
        item = {
            **client_key(record.name, RECORD),
            "name": _s(record.name),
            "status": _s("active"),
            "appClientId": _s(record.app_client_id),
            "clientId": _s(record.client_id),
            "roleId": _s(record.role_id),
            "roleName": _s(record.role_name),
            "secretArn": _s(record.secret_arn),
            "createdAt": {"N": str(record.created_at)},
        }
        return self._conditional(
            "writing a client record",
            lambda: self._db.put_item(
                TableName=self._table,
                Item=item,
                ConditionExpression="#status = :creating AND claimOwner = :owner",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={":creating": _s("creating"), ":owner": _s(owner)},
            ),
        )

    def release(self, name: str, owner: str) -> None:
        forgotten = self._conditional(
            "releasing a claim",
            lambda: self._db.delete_item(
                TableName=self._table,
                Key=client_key(name, RECORD),
                ConditionExpression=(
                    "#status = :creating AND claimOwner = :owner AND attribute_not_exists(createStartedAt)"
                ),
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={":creating": _s("creating"), ":owner": _s(owner)},
            ),
        )
        if not forgotten:
            self._update_claim("releasing a claim", name, owner, "SET claimUntil = :zero", {":zero": {"N": "0"}})

    def mark_deleting(self, name: str) -> bool:
        return self._conditional(
            "marking a client as being deleted",
            lambda: self._db.update_item(
                TableName=self._table,
                Key=client_key(name, RECORD),
                UpdateExpression="SET #status = :deleting",
                ConditionExpression="#status IN (:active, :deleting)",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={":active": _s("active"), ":deleting": _s("deleting")},
            ),
        )

    def delete(self, name: str) -> None:
        self._conditional(
            "deleting a client record",
            lambda: self._db.delete_item(
                TableName=self._table,
                Key=client_key(name, RECORD),
                ConditionExpression="#status = :deleting",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={":deleting": _s("deleting")},
            ),
        )

    # --- helpers ----------------------------------------------------------------------------

    def _update_claim(
        self, operation: str, name: str, owner: str, update: str, values: dict[str, Any] | None = None
    ) -> bool:
        placeholders = {":creating": _s("creating"), ":owner": _s(owner), **(values or {})}
        return self._conditional(
            operation,
            lambda: self._db.update_item(
                TableName=self._table,
                Key=client_key(name, RECORD),
                UpdateExpression=update,
                ConditionExpression="#status = :creating AND claimOwner = :owner",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=placeholders,
            ),
        )

    def _conditional(self, operation: str, write: Any) -> bool:
        """True when written, False when the condition did not hold."""
        with translated(operation):
            try:
                write()
            except ClientError as exc:
                if error_code(exc) == "ConditionalCheckFailedException":
                    return False
                raise
        return True
