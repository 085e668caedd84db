"""Read the managed clients: a client's record, its rotation dates, its cached token's expiry and its
hourly budget, never anything secret; and the list of their records, a page at a time, the bootstrap
admin included."""

from __future__ import annotations

import time
from dataclasses import KW_ONLY, dataclass
from typing import Any

from zus_m2m import errors
from zus_m2m.ports import ClientRecords, Clock, PageTokens, SecretStore, TokenTable
from zus_m2m.provisioning.policy import ProvisioningPolicy
from zus_m2m.values import AWSCURRENT, ClientRecord


@dataclass(eq=False)
class ClientQueries:
    records: ClientRecords
    secrets: SecretStore
    table: TokenTable
    policy: ProvisioningPolicy
    page_tokens: PageTokens
    _: KW_ONLY
    clock: Clock = time.time

    def get(self, name: str) -> dict[str, Any]:
        """The record, its rotation dates, its token cache state and hourly budget; nothing secret."""
        return self._details(self.record(name))

    def list_page(self, limit: int, after: str | None = None) -> tuple[list[ClientRecord], str | None]:
        """Up to ``limit`` records (``get`` shows a client's details; the list reads records only),
        sorted by name within the page, and the token of the next page (None on the last). The
        bootstrap admin, which has no record, is on the first page besides them."""
        position = self.page_tokens.open(after) if after is not None else None
        records, next_position = self.records.list_page(limit, position)
        admin = self._admin_record() if after is None else None
        if admin is not None and all(record.name != admin.name for record in records):
            records.append(admin)
        next_token = self.page_tokens.seal(next_position) if next_position is not None else None
        return sorted(records, key=lambda record: record.name), next_token

    def record(self, name: str) -> ClientRecord:
        """The active record of ``name`` (the bootstrap admin's included), or ResourceNotFound."""
        if name == self.policy.admin_client_name:
            admin = self._admin_record()
            if admin is not None:
                return admin
        item = self.records.get(name)
        if item is None or item.status != "active" or item.record is None:
            raise errors.ResourceNotFound(f"no managed app client named {name!r}")
        return item.record

    def _details(self, record: ClientRecord) -> dict[str, Any]:
        description = self.secrets.describe(self.policy.naming.secret_id(record.name))
        now = self.clock()
        state = self.table.get(record.name)
        token = state.token if state.token is not None and state.token.seconds_left(now) > 0 else None
        last = next_due = None
        if description is not None:
            last = _epoch(description.last_rotated)
            next_due = self._next_rotation(description.last_rotated, description.next_rotation, description.created)
        return {
            **record.to_json(),
            "lastRotation": last,
            "nextRotation": next_due,
            "token": {"cached": token is not None, "expiresAt": int(token.expires_at) if token else None},
            "budget": {
                "usedLastHour": len(self.table.read_budget(record.name, now).stamps),
                "limit": self.policy.token_budget_per_hour,
            },
        }

    def _admin_record(self) -> ClientRecord | None:
        """The bootstrap admin, made by hand, has no record: it is described by its secret."""
        secret_id = self.policy.naming.admin_secret_name
        description = self.secrets.describe(secret_id)
        if description is None or description.deleted:
            return None
        credentials = self.secrets.read(secret_id, AWSCURRENT)
        if credentials is None:
            return None
        return ClientRecord(
            name=self.policy.admin_client_name,
            app_client_id=credentials.app_client_id,
            client_id=credentials.client_id,
            role_id=credentials.role_id,
            role_name=credentials.role_name,
            secret_arn=description.arn,
            created_at=int(description.created or 0),
        )

    def _next_rotation(self, last: float | None, scheduled: float | None, created: float | None) -> int | None:
        if scheduled is not None:
            return int(scheduled)
        since = last if last is not None else created
        return None if since is None else int(since + self.policy.rotation_interval_days * 86400)


def _epoch(value: float | None) -> int | None:
    return None if value is None else int(value)
