"""The scheduled pre-refresh (every minute): renew the tokens of clients in use before they enter the
refresh margin, so that their callers keep being served from the cache."""

from __future__ import annotations

import logging
import time
from dataclasses import KW_ONLY, dataclass

from zus_m2m import errors
from zus_m2m.ports import Clock, TokenTable
from zus_m2m.tokens.vendor import TokenVendor

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class TokenPreRefresh:
    table: TokenTable
    vendor: TokenVendor
    _: KW_ONLY
    clock: Clock = time.time

    def run(self, horizon: float, recent: float = 3600.0) -> dict[str, int]:
        """Renew the tokens of clients used within ``recent`` seconds that enter the margin before the
        next run, ``horizon`` seconds from now; a report of how many were considered, refreshed, failed."""
        report = {"considered": 0, "refreshed": 0, "failed": 0}
        for client in self.table.requested_since(self.clock() - recent):
            report["considered"] += 1
            try:
                report["refreshed"] += self.vendor.refresh(client, horizon)
            except errors.ZusM2MError as exc:
                report["failed"] += 1
                logger.warning("pre-refresh failed", extra={"client": client, "reason": exc.detail})
        return report
