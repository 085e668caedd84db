"""In-memory fakes of the table's other ports: the client records (with their request guards), the rotation
failures, the due index, the work queue and page tokens."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from fakes import ADMIN

from zus_m2m import errors
from zus_m2m.admin_values import RotationFailure
from zus_m2m.values import ClientRecord, DueMark, RecordItem, WorkItem


class FakeClientRecords:
    """The record items by name, with the conditional-write semantics of DynamoClientRecords."""

    def __init__(self) -> None:
        self.items: dict[str, RecordItem] = {}
        self.rotation_requests: dict[str, float] = {}
        self.repair_requests: dict[str, tuple[float, float | None]] = {}  # last requested, in flight until
        self.lock = threading.Lock()

    def get(self, name: str) -> RecordItem | None:
        with self.lock:
            return self.items.get(name)

    def list_page(self, limit: int, after: str | None) -> tuple[list[ClientRecord], str | None]:
        """Pages in name order, each after the last name of the one before."""
        with self.lock:
            active = sorted(
                (i.record for i in self.items.values() if i.status == "active" and i.record),
                key=lambda r: r.name,
            )
        rest = [r for r in active if after is None or r.name > after]
        page = rest[:limit]
        return page, page[-1].name if len(rest) > limit else None

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
        with self.lock:
            item = self.items.get(name)
            if previous_owner is None:
                if item is not None:
                    return None
                item = RecordItem(name=name, status="creating", role_name=role_name, claimed_at=now)
            elif item is None or item.status != "creating" or item.claim_owner != previous_owner:
                return None
            if item.claim_until > now:
                return None
            item = replace(item, role_name=role_name, consumers=consumers, claim_owner=owner, claim_until=until)
            self.items[name] = item
            return item

    def _update_claim(self, name: str, owner: str, **changes: Any) -> bool:
        with self.lock:
            item = self.items.get(name)
            if item is None or item.status != "creating" or item.claim_owner != owner:
                return False
            self.items[name] = replace(item, **changes)
            return True

    def mark_create_started(self, name: str, owner: str, now: float) -> bool:
        return self._update_claim(name, owner, create_started_at=now)

    def forget_create_started(self, name: str, owner: str) -> None:
        self._update_claim(name, owner, create_started_at=None)

    def note_app_client(self, name: str, owner: str, app_client_id: str) -> bool:
        return self._update_claim(name, owner, app_client_id=app_client_id)

    def complete(self, record: ClientRecord, owner: str) -> bool:
        with self.lock:
            item = self.items.get(record.name)
            if item is None or item.status != "creating" or item.claim_owner != owner:
                return False
            self.items[record.name] = RecordItem(
                name=record.name, status="active", role_name=record.role_name, record=record
            )
            return True

    def release(self, name: str, owner: str) -> None:
        with self.lock:
            item = self.items.get(name)
            if item is None or item.status != "creating" or item.claim_owner != owner:
                return
            if item.create_started:
                self.items[name] = replace(item, claim_until=0.0)
            else:
                del self.items[name]

    def set_consumers(self, name: str, consumers: tuple[str, ...]) -> ClientRecord | None:
        with self.lock:
            item = self.items.get(name)
            if item is None or item.status != "active" or item.record is None:
                return None
            record = replace(item.record, consumers=consumers)
            self.items[name] = replace(item, record=record)
            return record

    def request_rotation(self, name: str, now: float, min_gap: float) -> float | None:
        with self.lock:
            if name != ADMIN and name not in self.items:
                return None
            last = self.rotation_requests.get(name)
            if last is not None and last > now - min_gap:
                return last + min_gap - now
            self.rotation_requests[name] = now
            return 0.0

    def request_repair(self, name: str, now: float, min_gap: float, lease: float) -> float | None:
        with self.lock:
            if name != ADMIN and name not in self.items:
                return None
            last, until = self.repair_requests.get(name, (None, None))
            waits = [w for w in ((last + min_gap - now) if last is not None else 0, (until or now) - now) if w > 0]
            if waits:
                return max(waits)
            self.repair_requests[name] = (now, now + lease)
            return 0.0

    def finish_repair(self, name: str, at: float) -> None:
        with self.lock:
            if self.repair_requests.get(name, (None, None))[0] == at:
                self.repair_requests[name] = (at, None)

    def forget_rotation_request(self, name: str, at: float) -> None:
        with self.lock:
            if self.rotation_requests.get(name) == at:
                del self.rotation_requests[name]

    def mark_deleting(self, name: str) -> bool:
        with self.lock:
            item = self.items.get(name)
            if item is None or item.status not in ("active", "deleting"):
                return False
            self.items[name] = replace(item, status="deleting")
            return True

    def delete(self, name: str) -> None:
        with self.lock:
            item = self.items.get(name)
            if item is not None and item.status == "deleting":
                del self.items[name]
                self.rotation_requests.pop(name, None)


class FakeRotationFailures:
    """The recorded rotation failures, one per client, with DynamoRotationFailures' conditions."""

    def __init__(self) -> None:
        self.failures: dict[str, RotationFailure] = {}

    def record(self, failure: RotationFailure) -> None:
        self.failures[failure.client] = failure

    def list(self) -> list[RotationFailure]:
        return list(self.failures.values())

    def mark_seen(self, failure: RotationFailure, now: float) -> bool:
        current = self.failures.get(failure.client)
        if current is None or (current.version, current.failed_at) != (failure.version, failure.failed_at):
            return False
        self.failures[failure.client] = replace(current, seen_at=now)
        return True

    def clear(self, client: str, version: str) -> None:
        current = self.failures.get(client)
        if current is not None and current.version == version:
            del self.failures[client]


