"""The pre-refresh of one client's token: renew the token of a client in use before it enters the refresh
margin, so that its callers keep being served from the cache. The pre-refresh job finds the clients whose
tokens are due (``zus_m2m.work.dispatch``); the worker runs this for each of them (``zus_m2m.work.worker``)."""

from __future__ import annotations

import time
from dataclasses import KW_ONLY, dataclass

from zus_m2m.ports import Clock
from zus_m2m.tokens.single_flight import SingleFlight

# The pre-refresh job runs every minute (template.yaml); it hands out what enters the refresh margin
# before the next run, with half a minute to spare for a late or slow run (and the queue's delay).
HORIZON_SECONDS = 90.0
# A client whose token was asked for within this long is in use; an idle one is no longer pre-refreshed.
RECENT_SECONDS = 3600.0


@dataclass(eq=False)
class TokenPreRefresh:
    flight: SingleFlight
    _: KW_ONLY
    horizon: float = HORIZON_SECONDS
    recent: float = RECENT_SECONDS
    clock: Clock = time.time

    def idle(self, last_requested_at: float) -> bool:
        """Nobody asked for the client's token within ``recent`` seconds."""
        return last_requested_at < self.clock() - self.recent

    def refresh(self, client: str) -> bool:
        """Renew the client's token if it enters the margin within ``horizon`` seconds and nobody else is
        renewing it (under the fetch lease). True when this call fetched one."""
        return self.flight.refresh(client, self.horizon)
