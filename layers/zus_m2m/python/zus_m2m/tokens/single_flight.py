"""The single flight: one caller across every container asks Zus for a client's token at a time.

The caller that takes the token item's lease (a conditional write) fetches (``tokens.upstream``) and
stores the token; everyone else waits a bounded time for the item it writes, reading it every 25 ms
around when the holder should be done (the lease's start plus the last holder's fetch time, kept in the
item; from the lease's start while no fetch time is known), then less and less often
(``VendingPolicy.waiting``): a waiter gets the token within about 25 ms of its write, in a bounded
number of reads. Nobody asks Zus while the item says to pause: Zus's 429 (``blockedUntil``) or the
back-off after failed attempts (``failedUntil``).

A token Zus refused (a caller names it by fingerprint) is replaced the same way: whoever takes the lease
reads the item consistently; if it still holds the refused token, it mints one new token and stores it
with a write that replaces the refused token whatever its expiry; if another caller replaced it
already, that token is served. Every other caller waits for the new token: one mint for the fleet.
A report is ignored (the reported token is served, ``RefusedReportIgnored``) while that token is younger
than ``refused_min_token_age`` or the client's token was replaced on a report less than
``refused_replacement_min_gap`` ago: a chain of reports mints one token, not one per report.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterator

from zus_m2m import errors
from zus_m2m.ports import Runtime, TokenTable
from zus_m2m.tokens.best_effort import quietly
from zus_m2m.tokens.memory import MemoryTier, bound
from zus_m2m.tokens.policy import VendingPolicy
from zus_m2m.tokens.upstream import UpstreamTokens
from zus_m2m.values import CachedToken, TokenState

logger = logging.getLogger(__name__)


class SingleFlight:
    """The lease over a client's token tiers: this container's ``memory``, the shared ``table`` and
    Zus (``upstream``); the vendor serves from the same tiers."""

    def __init__(
        self, table: TokenTable, upstream: UpstreamTokens, memory: MemoryTier, policy: VendingPolicy, runtime: Runtime
    ) -> None:
        self.table = table
        self.upstream = upstream
        self.memory = memory
        self.policy = policy
        self._metrics = runtime.metrics
        self._clock = runtime.clock
        self._sleep = runtime.sleep
        # This container's name; a lease holder is named by it and the calling thread (``_owner``).
        self._name = f"{uuid.uuid4()}"
        # Per client, until when another container is (as last read) renewing its token or Zus asked for
        # a pause: refresh-ahead reads the item again only after that.
        self._renewing_until: dict[str, float] = {}

    @property
    def _owner(self) -> str:
        """This caller's name as a lease holder. A thread makes one call at a time (Lambda's one thread
        per environment, or a test's), so a live lease in its own name was left by an earlier call of
        its (a store and release that failed, a lease write whose answer was lost and which the SDK
        retried): free for it to take again, never a second call's in flight."""
        return f"{self._name}/{threading.get_ident()}"

    def fetch_or_wait(
        self,
        client: str,
        min_ttl: float,
        state: TokenState,
        started: float,
        binding: str | None,
        refused: str | None = None,
    ) -> CachedToken:
        """A token with ``min_ttl`` left, of ``binding`` (None: any, for the bootstrap admin) and not the
        one ``refused`` names: from the item ``state`` or as it changes while this caller waits, or
        fetched by this caller as the lease's holder."""
        deadline = started + self.policy.wait_seconds
        refused = self._still_refused(client, state, refused)
        pauses: Iterator[float] | None = None
        due = 0.0
        while True:
            now = self._clock()
            token = _current(state.token, binding, refused)
            if token is not None and token.seconds_left(now) >= min_ttl:
                self.memory.remember(client, token)
                return token.served_from("lease-wait")
            if state.paused_until(now):
                raise paused(client, state, now, min_ttl)
            if not state.lease_held(now, by_other_than=self._owner):
                # Not taken: the answer is the item with the other holder's lease, no read needed.
                attempt = self.table.acquire_lease(client, self._owner, now, now + self.policy.lease_seconds)
                state = attempt.state
                if attempt.taken:
                    return self._fetch_as_holder(client, min_ttl, state, started, binding, refused)
            if pauses is None:
                pauses, due = self.policy.waiting(state, now), now
            # Each pause runs from when the previous read was due: reads keep to the policy's schedule
            # however long each one takes.
            due += next(pauses)
            if due > deadline:
                raise errors.TemporarilyUnavailable(
                    f"another caller is fetching a token for {client!r}; retry shortly", retry_after=1.0
                )
            self._metrics.count("LeaseWait")
            self._sleep(max(0.0, due - now))
            state = self.table.get(client, consistent=True)

    def _fetch_as_holder(
        self, client: str, min_ttl: float, held: TokenState, started: float, binding: str | None, refused: str | None
    ) -> CachedToken:
        """With the lease, and the item as the lease write left it (read consistently): another holder
        may have just stored a token (one that replaced the refused one, too) or a failure, in which case
        nobody asks Zus now. A token minted here replaces the refused one if the item still holds it."""
        now = self._clock()
        refused = self._still_refused(client, held, refused)
        token = _current(held.token, binding, refused)
        if token is not None and token.seconds_left(now) >= min_ttl:
            quietly(lambda: self.table.release_lease(client, self._owner))
            self.memory.remember(client, token)
            return token.served_from("lease-wait")
        if held.paused_until(now):
            quietly(lambda: self.table.release_lease(client, self._owner))
            raise paused(client, held, now, min_ttl)
        stored = held.token
        replacing = stored if stored is not None and stored.fingerprint == refused else None
        return self._fetch_under_lease(client, held, now, binding, started, replacing)

    def _still_refused(self, client: str, state: TokenState, refused: str | None) -> str | None:
        """``refused``, unless the report names ``state``'s token and the policy says to keep it (then
        None: that token is served as any other)."""
        token = state.token
        if refused is None or token is None or token.fingerprint != refused:
            return refused
        if not self.policy.ignores_refused_report(state, self._clock()):
            return refused
        self._metrics.count("RefusedReportIgnored")
        logger.info("a report of a refused token was ignored: replaced too recently", extra={"client": client})
        return None

    def refresh(self, client: str, horizon: float = 0.0) -> bool:
        """Renew the client's token if it enters the refresh margin within ``horizon`` seconds and
        nobody else is renewing it (nor backing off). Used by refresh-ahead (horizon 0) and by the
        scheduled pre-refresh. True when this call fetched a token.
        """
        now = self._clock()
        if horizon == 0 and now < self._renewing_until.get(client, 0.0):
            return False
        state = self.table.get(client, consistent=True)
        if self._fresh_enough(client, state, now, horizon):
            return False
        if state.paused_until(now) or state.lease_held(now, by_other_than=self._owner):
            self._renewing_until[client] = state.paused_until(now) or self.policy.ready_at(state, now)
            return False
        attempt = self.table.acquire_lease(client, self._owner, now, now + self.policy.lease_seconds)
        held = attempt.state
        if not attempt.taken:
            self._renewing_until[client] = self.policy.ready_at(held, now)
            return False
        if self._fresh_enough(client, held, now, horizon) or held.paused_until(now):
            quietly(lambda: self.table.release_lease(client, self._owner))
            return False
        self._fetch_under_lease(client, held, now, binding=None)
        return True

    def _fresh_enough(self, client: str, state: TokenState, now: float, horizon: float) -> bool:
        if state.token is not None and state.token.seconds_left(now) >= self.policy.margin_for(state.token) + horizon:
            self.memory.remember(client, state.token)  # another container already renewed it
            return True
        return False

    # --- talking to Zus ------------------------------------------------------------------------

    def _fetch_under_lease(
        self,
        client: str,
        state: TokenState,
        leased_at: float,
        binding: str | None,
        started: float | None = None,
        replacing: CachedToken | None = None,
    ) -> CachedToken:
        """Fetch as the lease's holder (taken at ``leased_at``) and store the token with how long it took
        (the next waiters' estimate); the fetch time is a metric too (``TokenFetchTime``)."""
        try:
            token = self.upstream.fetch(client, state, binding, started)
            self.memory.remember(client, token)
            # A store that fails gives the lease back too (below): nobody waits out a lease for nothing.
            self.table.put_token(
                client, token, self._owner, replacing=replacing, fetch_seconds=self._clock() - leased_at
            )
        except errors.ZusError as exc:
            failed = self.upstream.failed(client, state, exc)
            # One write, by the lease's holder: the failure memory, and the lease given back.
            quietly(lambda: self.table.record_failure(client, self._owner, failed.failures, failed.cause, failed.until))
            raise failed.error from exc
        except BaseException:
            quietly(lambda: self.table.release_lease(client, self._owner))
            raise
        self._metrics.duration("TokenFetchTime", self._clock() - leased_at)
        if replacing is not None:
            self._metrics.count("RefusedTokenReplaced")
            logger.info("a token Zus refused was replaced", extra={"client": client})
        return token


def _current(token: CachedToken | None, binding: str | None, refused: str | None) -> CachedToken | None:
    """``token`` if it is of ``binding`` (None: any) and not the one ``refused`` names."""
    token = bound(token, binding)
    return None if token is None or token.fingerprint == refused else token


def paused(client: str, state: TokenState, now: float, min_ttl: float) -> errors.TemporarilyUnavailable:
    """The answer while nobody may ask Zus: after a 429 (``blockedUntil``) or failed attempts."""
    wait = state.paused_until(now) - now
    if state.blocked_until > now:
        why = "Zus asked us to pause token requests"
    else:
        why = f"Zus failed {state.failures} token request(s) in a row ({state.failed_by}); backing off"
    return errors.TemporarilyUnavailable(
        f"{why} for {client!r}; no cached token has {min_ttl:.0f} s left", retry_after=wait
    )
