"""The due index against moto server: a query reads the due items and no others, claims and the other
writes are conditional on the item being due as the caller saw it, and records written before the index
existed are enlisted a page at a time."""

from __future__ import annotations

import time
from typing import Any

import pytest

from zus_m2m.aws.client_records import DynamoClientRecords
from zus_m2m.aws.due_index import DynamoDueIndex
from zus_m2m.aws.table import TableKeys, client_key
from zus_m2m.aws.token_table import DynamoTokenTable
from zus_m2m.values import REFRESH, ROTATION, CachedToken, ClientRecord, WorkItem

ADMIN = "zus-m2m-admin"
KEYS = TableKeys(ADMIN)
NOW = 1_800_000_000.0


@pytest.fixture
def index(aws: Any) -> DynamoDueIndex:
    return DynamoDueIndex(aws.dynamodb, aws.table_name, KEYS)


@pytest.fixture
def tokens(aws: Any) -> DynamoTokenTable:
    return DynamoTokenTable(aws.dynamodb, aws.table_name, KEYS, refresh_margin=300)


def items_read(aws: Any, work: Any) -> int:
    """How many items the queries and scans ``work()`` makes read (DynamoDB's ScannedCount)."""
    counted: list[int] = []

    def count(parsed: dict[str, Any], **_: Any) -> None:
        counted.append(int(parsed.get("ScannedCount", 0)))

    aws.dynamodb.meta.events.register("after-call.dynamodb.Query", count)
    aws.dynamodb.meta.events.register("after-call.dynamodb.Scan", count)
    try:
        work()
    finally:
        aws.dynamodb.meta.events.unregister("after-call.dynamodb.Query", count)
        aws.dynamodb.meta.events.unregister("after-call.dynamodb.Scan", count)
    return sum(counted)


def in_use(tokens: DynamoTokenTable, client: str, expires_at: float) -> None:
    tokens.put_token(client, CachedToken("t", "Bearer", expires_at, f"app-{client}"), None)
    tokens.mark_requested(client, NOW)


def test_a_query_reads_the_due_items_and_no_others(aws: Any, index: DynamoDueIndex, tokens: DynamoTokenTable) -> None:
    # 40 clients in use, their tokens expiring one a minute; 10 more with a token nobody uses
    for minute in range(40):
        in_use(tokens, f"client-{minute:02d}", NOW + 300 + 60 * minute)
    for unused in range(10):
        tokens.put_token(f"unused-{unused}", CachedToken("t", "Bearer", NOW + 300, "app"), None)

    found: list[WorkItem] = []
    read = items_read(aws, lambda: found.extend(index.due(REFRESH, NOW + 5 * 60 - 1, limit=100)))

    assert [item.client for item in found] == [f"client-{m:02d}" for m in range(5)]  # the longest due first
    assert [item.due_at for item in found] == [NOW + 60 * m for m in range(5)]
    assert read == 5
    assert [item.client for item in index.due(REFRESH, NOW + 3600, limit=3)] == ["client-00", "client-01", "client-02"]


def test_a_claim_holds_once_and_only_what_holds_is_rescheduled(index: DynamoDueIndex, tokens: DynamoTokenTable) -> None:
    in_use(tokens, "billing", NOW + 300)
    [due] = index.due(REFRESH, NOW, limit=10)

    claimed = index.claim(due, NOW + 210)

    assert claimed == WorkItem(REFRESH, "billing", NOW + 210)
    assert index.claim(due, NOW + 210) is None  # another run saw the same due item: too late
    assert index.due(REFRESH, NOW + 200, limit=10) == []
    assert not index.reschedule(due, NOW + 999)  # a stale message's work moves nothing
    assert index.reschedule(claimed, NOW + 500)
    mark = index.mark(REFRESH, "billing")
    assert mark is not None
    assert (mark.kind, mark.due_at, mark.last_requested_at) == (REFRESH, NOW + 500, NOW)
    assert index.mark(REFRESH, "nobody") is None


def test_an_idle_client_is_retired_unless_it_was_used_meanwhile(
    index: DynamoDueIndex, tokens: DynamoTokenTable
) -> None:
    in_use(tokens, "idle", NOW + 300)
    in_use(tokens, "busy", NOW + 300)
    idle, busy = (WorkItem(REFRESH, name, NOW) for name in ("idle", "busy"))
    tokens.mark_requested("busy", NOW + 3600)  # asked for again after the worker read its item

    assert index.delist(idle, idle_before=NOW + 1)
    assert not index.delist(busy, idle_before=NOW + 1)
    assert [item.client for item in index.due(REFRESH, NOW + 3600, limit=10)] == ["busy"]
    tokens.mark_requested("idle", NOW + 7200)  # used again: back in the index
    assert {item.client for item in index.due(REFRESH, NOW + 3600, limit=10)} == {"busy", "idle"}


def test_records_are_due_for_a_check_from_the_start_and_the_admin_is_enlisted_once(
    aws: Any, index: DynamoDueIndex
) -> None:
    records = DynamoClientRecords(aws.dynamodb, aws.table_name, KEYS)
    assert records.claim("billing", "Builder Admin", (), "me", NOW, NOW + 40, previous_owner=None)
    assert records.complete(ClientRecord("billing", "app", "cid", "role", "Builder Admin", "arn", int(NOW)), "me")

    assert index.enlist(ROTATION, ADMIN, NOW + 1)
    assert not index.enlist(ROTATION, ADMIN, NOW + 2)
    assert index.due(ROTATION, NOW + 10, limit=10) == [
        WorkItem(ROTATION, "billing", NOW),
        WorkItem(ROTATION, ADMIN, NOW + 1),
    ]
    admin_item = aws.dynamodb.get_item(TableName=aws.table_name, Key=KEYS.key(ADMIN, "record"))["Item"]
    assert admin_item["pk"] == {"S": f"admin#{ADMIN}"}


def test_records_written_before_the_index_are_enlisted_a_page_at_a_time_until_done(
    aws: Any, index: DynamoDueIndex
) -> None:
    for number in range(7):  # the shape of a record before this version: no due marks
        item = {**client_key(f"old-{number}", "record"), "status": {"S": "active"}, "name": {"S": f"old-{number}"}}
        aws.dynamodb.put_item(TableName=aws.table_name, Item=item)
    creating = {**client_key("being-made", "record"), "status": {"S": "creating"}}
    aws.dynamodb.put_item(TableName=aws.table_name, Item=creating)

    enlisted = [index.backfill(NOW, page_size=3) for _ in range(5)]  # the table's 8 or 9 items, 3 a page

    assert max(enlisted) <= 3
    assert sum(enlisted) == 7
    assert {item.client for item in index.due(ROTATION, NOW, limit=100)} == {f"old-{n}" for n in range(7)}
    assert items_read(aws, lambda: index.backfill(time.time(), page_size=3)) == 0  # done: no scan any more