# --- scheduled work -----------------------------------------------------------------------------


class FakeDueIndex:
    """Due marks by (kind, client), with DynamoDueIndex's conditions; ``read`` counts the items ``due``
    read, ``unlisted`` the records ``backfill`` would find (a page at a time)."""

    def __init__(self) -> None:
        self.marks: dict[tuple[str, str], DueMark] = {}
        self.read = 0
        self.unlisted: list[str] = []

    def put(self, kind: str, client: str, due_at: float | None, last_requested_at: float = 0.0) -> WorkItem:
        self.marks[(kind, client)] = DueMark(kind if due_at is not None else None, due_at, last_requested_at)
        return WorkItem(kind, client, due_at or 0.0)

    def due(self, kind: str, until: float, limit: int) -> list[WorkItem]:
        found = sorted(
            (mark.due_at, client)
            for (of, client), mark in self.marks.items()
            if of == kind and mark.kind == kind and mark.due_at is not None and mark.due_at <= until
        )[:limit]
        self.read += len(found)
        return [WorkItem(kind, client, due_at) for due_at, client in found]

    def claim(self, item: WorkItem, until: float) -> WorkItem | None:
        claimed = WorkItem(item.kind, item.client, round(until, 3))
        return claimed if self.reschedule(item, claimed.due_at) else None

    def mark(self, kind: str, client: str) -> DueMark | None:
        return self.marks.get((kind, client))

    def token_stored(self, client: str, due_at: float) -> None:
        """FakeTokenTable.put_token: the item's next refresh moves with the token."""
        mark = self.marks.get(("refresh", client), DueMark(None, None))
        self.marks[("refresh", client)] = replace(mark, due_at=due_at)

    def token_used(self, client: str, now: float) -> None:
        """FakeTokenTable.mark_requested: a client in use is in the index."""
        mark = self.marks.get(("refresh", client), DueMark(None, None))
        self.marks[("refresh", client)] = replace(mark, kind="refresh", last_requested_at=now)

    def reschedule(self, item: WorkItem, at: float) -> bool:
        mark = self.marks.get((item.kind, item.client))
        if mark is None or not mark.holds(item):
            return False
        self.marks[(item.kind, item.client)] = replace(mark, due_at=at)
        return True

    def delist(self, item: WorkItem, idle_before: float) -> bool:
        mark = self.marks.get((item.kind, item.client))
        if mark is None or not mark.holds(item) or mark.last_requested_at >= idle_before:
            return False
        self.marks[(item.kind, item.client)] = replace(mark, kind=None)
        return True

    def enlist(self, kind: str, client: str, at: float) -> bool:
        mark = self.marks.get((kind, client))
        if mark is not None and mark.kind is not None:
            return False
        self.marks[(kind, client)] = DueMark(kind, at, mark.last_requested_at if mark else 0.0)
        return True

    def backfill(self, at: float, page_size: int) -> int:
        page, self.unlisted = self.unlisted[:page_size], self.unlisted[page_size:]
        return sum(self.enlist("rotation", client, at) for client in page)


class FakeWorkQueue:
    """The work queue: every item sent, in order; ``refuse`` names clients whose messages are not taken."""

    def __init__(self) -> None:
        self.sent: list[WorkItem] = []
        self.refuse: set[str] = set()

    def send(self, items: Sequence[WorkItem]) -> list[WorkItem]:
        unsent = [item for item in items if item.client in self.refuse]
        self.sent.extend(item for item in items if item.client not in self.refuse)
        return unsent


class FakePageTokens:
    """Page tokens sealed by a prefix: ``sealed:<position>``; anything else was not issued here."""

    def seal(self, position: str) -> str:
        return f"sealed:{position}"

    def open(self, token: str) -> str:
        if not token.startswith("sealed:"):
            raise errors.InvalidRequest("nextToken was not issued by this service")
        return token.removeprefix("sealed:")
