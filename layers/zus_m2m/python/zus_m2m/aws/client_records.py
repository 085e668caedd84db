"""The provisioning record of each managed client in DynamoDB: ``pk=client#<name>``, ``sk=record``.

One item per name goes through ``creating`` (a claim with an owner and an expiry) → ``active`` (the
record) → ``deleting`` → gone. Every write that decides something is conditional, so the claim is
atomic across containers (see ``zus_m2m.provisioning.create``). The rate limits of requests on demand,
on the same item, are ``aws/request_guards.py``'s.

The client's token item carries a copy of what token vending needs of the record (``table.record_copy``):
every write that changes it (complete, PATCH of the consumers, mark deleting) writes the record and the
copy in one TransactWriteItems.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from zus_m2m.aws._errors import CONDITION_FAILED, answer_or_none, transacted, translated, written
from zus_m2m.aws.table import (
    ACTIVE,
    CREATING,
    DELETING,
    NAMES,
    RECORD,
    RECORD_GONE,
    STATUS,
    TOKEN,
    TableKeys,
    active_record_item,
    client_key,
    number,
    record_copy,
    record_item,
    string,
    string_list,
)
from zus_m2m.values import ClientRecord, RecordItem

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

_STATUS_NAME = {"#status": STATUS}


class DynamoClientRecords:
    def __init__(self, dynamodb: DynamoDBClient, table_name: str, keys: TableKeys) -> None:
        self._db = dynamodb
        self._table = table_name
        self._keys = keys

    def get(self, name: str) -> RecordItem | None:
        with translated("reading a client record"):
            item = self._db.get_item(TableName=self._table, Key=client_key(name, RECORD), ConsistentRead=True).get(
                "Item"
            )
        return record_item(item) if item else None

    def list_page(self, limit: int, after: str | None) -> tuple[list[ClientRecord], str | None]:
        # A scan in the table's order (a few items per client), each request reading about a page of
        # clients, until the page is full; the next page's scan resumes after its last record's key.
        start = client_key(after, RECORD) if after is not None else None
        found: list[ClientRecord] = []
        request: dict[str, Any] = {
            "TableName": self._table,
            "FilterExpression": "sk = :record AND #status = :active",
            "ExpressionAttributeNames": _STATUS_NAME,
            "ExpressionAttributeValues": {":record": string(RECORD), ":active": string(ACTIVE)},
            "ConsistentRead": True,
            "Limit": 3 * limit,
        }
        with translated("listing client records"):
            while True:
                if start is not None:
                    request["ExclusiveStartKey"] = start
                page = self._db.scan(**request)
                items = page.get("Items", [])
                for index, item in enumerate(items):
                    record = record_item(item).record
                    if record is None:
                        continue
                    found.append(record)
                    if len(found) == limit:
                        more = index < len(items) - 1 or "LastEvaluatedKey" in page
                        return found, record.name if more else None
                start = page.get("LastEvaluatedKey")
                if start is None:
                    return found, None

    def claim(
        self,
        name: str,
        role_name: str,
        consumers: tuple[str, ...],
        owner: str,
        now: float,
        until: float,
        *,
        previous_owner: str | None,
    ) -> RecordItem | None:
        if previous_owner is None:
            condition = "attribute_not_exists(pk)"
            values: dict[str, Any] = {}
        else:
            condition = "#status = :creating AND claimOwner = :previous AND claimUntil <= :now"
            values = {":previous": string(previous_owner)}
        values.update(
            {
                ":name": string(name),
                ":creating": string(CREATING),
                ":role": string(role_name),
                ":consumers": string_list(consumers),
                ":owner": string(owner),
                ":until": number(until),
                ":now": number(now),
                ":one": number(1),
                ":zero": number(0),
            }
        )
        response = answer_or_none(
            "claiming a client name",
            lambda: self._db.update_item(
                TableName=self._table,
                Key=client_key(name, RECORD),
                UpdateExpression=(
                    "SET #name = :name, #status = :creating, roleName = :role, consumers = :consumers, "
                    "claimOwner = :owner, "
                    "claimUntil = :until, claimedAt = if_not_exists(claimedAt, :now), "
                    "attempts = if_not_exists(attempts, :zero) + :one"
                ),
                ConditionExpression=condition,
                ExpressionAttributeNames=NAMES,
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
            ),
            none_when=CONDITION_FAILED,
        )
        return None if response is None else record_item(response["Attributes"])

    def mark_create_started(self, name: str, owner: str, now: float) -> bool:
        return self._update_claim(
            "marking a create as started", name, owner, "SET createStartedAt = :now", {":now": number(now)}
        )

    def forget_create_started(self, name: str, owner: str) -> None:
        self._update_claim("forgetting a refused create", name, owner, "REMOVE createStartedAt")

    def note_app_client(self, name: str, owner: str, app_client_id: str) -> bool:
        return self._update_claim(
            "noting the created app client", name, owner, "SET appClientId = :app", {":app": string(app_client_id)}
        )

    def complete(self, record: ClientRecord, owner: str) -> bool:
        item = active_record_item(record)
        return self._with_copy(
            "writing a client record",
            {
                "Put": {
                    "TableName": self._table,
                    "Item": item,
                    "ConditionExpression": "#status = :creating AND claimOwner = :owner",
                    "ExpressionAttributeNames": _STATUS_NAME,
                    "ExpressionAttributeValues": {":creating": string(CREATING), ":owner": string(owner)},
                }
            },
            record,
        )

    def release(self, name: str, owner: str) -> None:
        forgotten = written(
            "releasing a claim",
            lambda: self._db.delete_item(
                TableName=self._table,
                Key=client_key(name, RECORD),
                ConditionExpression=(
                    "#status = :creating AND claimOwner = :owner AND attribute_not_exists(createStartedAt)"
                ),
                ExpressionAttributeNames=_STATUS_NAME,
                ExpressionAttributeValues={":creating": string(CREATING), ":owner": string(owner)},
            ),
        )
        if not forgotten:
            self._update_claim("releasing a claim", name, owner, "SET claimUntil = :zero", {":zero": number(0)})

    def set_consumers(self, name: str, consumers: tuple[str, ...]) -> ClientRecord | None:
        current = self.get(name)
        if current is None or current.status != ACTIVE or current.record is None:
            return None
        record = replace(current.record, consumers=consumers)
        # Only the record just read: a re-created client's record (another app client) is not overwritten.
        written_ = self._with_copy(
            "updating a client's consumers",
            {
                "Update": {
                    "TableName": self._table,
                    "Key": client_key(name, RECORD),
                    "UpdateExpression": "SET consumers = :consumers",
                    "ConditionExpression": "#status = :active AND appClientId = :app",
                    "ExpressionAttributeNames": _STATUS_NAME,
                    "ExpressionAttributeValues": {
                        ":consumers": string_list(consumers),
                        ":active": string(ACTIVE),
                        ":app": string(record.app_client_id),
                    },
                }
            },
            record,
        )
        return record if written_ else None

    def mark_deleting(self, name: str) -> bool:
        return transacted(
            "marking a client as being deleted",
            lambda: self._db.transact_write_items(
                TransactItems=[
                    {
                        "Update": {
                            "TableName": self._table,
                            "Key": client_key(name, RECORD),
                            "UpdateExpression": "SET #status = :deleting",
                            "ConditionExpression": "#status IN (:active, :deleting)",
                            "ExpressionAttributeNames": _STATUS_NAME,
                            "ExpressionAttributeValues": {
                                ":active": string(ACTIVE),
                                ":deleting": string(DELETING),
                            },
                        }
                    },
                    {
                        "Update": {
                            "TableName": self._table,
                            "Key": client_key(name, TOKEN),
                            "UpdateExpression": RECORD_GONE,
                            "ExpressionAttributeValues": {":copied_status": string(DELETING)},
                        }
                    },
                ]
            ),
        )

    def delete(self, name: str) -> None:
        written(
            "deleting a client record",
            lambda: self._db.delete_item(
                TableName=self._table,
                Key=client_key(name, RECORD),
                ConditionExpression="#status = :deleting",
                ExpressionAttributeNames=_STATUS_NAME,
                ExpressionAttributeValues={":deleting": string(DELETING)},
            ),
        )

    # --- helpers ----------------------------------------------------------------------------

    def _with_copy(self, operation: str, write: dict[str, Any], record: ClientRecord) -> bool:
        """``write`` of the record and the copy of ``record`` on its token item, in one transaction."""
        update, values = record_copy(record.app_client_id, record.consumers)
        copy = {
            "Update": {
                "TableName": self._table,
                "Key": client_key(record.name, TOKEN),
                "UpdateExpression": update,
                "ExpressionAttributeValues": values,
            }
        }
        return transacted(operation, lambda: self._db.transact_write_items(TransactItems=[write, copy]))  # type: ignore[list-item]

    def _update_claim(
        self, operation: str, name: str, owner: str, update: str, values: dict[str, Any] | None = None
    ) -> bool:
        placeholders = {":creating": string(CREATING), ":owner": string(owner), **(values or {})}
        return written(
            operation,
            lambda: self._db.update_item(
                TableName=self._table,
                Key=client_key(name, RECORD),
                UpdateExpression=update,
                ConditionExpression="#status = :creating AND claimOwner = :owner",
                ExpressionAttributeNames=_STATUS_NAME,
                ExpressionAttributeValues=placeholders,
            ),
        )
