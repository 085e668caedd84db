"""The rolling-hour budget of token requests: the rule that decides whether one more request may be
sent to Zus, and its spending with optimistic concurrency on the budget item's version, so that it is
atomic across containers (docs/design.md, DynamoDB)."""

from __future__ import annotations

from zus_m2m import errors
from zus_m2m.ports import TokenTable
from zus_m2m.values import Budget, BudgetVerdict

HOUR = 3600.0
_ATTEMPTS = 10


def refusal(budget: Budget, now: float, limit: int, reserve: int) -> BudgetVerdict | None:
    """Why one more request may not be sent now (a refused verdict), or None when it may: ``reserve`` of
    the ``limit`` is kept for recovery (0: spend it)."""
    stamps = budget.stamps
    allowance = max(0, limit - reserve)
    if len(stamps) >= allowance:
        # The next slot opens when enough of the oldest requests leave the hour.
        leaving = sorted(stamps)[len(stamps) - allowance] if allowance else now
        return BudgetVerdict(False, len(stamps), retry_after=max(1.0, leaving + HOUR - now))
    zus = budget.zus
    if zus is not None and zus.quota.reset_at > now:
        left = zus.quota.remaining - sum(1 for stamp in stamps if stamp > zus.seen_at)
        if left <= reserve:
            return BudgetVerdict(False, len(stamps), retry_after=max(1.0, zus.quota.reset_at - now), by_zus=True)
    return None


def spend(table: TokenTable, client: str, now: float, limit: int, *, reserve: int = 0) -> BudgetVerdict:
    """Count one token request in the rolling hour, unless ``limit - reserve`` are spent or Zus's last
    report of its own count leaves ``reserve`` or fewer: read, decide, write back if the item is unchanged."""
    for _ in range(_ATTEMPTS):
        budget = table.read_budget(client, now)
        refused = refusal(budget, now, limit, reserve)
        if refused is not None:
            return refused
        if table.count_request(client, budget, now):
            return BudgetVerdict(True, len(budget.stamps) + 1)
    raise errors.StoreUnavailable("spending the token budget failed: too much contention")


def used(table: TokenTable, client: str, now: float) -> int:
    """The requests sent for ``client`` in the last hour."""
    return len(table.read_budget(client, now).stamps)
