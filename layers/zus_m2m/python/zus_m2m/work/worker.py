"""The worker function's half of scheduled work: one client's due work per queue message (docs/design.md,
Scheduled work). A refresh renews the token of a client in use (``zus_m2m.tokens.pre_refresh``), or
takes an idle client out of the due index; a rotation check runs the client's check
(``zus_m2m.rotation.sweep``) and schedules the next.

A message is done at most once however often the queue delivers it, copies at once included: the work
runs only while the item is still due as the message says (``DueMark.holds``) and moves the item on
itself; a refresh renews under the lease (one renewal however many copies run at once), and a
rotation check first claims the item (moves its ``dueAt`` on by a millisecond, conditionally, so that no
other copy of the message holds it any more). Work that
fails for a reason of the service's (Zus or AWS unavailable, a budget spent) is acknowledged: the item
stays due and the next run hands it out again once its claim lapses. A message that names no work of
this stack (not one the dispatcher would send, or a client with no item) raises, so that the queue
redelivers it and, past its maxReceiveCount, moves it to the dead-letter queue.
"""

from __future__ import annotations

import logging
import time
from dataclasses import KW_ONLY, dataclass

from zus_m2m import errors
from zus_m2m.ports import Clock, DueIndex, MetricsSink
from zus_m2m.rotation.sweep import RotationSweep
from zus_m2m.tokens.pre_refresh import TokenPreRefresh
from zus_m2m.values import REFRESH, DueMark, WorkItem
from zus_m2m.work import items

logger = logging.getLogger(__name__)

# Claiming an item moves its dueAt on by this much: it stays due as the dispatcher claimed it (that
# claim's retry stands), and no copy of the message that named the old value holds it any more.
CLAIM_SECONDS = 0.001

# One metric per outcome (the repair's outcomes and recovery count their own: RotationRepaired,
# SecretRecoveryStarted).
OUTCOME_METRICS = {
    "refreshed": "TokensPreRefreshed",
    "fresh": "PreRefreshesNotNeeded",
    "deferred": "PreRefreshesDeferred",
    "idle": "ClientsIdle",
    "healthy": "RotationChecksHealthy",
    "rotation-started": "RotationStarted",
    "in-progress": "RotationsInProgress",
    "absent": "RotationSecretsAbsent",
    "superseded": "WorkSuperseded",
    "failed": "WorkFailed",
}


@dataclass(eq=False)
class Worker:
    index: DueIndex
    pre_refresh: TokenPreRefresh
    sweep: RotationSweep
    metrics: MetricsSink
    _: KW_ONLY
    clock: Clock = time.time

    def run_message(self, body: str) -> str:
        """Do the work a queue message names; its outcome. InvalidRequest or ResourceNotFound for a
        message that names no work of this stack (the queue's redelivery takes it to the dead letters)."""
        try:
            item = items.from_message(body)
            mark = self.index.mark(item.kind, item.client)
            if mark is None:
                raise errors.ResourceNotFound(f"client {item.client!r} has no {item.kind} work in this stack")
        except (errors.InvalidRequest, errors.ResourceNotFound) as exc:
            self.metrics.count("WorkRefused")
            logger.warning("work message refused", extra={"reason": exc.detail})
            raise
        return self.run(item, mark)

    def run(self, item: WorkItem, mark: DueMark) -> str:
        started = self.clock()
        claimed = self._claim(item) if mark.holds(item) else None
        if claimed is None:
            outcome = "superseded"  # done already, handed out again since, or claimed by a copy
        else:
            try:
                outcome = self._refresh(claimed, mark) if item.kind == REFRESH else self._check(claimed)
            except errors.ZusM2MError as exc:
                outcome = "failed"
                if item.kind != REFRESH:
                    self.metrics.count("RotationFailed")
                logger.warning(
                    "scheduled work failed; due again later",
                    extra={"kind": item.kind, "client": item.client, "reason": exc.detail},
                )
        if outcome in OUTCOME_METRICS:
            self.metrics.count(OUTCOME_METRICS[outcome])
        seconds = round(self.clock() - started, 3)
        logger.info(
            "scheduled work done",
            extra={"kind": item.kind, "client": item.client, "outcome": outcome, "seconds": seconds},
        )
        return outcome

    def _claim(self, item: WorkItem) -> WorkItem | None:
        """The item, to work on: a refresh as it is (the vendor's lease makes copies renew once, and
        a write fewer is two write units and an index write fewer per refresh); a rotation check's, claimed."""
        return item if item.kind == REFRESH else self.index.claim(item, item.due_at + CLAIM_SECONDS)

    def _refresh(self, item: WorkItem, mark: DueMark) -> str:
        if self.pre_refresh.idle(mark.last_requested_at):
            # Out of the index until its token is asked for again (unless it was, just now).
            self.index.delist(item, self.clock() - self.pre_refresh.recent)
            return "idle"
        # A renewed token moves the item on (put_token); one renewed by another caller already did
        # ("fresh"), and one that could not be renewed now (Zus's Retry-After, another holder's live lease:
        # a copy's, or a timed-out invocation's) is still due and handed out again once the claim lapses
        # ("deferred": told apart by the item, read again).
        if self.pre_refresh.refresh(item.client):
            return "refreshed"
        again = self.index.mark(item.kind, item.client)
        return "deferred" if again is not None and again.holds(item) else "fresh"

    def _check(self, item: WorkItem) -> str:
        check = self.sweep.check(item.client)
        self.index.reschedule(item, check.next_check_at)
        return check.outcome
