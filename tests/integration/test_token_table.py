"""The token table against moto server: the lease's holder stores its token and gives the lease back in
one write, and a holder that lost its lease still stores a newer token without touching the new lease."""

from __future__ import annotations

from typing import Any

import pytest

from zus_m2m.aws.table import TableKeys
from zus_m2m.aws.token_table import DynamoTokenTable
from zus_m2m.values import CachedToken, ZusQuota

NOW = 1_800_000_000.0
CLIENT = "billing"


@pytest.fixture
def tokens(aws: Any) -> DynamoTokenTable:
    return DynamoTokenTable(aws.dynamodb, aws.table_name, TableKeys("zus-m2m-admin"))


def writes(aws: Any, work: Any) -> int:
    """How many UpdateItem requests ``work()`` sends."""
    sent: list[str] = []

    def count(**_: Any) -> None:
        sent.append("UpdateItem")

    aws.dynamodb.meta.events.register("after-call.dynamodb.UpdateItem", count)
    try:
        work()
    finally:
        aws.dynamodb.meta.events.unregister("after-call.dynamodb.UpdateItem", count)
    return len(sent)


def test_the_lease_holder_stores_its_token_and_releases_the_lease_in_one_write(
    aws: Any, tokens: DynamoTokenTable
) -> None:
    # Given a holder of the fetch lease
    assert tokens.acquire_lease(CLIENT, "me", NOW, NOW + 30).taken
    token = CachedToken("t1", "Bearer", NOW + 3600, "app-1", lifetime=3600.0)
    # When it stores the token it fetched
    sent = writes(aws, lambda: tokens.put_token(CLIENT, token, "me"))
    # Then one write stored it and gave the lease back
    state = tokens.get(CLIENT, consistent=True)
    assert (sent, state.token, state.lease_owner) == (1, token, None)


def test_a_holder_that_lost_its_lease_stores_its_token_and_leaves_the_new_lease(
    aws: Any, tokens: DynamoTokenTable
) -> None:
    # Given a lease that expired and another container took
    assert tokens.acquire_lease(CLIENT, "me", NOW, NOW + 30).taken
    assert tokens.acquire_lease(CLIENT, "other", NOW + 31, NOW + 61).taken
    token = CachedToken("t1", "Bearer", NOW + 3600, "app-1", lifetime=3600.0)
    # When the first holder stores its token
    tokens.put_token(CLIENT, token, "me")
    # Then the token is stored and the other container keeps its lease
    state = tokens.get(CLIENT, consistent=True)
    assert (state.token, state.lease_owner) == (token, "other")


def test_a_lease_write_retried_after_its_first_attempt_landed_takes_its_own_lease_again(
    tokens: DynamoTokenTable,
) -> None:
    # Given a lease write that landed but whose answer was lost (a read timeout, a dropped connection)
    assert tokens.acquire_lease(CLIENT, "me", NOW, NOW + 30).taken
    # When the SDK's retry of it arrives
    retried = tokens.acquire_lease(CLIENT, "me", NOW + 5, NOW + 35)
    # Then it takes the lease (this container's own) rather than find it held, and nobody else may
    assert (retried.taken, retried.state.lease_owner, retried.state.lease_until) == (True, "me", NOW + 35)
    assert not tokens.acquire_lease(CLIENT, "other", NOW + 6, NOW + 36).taken


def test_a_lease_not_taken_answers_the_item_with_the_holders_lease_and_last_fetch_time(
    aws: Any, tokens: DynamoTokenTable
) -> None:
    # Given a token stored by a holder that took 0.4 s, and a new lease taken by another container
    assert tokens.acquire_lease(CLIENT, "me", NOW, NOW + 30).taken
    tokens.put_token(CLIENT, CachedToken("t1", "Bearer", NOW + 3600, "app-1"), "me", fetch_seconds=0.4)
    assert tokens.acquire_lease(CLIENT, "other", NOW + 1, NOW + 31).taken
    # When a third tries to take it
    attempt = tokens.acquire_lease(CLIENT, "third", NOW + 2, NOW + 32)
    # Then it is not taken, and the answer (no other read) says whose it is, till when, and the last fetch time
    answer = attempt.state
    assert (attempt.taken, answer.lease_owner, answer.lease_until, answer.fetch_seconds) == (
        False,
        "other",
        NOW + 31,
        0.4,
    )


def test_an_in_use_mark_is_written_only_when_the_last_one_is_an_interval_old(tokens: DynamoTokenTable) -> None:
    tokens.mark_requested(CLIENT, NOW, unless_since=NOW - 300)
    tokens.mark_requested(CLIENT, NOW + 299, unless_since=NOW - 1)  # another container, a mark found
    assert tokens.get(CLIENT, consistent=True).last_requested_at == NOW
    tokens.mark_requested(CLIENT, NOW + 300, unless_since=NOW)
    assert tokens.get(CLIENT, consistent=True).last_requested_at == NOW + 300


def test_a_restored_copy_never_overwrites_the_copy_a_record_write_made(aws: Any, tokens: DynamoTokenTable) -> None:
    # Given a PATCH's transaction wrote the copy (consumer b only) after a vend call's query read the record
    # when it still named a and b
    aws.dynamodb.update_item(
        TableName=aws.table_name,
        Key={"pk": {"S": f"client#{CLIENT}"}, "sk": {"S": "token"}},
        UpdateExpression="SET recordStatus = :active, recordAppClientId = :app, consumers = :b",
        ExpressionAttributeValues={
            ":active": {"S": "active"},
            ":app": {"S": "app-1"},
            ":b": {"L": [{"S": "arn:aws:iam::123456789012:role/b"}]},
        },
    )
    # When the vend call puts back the copy of what it read
    tokens._restore_copy(CLIENT, "app-1", ("arn:aws:iam::123456789012:role/a", "arn:aws:iam::123456789012:role/b"))
    # Then the PATCH's copy stands
    assert tokens.view(CLIENT).consumers == ("arn:aws:iam::123456789012:role/b",)


def test_a_budget_item_first_written_by_zus_quota_note_expires(aws: Any, tokens: DynamoTokenTable) -> None:
    # A quota note can land after the client's delete removed its budget item: the item it writes expires.
    tokens.note_zus_quota(CLIENT, ZusQuota(remaining=150, reset_at=NOW + 1800), NOW)
    item = aws.dynamodb.get_item(TableName=aws.table_name, Key={"pk": {"S": f"client#{CLIENT}"}, "sk": {"S": "budget"}})
    assert item["Item"]["ttl"] == {"N": str(int(NOW + 1800) + 1)}
    # and a count after it keeps the item as long as its own rolling hour needs
    assert tokens.count_request(CLIENT, tokens.read_budget(CLIENT, NOW), NOW)
    item = aws.dynamodb.get_item(TableName=aws.table_name, Key={"pk": {"S": f"client#{CLIENT}"}, "sk": {"S": "budget"}})
    assert item["Item"]["ttl"] == {"N": str(int(NOW + 3600) + 1)}
