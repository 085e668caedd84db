"""The one table's schema in one place (docs/design.md, DynamoDB): its keys, the items' kinds and
attribute names, the record's statuses, the due marks, and the mappers between items and the values
the domain speaks of. The adapters of the table (``client_records``, ``token_table``, ``due_index``,
``rotation_failures``) build their requests from it and import nothing of one another.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast, get_args

from zus_m2m.values import (
    REFRESH,
    ROTATION,
    Budget,
    CachedToken,
    ClientRecord,
    ClientView,
    DueMark,
    FailureCause,
    RecordItem,
    Status,
    TokenState,
    ZusCount,
    ZusQuota,
)

Item = dict[str, Any]

# --- keys -----------------------------------------------------------------------------------------

CLIENT_PARTITION = "client#"
# The bootstrap admin's items live apart, under a prefix the token vending function's role may not
# touch (template.yaml scopes it to client#* with dynamodb:LeadingKeys).
ADMIN_PARTITION = "admin#"

# The kinds of a client's items (the sort key): "budget" < "record" < "token", so that one query
# between RECORD and TOKEN reads the record and the token item.
RECORD = "record"
TOKEN = "token"
BUDGET = "budget"

# The sparse global secondary index of due work (template.yaml's Table): only items that carry both
# attributes are in it. ``dueKind`` is the kind of work (``values.KINDS``), ``dueAt`` when it is due.
DUE_INDEX = "due"
DUE_KIND = "dueKind"
DUE_AT = "dueAt"
# The item of a client that carries each kind of work.
ITEM_OF_KIND = {REFRESH: TOKEN, ROTATION: RECORD}

# --- the record's life ----------------------------------------------------------------------------

STATUS = "status"
CREATING: Status = "creating"
ACTIVE: Status = "active"
DELETING: Status = "deleting"
STATUSES: tuple[Status, ...] = get_args(Status)
# "name" and "status" are DynamoDB reserved words.
NAMES = {"#name": "name", "#status": STATUS}

HOUR = 3600.0


def item_key(partition: str, kind: str) -> Item:
    return {"pk": string(partition), "sk": string(kind)}


def client_key(client: str, kind: str) -> Item:
    """The key of one of a managed client's items (``kind``: RECORD, TOKEN or BUDGET)."""
    return item_key(CLIENT_PARTITION + client, kind)


@dataclass(frozen=True)
class TableKeys:
    """Which partition holds a client's items: ``client#<name>``, or ``admin#<name>`` for the
    bootstrap admin client."""

    admin_client_name: str

    def partition(self, client: str) -> str:
        prefix = ADMIN_PARTITION if client == self.admin_client_name else CLIENT_PARTITION
        return prefix + client

    def key(self, client: str, kind: str) -> Item:
        return item_key(self.partition(client), kind)

    def client_of(self, partition: str) -> str | None:
        """The client a partition key belongs to (None for a key of neither scheme)."""
        for prefix in (CLIENT_PARTITION, ADMIN_PARTITION):
            if partition.startswith(prefix):
                return partition[len(prefix) :]
        return None


# --- DynamoDB's attribute values ------------------------------------------------------------------


def string(value: str) -> dict[str, str]:
    return {"S": value}


def number(value: float) -> dict[str, str]:
    """Epoch seconds to the millisecond (integers stay integers)."""
    return {"N": repr(round(value, 3))}


def string_list(values: tuple[str, ...]) -> Item:
    return {"L": [string(value) for value in values]}


def string_of(item: Item, name: str) -> str | None:
    value = item.get(name)
    return str(value["S"]) if value and "S" in value else None


def number_of(item: Item, name: str, default: float = 0.0) -> float:
    value = item.get(name)
    return float(value["N"]) if value and "N" in value else default


# --- items ↔ values -------------------------------------------------------------------------------


def consumers_of(item: Item) -> tuple[str, ...]:
    """A record item's consumers: none on an item written before consumers existed."""
    listed = item.get("consumers", {}).get("L", [])
    return tuple(sorted({str(entry["S"]) for entry in listed if "S" in entry}))


