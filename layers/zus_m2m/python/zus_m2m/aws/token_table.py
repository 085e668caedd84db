"""The DynamoDB tier of token vending: token items (with their single-flight lease and the memory of
failed upstream attempts) and rolling-hour budgets (with what Zus last said of its own count).

Item shapes are in docs/design.md and ``aws/table.py``. All writes that decide something (who fetches,
whether the budget item is still as read) are conditional writes, so they are atomic across containers. A token
item names the app client its token was minted for (``appClientId``) and carries a copy of the client's
record (its status, app client and consumers; ``aws/client_records.py`` writes it in the same
transaction as the record): ``view`` decides a hit with one GetItem, so that a caller is only ever
served a token of the client the record names now.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, cast

from botocore.exceptions import ClientError

from zus_m2m.aws._errors import CONDITION_FAILED, error_code, translated, written
from zus_m2m.aws.table import (
    ACTIVE,
    BUDGET,
    DELETING,
    DUE_KIND,
    HOUR,
    LIVE,
    LIVE_VALUES,
    RECORD,
    RECORD_STATUS,
    STATUS,
    TOKEN,
    TableKeys,
    budget_of,
    client_view,
    consumers_of,
    number,
    record_copy,
    string,
    string_of,
    token_state,
    token_write,
    tombstone,
)
from zus_m2m.errors import ResourceNotFound, StoreUnavailable
from zus_m2m.values import REFRESH, Budget, CachedToken, ClientView, FailureCause, LeaseAttempt, TokenState, ZusQuota

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

# What vending needs of a token item without the record's copy and of the record, read in one query
# (the client's budget item is in the key range too).
_QUERY_VIEW = (
    "sk, #status, appClientId, consumers, accessToken, tokenType, expiresAt, tokenLifetime, secretVersion, "
    "leaseOwner, leaseUntil, blockedUntil, lastRequestedAt, failures, failedBy, failedUntil, refusedReplacedAt, "
    "fetchSeconds"
)


class DynamoTokenTable:
    """``refresh_margin``: a stored token is due for the pre-refresh this long before it expires, or half
    its life before if that is shorter (its ``dueAt``); the item is in the due index while its client is
    in use (``dueKind``, set by ``mark_requested``; docs/design.md)."""

    def __init__(
        self, dynamodb: DynamoDBClient, table_name: str, keys: TableKeys, *, refresh_margin: float = 300.0
    ) -> None:
        self._db = dynamodb
        self._table = table_name
        self._keys = keys
        self._refresh_margin = refresh_margin

    def get(self, client: str, *, consistent: bool = False) -> TokenState:
        with translated("reading the token cache"):
            item = self._db.get_item(
                TableName=self._table, Key=self._keys.key(client, TOKEN), ConsistentRead=consistent
            ).get("Item", {})
        return token_state(item)

    def view(self, client: str) -> ClientView:
        # Strongly consistent: a consumer removed by a PATCH that has answered is refused by the next
        # read, and a lease or a refused token's replacement is seen as soon as it is written. The whole
        # item: all but its keys, TTL and due mark is needed, the read costs the same capacity either way,
        # and a projection is one more expression for the server to evaluate on the hottest read.
        with translated("reading the client's token item"):
            item = self._db.get_item(TableName=self._table, Key=self._keys.key(client, TOKEN), ConsistentRead=True).get(
                "Item", {}
            )
        view = client_view(item)
        return view if view is not None else self._view_with_record(client)

    def _view_with_record(self, client: str) -> ClientView:
        # "record" < "token" and the budget item sorts before both: one query, two items.
        with translated("reading the client and its token"):
            items = self._db.query(
                TableName=self._table,
                KeyConditionExpression="pk = :pk AND sk BETWEEN :record AND :token",
                ProjectionExpression=_QUERY_VIEW,
                ExpressionAttributeNames={"#status": STATUS},
                ExpressionAttributeValues={
                    ":pk": string(self._keys.partition(client)),
                    ":record": string(RECORD),
                    ":token": string(TOKEN),
                },
                ConsistentRead=True,
            ).get("Items", [])
        by_kind = {item["sk"]["S"]: item for item in items}
        record = by_kind.get(RECORD, {})
        # Only an active record with its app client names a client tokens may be served for.
        app_client_id = string_of(record, "appClientId") if string_of(record, STATUS) == ACTIVE else None
        view = ClientView(
            app_client_id=app_client_id or None,
            consumers=consumers_of(record) if app_client_id else (),
            token=token_state(by_kind.get(TOKEN, {})),
        )
        if view.app_client_id is not None:
            self._restore_copy(client, view.app_client_id, view.consumers)
        return view

    def _restore_copy(self, client: str, app_client_id: str, consumers: tuple[str, ...]) -> None:
        """Put the record's copy back on the token item, so that the next read is one GetItem again; only
        while it is absent: a record write since the query read the record wrote its own copy (in its
        transaction), which this one must not overwrite. Best effort: the query answered already."""
        update, values = record_copy(app_client_id, consumers)
        with contextlib.suppress(StoreUnavailable):
            self._conditional_update(
                "restoring the record's copy", client, update, f"attribute_not_exists({RECORD_STATUS})", values
            )

    def acquire_lease(self, client: str, owner: str, now: float, until: float) -> LeaseAttempt:
        # Taken or not, the answer is the item: with this owner's lease, or with the live lease of another
        # (a waiter learns from it when that holder should be done, without another read).
        with translated("taking the fetch lease"):
            try:
                answer = self._db.update_item(
                    TableName=self._table,
                    Key=self._keys.key(client, TOKEN),
                    UpdateExpression="SET leaseOwner = :owner, leaseUntil = :until",
                    # Its own lease too: a retry of this write whose first attempt landed (its answer
                    # lost or late) takes it again, rather than find a lease nobody is using.
                    ConditionExpression=(
                        f"(attribute_not_exists(leaseUntil) OR leaseUntil <= :now OR leaseOwner = :owner) AND {LIVE}"
                    ),
                    ExpressionAttributeValues={
                        ":owner": string(owner),
                        ":until": number(until),
                        ":now": number(now),
                        **LIVE_VALUES,
                    },
                    ReturnValues="ALL_NEW",
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
            except ClientError as exc:
                if error_code(exc) not in CONDITION_FAILED:
                    raise
                # botocore parses the old item into the error's response (not in its type stubs).
                old = cast(dict[str, Any], exc.response).get("Item", {})
                if string_of(old, RECORD_STATUS) == DELETING:
                    raise ResourceNotFound(f"app client {client!r} is being deleted") from exc
                return LeaseAttempt(False, token_state(old))
        return LeaseAttempt(True, token_state(answer.get("Attributes", {})))

    def release_lease(self, client: str, owner: str) -> None:
        self._conditional_update(
            "releasing the fetch lease",
            client,
            "REMOVE leaseOwner, leaseUntil",
            "leaseOwner = :owner",
            {":owner": string(owner)},
        )

    def put_token(
        self,
        client: str,
        token: CachedToken,
        owner: str | None,
        *,
        replacing: CachedToken | None = None,
        fetch_seconds: float = 0.0,
    ) -> None:
        update, condition, values = token_write(token, self._refresh_margin, replacing, fetch_seconds)
        condition, values, names = f"{condition} AND {LIVE}", values | LIVE_VALUES, {"#ttl": "ttl"}
        # The lease's holder stores its token and gives the lease back in one write; only when it no
        # longer holds the lease, or a newer token is there, do the two happen apart.
        if owner is not None and self._conditional_update(
            "storing a token",
            client,
            update + ", leaseOwner, leaseUntil",
            condition + " AND leaseOwner = :owner",
            values | {":owner": string(owner)},
            names=names,
        ):
            return
        self._conditional_update("storing a token", client, update, condition, values, names=names)
        if owner is not None:
            self.release_lease(client, owner)

    def discard_token(self, client: str, app_client_id: str) -> None:
        condition = "attribute_not_exists(appClientId)" if not app_client_id else "appClientId = :app"
        self._conditional_update(
            "discarding another client's token",
            client,
            "REMOVE accessToken, tokenType, expiresAt, tokenLifetime, appClientId, secretVersion",
            f"attribute_exists(accessToken) AND {condition}",
            {":app": string(app_client_id)} if app_client_id else {},
        )

    def record_failure(self, client: str, owner: str, failures: int, cause: FailureCause, until: float) -> None:
        # One write, and only by the lease's holder: the failure memory, and the lease given back.
        self._conditional_update(
            "recording a failed token request",
            client,
            "SET failures = :failures, failedBy = :cause, failedUntil = :until REMOVE leaseOwner, leaseUntil",
            "leaseOwner = :owner",
            {
                ":failures": number(failures),
                ":cause": string(cause),
                ":until": number(until),
                ":owner": string(owner),
            },
        )

    def block(self, client: str, until: float) -> None:
        self._conditional_update(
            "recording a Zus rate limit", client, "SET blockedUntil = :at", LIVE, {":at": number(until)} | LIVE_VALUES
        )

    def mark_requested(self, client: str, now: float, *, unless_since: float | None = None) -> None:
        # In use: the item joins the due index (at the dueAt its token gave it), for the pre-refresh.
        values = {":at": number(now), ":kind": string(REFRESH), **LIVE_VALUES}
        condition = LIVE
        if unless_since is not None:
            condition += " AND (attribute_not_exists(lastRequestedAt) OR lastRequestedAt <= :since)"
            values[":since"] = number(unless_since)
        self._conditional_update(
            "recording token use", client, f"SET lastRequestedAt = :at, {DUE_KIND} = :kind", condition, values
        )

    def retire(self, client: str, now: float) -> None:
        # The token item becomes a tombstone (not deleted): a write of work still in flight would create
        # it again. The budget item's writes need no fence: each sets its TTL.
        with translated("purging cached tokens"):
            self._db.put_item(TableName=self._table, Item=tombstone(self._keys.key(client, TOKEN), now))
            self._db.delete_item(TableName=self._table, Key=self._keys.key(client, BUDGET))

    def read_budget(self, client: str, now: float) -> Budget:
        with translated("reading the token budget"):
            item = self._db.get_item(
                TableName=self._table, Key=self._keys.key(client, BUDGET), ConsistentRead=True
            ).get("Item", {})
        return budget_of(item, now)

    def count_request(self, client: str, budget: Budget, now: float) -> bool:
        # Optimistic concurrency on the item's version: written only if nobody wrote since ``budget``.
        return self._conditional_update(
            "spending the token budget",
            client,
            "SET requests = :stamps, version = :next, #ttl = :ttl",
            "attribute_not_exists(version) OR version = :version",
            {
                ":stamps": {"L": [number(stamp) for stamp in [*budget.stamps, now]]},
                ":next": number(budget.version + 1),
                ":version": number(budget.version),
                ":ttl": number(int(now + HOUR) + 1),
            },
            names={"#ttl": "ttl"},
            kind=BUDGET,
        )

    def note_zus_quota(self, client: str, quota: ZusQuota, seen_at: float) -> None:
        # Kept only if newer than what is there: answers can arrive out of order. A TTL if the item has
        # none (its first write, even one after the client's retirement): Zus's count ends at its reset.
        self._conditional_update(
            "recording Zus's token quota",
            client,
            "SET zusRemaining = :remaining, zusResetAt = :reset, zusSeenAt = :seen, #ttl = if_not_exists(#ttl, :ttl)",
            "attribute_not_exists(zusSeenAt) OR zusSeenAt <= :seen",
            {
                ":remaining": number(quota.remaining),
                ":reset": number(quota.reset_at),
                ":seen": number(seen_at),
                ":ttl": number(int(max(quota.reset_at, seen_at)) + 1),
            },
            names={"#ttl": "ttl"},
            kind=BUDGET,
        )

    def _conditional_update(
        self,
        operation: str,
        client: str,
        update: str,
        condition: str | None,
        values: dict[str, Any],
        *,
        names: dict[str, str] | None = None,
        kind: str = TOKEN,
    ) -> bool:
        """True when written, False when the condition did not hold."""
        key = self._keys.key(client, kind)
        request: dict[str, Any] = {"UpdateExpression": update}
        if condition is not None:
            request["ConditionExpression"] = condition
        if names:
            request["ExpressionAttributeNames"] = names
        if values:
            request["ExpressionAttributeValues"] = values
        return written(operation, lambda: self._db.update_item(TableName=self._table, Key=key, **request))
