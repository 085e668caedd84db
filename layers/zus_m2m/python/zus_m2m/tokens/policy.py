"""How token vending behaves: margins, the budget and its reserve, the lease, back-off after failures,
patience with settling secrets, and how long a container trusts what it remembers."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

from zus_m2m.backoff import backoff
from zus_m2m.values import CachedToken, TokenState

HOUR = 3600.0


@dataclass(frozen=True)
class VendingPolicy:
    refresh_margin: float = 300.0
    budget_per_hour: int = 100
    # Of the budget, the part only recovery may spend: testSecret, provisioning's proof, the sweep's
    # health check and repair, and the first token request after Zus was unavailable. Ordinary vending
    # stops that many short, so failures alone never lock a client out.
    budget_reserve_percent: int = 10
    # Longer than one token request can take (3 s connect + 10 s read, twice), so a live holder keeps it.
    lease_seconds: float = 30.0
    # How long a caller waits for another caller's fetch before answering 503.
    wait_seconds: float = 3.0
    # A caller waiting for another's fetch reads the item every ``wait_poll`` seconds from ``early_polls``
    # polls before that holder should be done (when it took the lease, plus how long the last holder
    # took: a holder is often faster than the last) to ``close_polls`` polls after, then less and less
    # often: it gets the token within about ``wait_poll`` of its write, in a bounded number of reads
    # (``waiting``). While no holder's fetch time is known (a client's first fetch), every ``wait_poll``
    # for the lease's first ``blind_seconds``.
    wait_poll: float = 0.025
    early_polls: int = 4
    close_polls: int = 4
    blind_seconds: float = 1.0
    # After a failed upstream attempt no container asks Zus again for this client for a while: the
    # first pause, doubling (jittered) per consecutive failure up to the second, so a fleet makes one
    # attempt per interval and sees Zus back within ``max_backoff``. A long outage (more consecutive
    # failures than a quarter of the ordinary budget) is then probed at half the budget per hour, so
    # failures alone never spend it.
    first_backoff: float = 1.0
    max_backoff: float = 10.0
    # A secret version stored less than this ago may still be propagating at Zus (Auth0 documents up
    # to 30 s, during which one request may accept a secret and the next refuse it): while one is,
    # refused credentials are asked again, alternating the stored versions, within the retry window.
    settle_seconds: float = 60.0
    # No refused-credentials retry starts later than this after the vend call began (a caller that
    # waited for the lease and took it over included), and a vend call sends at most ``refused_attempts``
    # token requests: with the vending function's Zus timeouts (wiring.TOKEN_VENDING_ZUS_TIMEOUT)
    # every vend call answers well inside the function's 10 s.
    retry_window_seconds: float = 4.0
    refused_attempts: int = 16
    # A token reported as refused (``?refused=``) is replaced at most once per this many seconds per
    # client, and never while younger than ``refused_min_token_age``: each report of the token a caller
    # holds now would otherwise mint another, and a chain of reports would spend the hourly budget.
    refused_replacement_min_gap: float = 60.0
    refused_min_token_age: float = 10.0
    # How often the fleet records that a client is in use (for the scheduled pre-refresh, which drops a
    # client unused for an hour: a few minutes' precision is plenty).
    mark_interval: float = 300.0
    # How long a container trusts the record it read (consumers, app client id): past it, the next
    # caller's call reads it again before it is used.
    revalidate_seconds: float = 5.0

    def margin_for(self, token: CachedToken) -> float:
        return token.refresh_margin(self.refresh_margin)

    def ready_at(self, state: TokenState, now: float) -> float:
        """When the holder of ``state``'s live lease should have stored its token (``now`` if unknown)."""
        taken_at = state.lease_until - self.lease_seconds
        return max(now, taken_at + state.fetch_seconds) if state.fetch_seconds > 0 else now

    def waiting(self, state: TokenState, now: float) -> Iterator[float]:
        """The pauses of a caller waiting for the holder of ``state``'s lease, before each read of the
        item: ``wait_poll`` apart from ``early_polls`` polls before the holder should be done to
        ``close_polls`` after, then at most one per 0.4 s (17 reads at most within the default 3 s
        ``wait_seconds``). While no holder's fetch time is known, ``wait_poll`` apart until the lease is
        ``blind_seconds`` old (47 reads at most)."""
        if state.fetch_seconds > 0:
            ready = self.ready_at(state, now)
            first = max(now, ready - self.early_polls * self.wait_poll)
            close = ready + self.close_polls * self.wait_poll
        else:
            taken_at = state.lease_until - self.lease_seconds
            first = now
            close = max(now + self.close_polls * self.wait_poll, taken_at + self.blind_seconds)
        if first > now:
            yield first - now
        yield from itertools.repeat(self.wait_poll, round((close - first) / self.wait_poll))
        yield from backoff(2 * self.wait_poll, 0.4)

    def ignores_refused_report(self, state: TokenState, now: float) -> bool:
        """Whether a report that ``state``'s token was refused must leave it in place: it is too young,
        or the client's token was replaced on a report too recently."""
        token = state.token
        minted = token.minted_at if token is not None else None
        if minted is not None and now - minted < self.refused_min_token_age:
            return True
        return now - state.refused_replaced_at < self.refused_replacement_min_gap

    @property
    def budget_reserve(self) -> int:
        """The reserve in whole requests (rounded down: a budget of a few requests keeps none)."""
        return self.budget_per_hour * self.budget_reserve_percent // 100

    def backoff(self, failures: int) -> float:
        """The pause, before jitter, after the ``failures``-th consecutive failed attempt."""
        allowance = max(1, self.budget_per_hour - self.budget_reserve)
        if failures <= allowance // 4:
            return min(self.max_backoff, self.first_backoff * 2.0 ** (failures - 1))
        return max(self.max_backoff, HOUR / (allowance / 2))