def record_item(item: Item) -> RecordItem:
    """A record item as read from the table."""
    status = string_of(item, STATUS)
    if status not in STATUSES:
        status = CREATING
    name = string_of(item, "name") or ""
    record = None
    if status != CREATING:
        record = ClientRecord(
            name=name,
            app_client_id=string_of(item, "appClientId") or "",
            client_id=string_of(item, "clientId") or "",
            role_id=string_of(item, "roleId") or "",
            role_name=string_of(item, "roleName") or "",
            secret_arn=string_of(item, "secretArn") or "",
            created_at=int(number_of(item, "createdAt")),
            consumers=consumers_of(item),
        )
    return RecordItem(
        name=name,
        status=status,
        role_name=string_of(item, "roleName") or "",
        record=record,
        claim_owner=string_of(item, "claimOwner"),
        claim_until=number_of(item, "claimUntil"),
        claimed_at=number_of(item, "claimedAt"),
        create_started_at=number_of(item, "createStartedAt") if "createStartedAt" in item else None,
        app_client_id=string_of(item, "appClientId"),
        consumers=consumers_of(item),
    )


def active_record_item(record: ClientRecord) -> Item:
    """The item of an active record, in the due index from the start: its first rotation check is due at
    once."""
    return {
        **client_key(record.name, RECORD),
        "name": string(record.name),
        STATUS: string(ACTIVE),
        "appClientId": string(record.app_client_id),
        "clientId": string(record.client_id),
        "roleId": string(record.role_id),
        "roleName": string(record.role_name),
        "secretArn": string(record.secret_arn),
        "createdAt": number(record.created_at),
        "consumers": string_list(record.consumers),
        DUE_KIND: string(ROTATION),
        DUE_AT: number(record.created_at),
    }


# --- the record's copy on the token item -----------------------------------------------------------
# Token vending decides a hit from the token item alone (one GetItem): the item carries, beside the
# token, what the record says of who may get it and for which app client. Every write of the record that
# changes either (complete, PATCH of consumers, mark deleting) writes the copy in the same
# TransactWriteItems, so the two never disagree. A token item without the copy (one written before it
# existed, one a vend call re-created after a purge, or one TTL deleted after its token expired) is read
# with the record instead (a query), and the copy is put back if it is still absent (``token_table``).
RECORD_STATUS = "recordStatus"
RECORD_APP_CLIENT = "recordAppClientId"
RECORD_CONSUMERS = "consumers"


def record_copy(app_client_id: str, consumers: tuple[str, ...]) -> tuple[str, Item]:
    """The token item's update that copies an active record (its app client and consumers) onto it, and
    its placeholders."""
    update = f"SET {RECORD_STATUS} = :copied_status, {RECORD_APP_CLIENT} = :copied_app, {RECORD_CONSUMERS} = :copied"
    values = {
        ":copied_status": string(ACTIVE),
        ":copied_app": string(app_client_id),
        ":copied": string_list(consumers),
    }
    return update, values


# The copy of a record no longer active: nobody is served (the item stays, with its lease and budget).
RECORD_GONE = f"SET {RECORD_STATUS} = :copied_status REMOVE {RECORD_APP_CLIENT}, {RECORD_CONSUMERS}"

# A deleted client's token item is a tombstone for this long (then TTL deletes it): its copy's status
# "deleting" and nothing else. Work in flight when the client was deleted (a pre-refresh, a vend call's
# fetch: neither outlives a function's 15-minute limit) finds it and writes nothing, where a deleted item
# would have been created again by its write. A re-create's record write makes the copy active again.
TOMBSTONE_SECONDS = HOUR
# The condition of every token-item write that may create the item (a lease, a token, a block, a use
# mark): not while its client is being deleted, nor after (its placeholder: ``LIVE_VALUES``).
LIVE = f"(attribute_not_exists({RECORD_STATUS}) OR {RECORD_STATUS} = :live_copy)"
LIVE_VALUES = {":live_copy": {"S": ACTIVE}}


