"""Drift between this stack and Zus: the app clients at Zus that this stack does not manage (a Builder
Admin token can make one behind its back: docs/security.md), and the managed clients missing at Zus (one
deleted there). Read-only: it lists, it never changes anything."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from zus_m2m import errors
from zus_m2m.admin_values import AppClient
from zus_m2m.provisioning.admin import BootstrapAdmin
from zus_m2m.provisioning.queries import ClientQueries
from zus_m2m.values import ClientRecord

# Records read a page at a time (the list route's largest page).
_PAGE = 100


@dataclass(frozen=True)
class DriftReport:
    unmanaged_at_zus: tuple[AppClient, ...]
    missing_at_zus: tuple[ClientRecord, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "unmanagedAtZus": [
                {"appClientId": c.id, "clientId": c.client_id, "name": c.name, "roleId": c.role_id}
                for c in self.unmanaged_at_zus
            ],
            "missingAtZus": [
                {"name": r.name, "appClientId": r.app_client_id, "clientId": r.client_id} for r in self.missing_at_zus
            ],
        }


@dataclass(eq=False)
class Drift:
    queries: ClientQueries
    admin: BootstrapAdmin

    def report(self) -> DriftReport:
        """Every managed client (the bootstrap admin's included) against every app client Zus lists."""
        managed: list[ClientRecord] = []
        after: str | None = None
        while True:
            page, after = self.queries.list_page(_PAGE, after)
            managed += page
            if after is None:
                break
        try:
            at_zus = self.admin.zus.list_app_clients(self.admin.bearer())
        except errors.ZusM2MError as exc:
            raise self.admin.translated(exc) from exc
        ours = {record.app_client_id for record in managed}
        theirs = {client.id for client in at_zus}
        return DriftReport(
            unmanaged_at_zus=tuple(sorted((c for c in at_zus if c.id not in ours), key=lambda c: (c.name, c.id))),
            missing_at_zus=tuple(sorted((r for r in managed if r.app_client_id not in theirs), key=lambda r: r.name)),
        )
