"""The scheduled jobs' half of scheduled work: find the items that are due (a query of the due index that
reads those items and no others), claim each one, and hand it to the work queue, one message per client
(docs/design.md, Scheduled work).

Claiming moves an item's ``dueAt`` to when it should be retried (``retry_after``): a run that overlaps
this one, or the next run, does not hand it out again, and work that fails (a worker that could not
reach Zus, a message that never arrived) is due again then; work that succeeds sets the item's next
``dueAt`` itself. A run hands out at most ``max_items``, the longest due first: the rest waits for the
next run, so no run grows with the number of clients.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import KW_ONLY, dataclass, field

from zus_m2m.ports import Clock, DueIndex, MetricsSink, WorkQueue
from zus_m2m.tokens.pre_refresh import HORIZON_SECONDS
from zus_m2m.values import REFRESH, ROTATION

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DispatchPolicy:
    # What falls due within this many seconds is handed out now.
    lookahead: float
    # A claimed item whose work is not done by then is due again.
    retry_after: float
    # The most one run hands out.
    max_items: int


DISPATCH_POLICIES: Mapping[str, DispatchPolicy] = {
    # Every minute; a failed refresh is tried again two minutes on, well inside the 5-minute margin.
    REFRESH: DispatchPolicy(lookahead=HORIZON_SECONDS, retry_after=120.0, max_items=5000),
    # Every five minutes; a failed check is tried again a quarter of an hour on.
    ROTATION: DispatchPolicy(lookahead=0.0, retry_after=900.0, max_items=2000),
}
# Records written before the due index existed are enlisted a page of the table per rotation sweep.
BACKFILL_PAGE = 1000
# Each metric counts the items a run handed out of that kind.
DISPATCHED_METRICS = {REFRESH: "RefreshesDispatched", ROTATION: "RotationChecksDispatched"}


@dataclass(eq=False)
class DueWorkDispatch:
    index: DueIndex
    queue: WorkQueue
    metrics: MetricsSink
    # The bootstrap admin client: it has no record (its record item holds only the guards of requests on
    # demand, made on the first one), so the rotation sweep's dispatch enlists it itself.
    admin_client: str
    _: KW_ONLY
    policies: Mapping[str, DispatchPolicy] = field(default_factory=lambda: dict(DISPATCH_POLICIES))
    clock: Clock = time.time

    def run(self, kind: str) -> dict[str, int]:
        """Hand out what is due of ``kind``. A report (the handler logs it): items found due, dispatched,
        claimed meanwhile by another run or done (``superseded``), claimed but not sent (due again after
        ``retry_after``), whether the run stopped at ``max_items`` (``capped``), and for rotation checks
        the records enlisted."""
        policy = self.policies[kind]
        now = self.clock()
        report = {"due": 0, "dispatched": 0, "superseded": 0, "unsent": 0, "capped": 0}
        if kind == ROTATION:
            enlisted = int(self.index.enlist(ROTATION, self.admin_client, now))
            report["enlisted"] = enlisted + self.index.backfill(now, BACKFILL_PAGE)
        found = self.index.due(kind, now + policy.lookahead, policy.max_items)
        # Claimed until a moment that a later run's lookahead reaches only ``retry_after`` from now.
        until = now + policy.lookahead + policy.retry_after
        claimed = [item for item in (self.index.claim(due, until) for due in found) if item]
        unsent = self.queue.send(claimed) if claimed else []
        report.update(
            due=len(found),
            dispatched=len(claimed) - len(unsent),
            superseded=len(found) - len(claimed),
            unsent=len(unsent),
            capped=int(len(found) >= policy.max_items),
        )
        self.metrics.count(DISPATCHED_METRICS[kind], report["dispatched"])
        if unsent:
            logger.warning("due work not sent; due again later", extra={"kind": kind, "unsent": len(unsent)})
        return report