def tombstone(key: Item, now: float) -> Item:
    """The token item of a client being deleted, as it is left (``TOMBSTONE_SECONDS``)."""
    return {**key, RECORD_STATUS: string(DELETING), "ttl": number(int(now + TOMBSTONE_SECONDS))}


def client_view(item: Item) -> ClientView | None:
    """What a token item says of its client (the record's copy) and its token; None when it carries no
    copy of the record (then the record itself must be read)."""
    status = string_of(item, RECORD_STATUS)
    if status is None:
        return None
    app_client_id = string_of(item, RECORD_APP_CLIENT) if status == ACTIVE else None
    return ClientView(
        app_client_id=app_client_id or None,
        consumers=consumers_of(item) if app_client_id else (),
        token=token_state(item),
    )


def token_state(item: Item) -> TokenState:
    """A token item as read: the token, the lease, the pause Zus asked for and the failed attempts."""
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
        fetch_seconds=number_of(item, "fetchSeconds"),
    )


def token_write(
    token: CachedToken, refresh_margin: float, replacing: CachedToken | None, fetch_seconds: float = 0.0
) -> tuple[str, str, Item]:
    """A token's write: its update expression, its condition and their placeholders.

    A later-expiring token of the same app client already stored wins: two fetchers never replace newer
    with older. A token of another (deleted) client is always replaced, and so is the refused token
    ``replacing`` names (whatever its expiry); that replacement is remembered (when the new token was
    minted, ``refusedReplacedAt``): the next report within the policy's gap is ignored
    (tokens/single_flight.py). Zus answered: the memory of failed attempts is cleared in the same write.
    The item's TTL is the token's expiry, and its next pre-refresh (``dueAt``) moves with the token.
    ``fetch_seconds``: how long the lease's holder took (kept for the next fetch's waiters; 0: not kept).
    """
    update = (
        "SET accessToken = :token, tokenType = :type, expiresAt = :expires, tokenLifetime = :lifetime,"
        f" appClientId = :app, secretVersion = :version, #ttl = :ttl, {DUE_AT} = :due"
    )
    condition = (
        "(attribute_not_exists(expiresAt) OR expiresAt <= :expires OR attribute_not_exists(appClientId) "
        "OR appClientId <> :app"
    )
    values: Item = {
        ":token": string(token.access_token),
        ":type": string(token.token_type),
        ":expires": number(token.expires_at),
        ":lifetime": number(token.lifetime),
        ":app": string(token.app_client_id),
        ":version": string(token.secret_version),
        ":ttl": number(int(token.expires_at) + 1),
        ":due": number(token.expires_at - token.refresh_margin(refresh_margin)),
    }
    if fetch_seconds > 0:
        update += ", fetchSeconds = :fetch"
        values[":fetch"] = number(fetch_seconds)
    if replacing is not None:
        update += ", refusedReplacedAt = :replaced"
        condition += " OR accessToken = :refused"
        values |= {":refused": string(replacing.access_token), ":replaced": number(token.expires_at - token.lifetime)}
    return update + " REMOVE failures, failedBy, failedUntil", condition + ")", values


def budget_of(item: Item, now: float) -> Budget:
    """A budget item as read, its requests cut to the last hour's."""
    stamps = [float(entry["N"]) for entry in item.get("requests", {}).get("L", [])]
    zus = None
    if "zusSeenAt" in item:
        quota = ZusQuota(int(number_of(item, "zusRemaining")), number_of(item, "zusResetAt"))
        zus = ZusCount(quota, number_of(item, "zusSeenAt"))
    return Budget(tuple(stamp for stamp in stamps if stamp > now - HOUR), int(number_of(item, "version")), zus)


def due_mark(item: Item) -> DueMark:
    return DueMark(
        kind=string_of(item, DUE_KIND),
        due_at=number_of(item, DUE_AT) if DUE_AT in item else None,
        last_requested_at=number_of(item, "lastRequestedAt"),
    )
