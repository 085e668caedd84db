"""The DynamoDB tier of token vending: token items (with their single-flight lease and the memory of
failed upstream attempts) and rolling-hour budgets (with what Zus last said of its own count).

Item shapes are in docs/design.md. All writes that decide something (who fetches, whether the
budget allows one more request) are conditional writes, so they are atomic across containers. A token
item names the app client its token was minted for (``appClientId``); ``view`` reads it together with
the client's record in one query, so that a caller is only ever served a token of the client the
record names now.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple, cast, get_args

from zus_m2m.aws._errors import CONDITION_FAILED, answer_or_none, translated
from zus_m2m.aws.client_records import RECORD, consumers_of_item
from zus_m2m.aws.dynamo import DUE_AT, DUE_KIND, TableKeys, number, number_of, string, string_of
from zus_m2m.errors import StoreUnavailable
from zus_m2m.values import BudgetVerdict, CachedToken, ClientView, FailureCause, TokenState
from zus_m2m.work.items import REFRESH
from zus_m2m.zus.models import ZusQuota

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

HOUR = 3600.0
_BUDGET_ATTEMPTS = 10


TOKEN = "token"
# What vending needs of the two items: of the record, its state, app client and consumers; of the token
# item, the token, the lease and the memory of failed attempts (fewer attributes read are a faster query).
_VIEW = (
    "sk, #status, appClientId, consumers, accessToken, tokenType, expiresAt, tokenLifetime, leaseOwner, "
    "leaseUntil, blockedUntil, lastRequestedAt, failures, failedBy, failedUntil, refusedReplacedAt"
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
        return _token_state(item)

    def view(self, client: str) -> ClientView:
        # "record" < "token" and the budget item sorts before both: one query, two items.
        with translated("reading the client and its token"):
            items = self._db.query(
                TableName=self._table,
                KeyConditionExpression="pk = :pk AND sk BETWEEN :record AND :token",
                ProjectionExpression=_VIEW,
                ExpressionAttributeNames={"#status": "status"},
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
        app_client_id = string_of(record, "appClientId") if string_of(record, "status") == "active" else None
        return ClientView(
            app_client_id=app_client_id or None,
            consumers=consumers_of_item(record) if app_client_id else (),
            token=_token_state(by_kind.get(TOKEN, {})),
        )

    def acquire_lease(self, client: str, owner: str, now: float, until: float) -> TokenState | None:
        answer = answer_or_none(
            "taking the fetch lease",
            lambda: self._db.update_item(
                TableName=self._table,
                Key=self._keys.key(client, TOKEN),
                UpdateExpression="SET leaseOwner = :owner, leaseUntil = :until",
                ConditionExpression="attribute_not_exists(leaseUntil) OR leaseUntil <= :now",
                ExpressionAttributeValues={":owner": string(owner), ":until": number(until), ":now": number(now)},
                ReturnValues="ALL_NEW",
            ),
            none_when=CONDITION_FAILED,
        )
        return None if answer is None else _token_state(answer.get("Attributes", {}))

    def release_lease(self, client: str, owner: str) -> None:
        self._conditional_update(
            "releasing the fetch lease",
            client,
            "REMOVE leaseOwner, leaseUntil",
            "leaseOwner = :owner",
            {":owner": string(owner)},
        )

    def put_token(
        self, client: str, token: CachedToken, owner: str | None, *, replacing: CachedToken | None = None
    ) -> None:
        # A later-expiring token of the same app client already stored wins: two fetchers never
        # replace newer with older. A token of another (deleted) client is always replaced, and so is
        # the refused token ``replacing`` names (whatever its expiry). Zus answered: the memory of failed
        # attempts is cleared in the same write. The item's next pre-refresh moves with the token it holds.
        condition = (
            "attribute_not_exists(expiresAt) OR expiresAt <= :expires OR attribute_not_exists(appClientId) "
            "OR appClientId <> :app"
        )
        # A replacement of a refused token is remembered (when it was minted): the next report within
        # the policy's gap is ignored (tokens/single_flight.py).
        refused: dict[str, Any] = {}
        if replacing is not None:
            minted = token.expires_at - token.lifetime
            refused = {":refused": string(replacing.access_token), ":replaced": number(minted)}
        self._conditional_update(
            "storing a token",
            client,
            "SET accessToken = :token, tokenType = :type, expiresAt = :expires, tokenLifetime = :lifetime,"
            f" appClientId = :app, secretVersion = :version, #ttl = :ttl, {DUE_AT} = :due"
            + (", refusedReplacedAt = :replaced" if replacing is not None else "")
            + " REMOVE failures, failedBy, failedUntil",
            f"{condition} OR accessToken = :refused" if replacing is not None else condition,
            {
                **refused,
                ":token": string(token.access_token),
                ":type": string(token.token_type),
                ":expires": number(token.expires_at),
                ":lifetime": number(token.lifetime),
                ":app": string(token.app_client_id),
                ":version": string(token.secret_version),
                ":ttl": number(int(token.expires_at) + 1),
                ":due": number(token.expires_at - token.refresh_margin(self._refresh_margin)),
            },
            names={"#ttl": "ttl"},
        )
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
        self._set_time("recording a Zus rate limit", client, "blockedUntil", until)

    def mark_requested(self, client: str, now: float) -> None:
        # In use: the item joins the due index (at the dueAt its token gave it), for the pre-refresh.
        with translated("recording token use"):
            self._db.update_item(
                TableName=self._table,
                Key=self._keys.key(client, TOKEN),
                UpdateExpression=f"SET lastRequestedAt = :at, {DUE_KIND} = :kind",
                ExpressionAttributeValues={":at": number(now), ":kind": string(REFRESH)},
            )

    def purge(self, client: str) -> None:
        with translated("purging cached tokens"):
            for kind in (TOKEN, "budget"):
                self._db.delete_item(TableName=self._table, Key=self._keys.key(client, kind))

    # --- the rolling-hour budget -----------------------------------------------------------------

    def budget_used(self, client: str, now: float) -> int:
        return len(self._budget(client, now)[0])

    def spend_budget(self, client: str, now: float, limit: int, *, reserve: int = 0) -> BudgetVerdict:
        """Optimistic concurrency on a version number: read, prune the hour, write back if unchanged.
        Refused when ``limit - reserve`` requests were sent in the last hour, or when Zus's own count
        (its last report, less what we sent since) leaves ``reserve`` or fewer."""
        for _ in range(_BUDGET_ATTEMPTS):
            stamps, version, zus = self._budget(client, now)
            refusal = budget_refusal(stamps, zus, now, limit, reserve)
            if refusal is not None:
                return refusal
            written = self._conditional_update(
                "spending the token budget",
                client,
                "SET requests = :stamps, version = :next, #ttl = :ttl",
                "attribute_not_exists(version) OR version = :version",
                {
                    ":stamps": {"L": [number(stamp) for stamp in [*stamps, now]]},
                    ":next": number(version + 1),
                    ":version": number(version),
                    ":ttl": number(int(now + HOUR) + 1),
                },
                names={"#ttl": "ttl"},
                kind="budget",
            )
            if written:
                return BudgetVerdict(True, len(stamps) + 1)
        raise StoreUnavailable("spending the token budget failed: too much contention")

    def note_zus_quota(self, client: str, quota: ZusQuota, seen_at: float) -> None:
        # Kept only if newer than what is there: answers can arrive out of order.
        self._conditional_update(
            "recording Zus's token quota",
            client,
            "SET zusRemaining = :remaining, zusResetAt = :reset, zusSeenAt = :seen",
            "attribute_not_exists(zusSeenAt) OR zusSeenAt <= :seen",
            {":remaining": number(quota.remaining), ":reset": number(quota.reset_at), ":seen": number(seen_at)},
            kind="budget",
        )

    def _budget(self, client: str, now: float) -> tuple[list[float], int, ZusCount | None]:
        with translated("reading the token budget"):
            item = self._db.get_item(
                TableName=self._table, Key=self._keys.key(client, "budget"), ConsistentRead=True
            ).get("Item", {})
        stamps = [float(entry["N"]) for entry in item.get("requests", {}).get("L", [])]
        stamps = [stamp for stamp in stamps if stamp > now - HOUR]
        zus = None
        if "zusSeenAt" in item:
            quota = ZusQuota(int(number_of(item, "zusRemaining")), number_of(item, "zusResetAt"))
            zus = ZusCount(quota, number_of(item, "zusSeenAt"))
        return stamps, int(number_of(item, "version")), zus

    def _set_time(self, operation: str, client: str, attribute: str, at: float) -> None:
        with translated(operation):
            self._db.update_item(
                TableName=self._table,
                Key=self._keys.key(client, TOKEN),
                UpdateExpression=f"SET {attribute} = :at",
                ExpressionAttributeValues={":at": number(at)},
            )

    def _conditional_update(
        self,
        operation: str,
        client: str,
        update: str,
        condition: str,
        values: dict[str, Any],
        *,
        names: dict[str, str] | None = None,
        kind: str = TOKEN,
    ) -> bool:
        """True when written, False when the condition did not hold."""
        extra: dict[str, Any] = {"ExpressionAttributeNames": names} if names else {}
        if values:
            extra["ExpressionAttributeValues"] = values
        answer = answer_or_none(
            operation,
            lambda: self._db.update_item(
                TableName=self._table,
                Key=self._keys.key(client, kind),
                UpdateExpression=update,
                ConditionExpression=condition,
                **extra,
            ),
            none_when=CONDITION_FAILED,
        )
        return answer is not None


class ZusCount(NamedTuple):
    """Zus's last report of a client's quota, and when it was seen."""

    quota: ZusQuota
    seen_at: float


def budget_refusal(
    stamps: list[float], zus: ZusCount | None, now: float, limit: int, reserve: int
) -> BudgetVerdict | None:
    """Why one more request may not be sent now (a refused verdict), or None when it may: ``stamps`` are
    the last hour's requests; ``reserve`` of the ``limit`` is kept for recovery (0: spend it)."""
    allowance = max(0, limit - reserve)
    if len(stamps) >= allowance:
        # The next slot opens when enough of the oldest requests leave the hour.
        leaving = sorted(stamps)[len(stamps) - allowance] if allowance else now
        return BudgetVerdict(False, len(stamps), retry_after=max(1.0, leaving + HOUR - now))
    if zus is not None and zus.quota.reset_at > now:
        left = zus.quota.remaining - sum(1 for stamp in stamps if stamp > zus.seen_at)
        if left <= reserve:
            return BudgetVerdict(False, len(stamps), retry_after=max(1.0, zus.quota.reset_at - now), by_zus=True)
    return None


def _token_state(item: dict[str, Any]) -> TokenState:
    token = None
    if "accessToken" in item:
        token_type = string_of(item, "tokenType")
        token = CachedToken(
            access_token=item["accessToken"]["S"],
            token_type="Bearer" if token_type is None else token_type,
            expires_at=number_of(item, "expiresAt"),
            app_client_id=string_of(item, "appClientId") or "",
            lifetime=number_of(item, "tokenLifetime"),
            secret_version=string_of(item, "secretVersion") or "",
        )
    cause = string_of(item, "failedBy")
    return TokenState(
        token=token,
        lease_owner=string_of(item, "leaseOwner"),
        lease_until=number_of(item, "leaseUntil"),
        blocked_until=number_of(item, "blockedUntil"),
        last_requested_at=number_of(item, "lastRequestedAt"),
        failures=int(number_of(item, "failures")),
        failed_by=cast(FailureCause, cause) if cause in get_args(FailureCause) else None,
        failed_until=number_of(item, "failedUntil"),
        refused_replaced_at=number_of(item, "refusedReplacedAt"),
    )
