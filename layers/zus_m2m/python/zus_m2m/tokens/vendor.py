"""The token vendor: serves a token with enough life left from the cheapest tier that has one.

Tiers: this container's memory, then the client's DynamoDB item, then Zus. Only the caller holding
the DynamoDB lease talks to Zus; everyone else waits a bounded time for the item it writes. Every
request to Zus first spends one unit of the client's rolling-hour budget, so the service never sends
Zus more than ``budget_per_hour`` token requests per client, however many containers run; part of it
is kept for recovery.

A failed attempt is remembered in the token item (``failures``, ``failedUntil``): every container
backs off together, so a vend call sends one request, and a fleet one per back-off interval, however
long Zus is down. Refused credentials are asked again only with another stored version of the secret,
or while a version is young enough to be still propagating at Zus.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from zus_m2m import errors
from zus_m2m.backoff import backoff
from zus_m2m.ports import Clock, MetricsSink, SecretReader, Sleep, TokenEndpoint, TokenTable
from zus_m2m.values import (
    AWSCURRENT,
    AWSPENDING,
    AWSPREVIOUS,
    CachedToken,
    ClientCredentials,
    FailureCause,
    SecretNaming,
    TokenState,
)
from zus_m2m.zus.models import ZusQuota

logger = logging.getLogger(__name__)

# The versions a rotation can leave behind, in the order most likely to work mid-rotation.
FALLBACK_STAGES = (AWSPENDING, AWSCURRENT, AWSPREVIOUS)
HOUR = 3600.0

Runner = Callable[[Callable[[], None]], None]


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
    # How often a container records that a client is in use (for the scheduled pre-refresh).
    mark_interval: float = 60.0

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


def background_runner(workers: int = 2) -> Runner:
    """Runs refresh-ahead and bookkeeping off the caller's path, in this container's threads."""
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="token-vendor")

    def run(job: Callable[[], None]) -> None:
        pool.submit(job)

    return run


def quietly(job: Callable[[], object]) -> None:
    """Run work nobody waits for: a failure is logged, never raised."""
    try:
        job()
    except errors.ZusM2MError as exc:
        logger.warning("background token work failed", extra={"reason": exc.detail})
    except Exception:
        logger.exception("background token work failed unexpectedly")


class BackgroundWork:
    """Jobs off the caller's path, quietly; a keyed job (a client's refresh) runs once at a time."""

    def __init__(self, run: Runner) -> None:
        self._run = run
        self._running: set[str] = set()
        self._lock = threading.Lock()

    def submit(self, job: Callable[[], object]) -> None:
        self._run(lambda: quietly(job))

    def submit_once(self, key: str, job: Callable[[], object]) -> None:
        with self._lock:
            if key in self._running:
                return
            self._running.add(key)

        def run() -> None:
            try:
                quietly(job)
            finally:
                with self._lock:
                    self._running.discard(key)

        self._run(run)


class TokenVendor:
    """Vends tokens (``vend``), renews them ahead of expiry (``refresh``), and obtains one with given
    credentials for provisioning and rotation (``issue_with``: ``TokenIssuer``)."""

    def __init__(
        self,
        table: TokenTable,
        secrets: SecretReader,
        endpoint: TokenEndpoint,
        naming: SecretNaming,
        metrics: MetricsSink,
        policy: VendingPolicy | None = None,
        *,
        clock: Clock = time.time,
        sleep: Sleep = time.sleep,
        run_in_background: Runner | None = None,
    ) -> None:
        self._table = table
        self._secrets = secrets
        self._endpoint = endpoint
        self._naming = naming
        self._metrics = metrics
        self.policy = policy or VendingPolicy()
        self._clock = clock
        self._sleep = sleep
        self._background = BackgroundWork(run_in_background or background_runner())
        self._owner = f"{uuid.uuid4()}"
        self._memory: dict[str, CachedToken] = {}
        self._marked_at: dict[str, float] = {}

    # --- the vending path ---------------------------------------------------------------------

    def vend(self, client: str, min_ttl: float, *, best_effort: bool = False) -> CachedToken:
        """A token with at least ``min_ttl`` seconds left, or a ZusM2MError saying why not. A ``min_ttl``
        longer than Zus's tokens live (learned from the last one) is 422 without asking Zus, unless
        ``best_effort``: then a token with half a lifetime left will do."""
        now = self._clock()
        token = self._memory.get(client)
        if token is not None:
            min_ttl = self._satisfiable(token, min_ttl, now, best_effort)
            if token.seconds_left(now) >= min_ttl:
                self._metrics.count("TokenMemoryHit")
                self._after_hit(client, token, now)
                return replace(token, source="memory")
        state = self._table.get(client)
        if state.token is not None:
            min_ttl = self._satisfiable(state.token, min_ttl, now, best_effort)
            if state.token.seconds_left(now) >= min_ttl:
                self._metrics.count("TokenTableHit")
                self._memory[client] = state.token
                self._after_hit(client, state.token, now)
                return replace(state.token, source="table")
        self._metrics.count("TokenMiss")
        # Unknown names stop here, before any write: the (cached) secret read says whether it exists.
        if self._secrets.read(self._naming.secret_id(client), AWSCURRENT) is None:
            raise errors.ResourceNotFound(f"no managed app client named {client!r}")
        token = self._fetch_or_wait(client, min_ttl, state, started=now)
        self._mark_in_background(client, self._clock())
        if token.seconds_left(self._clock()) < min_ttl and not best_effort:
            raise self._unsatisfiable(token.lifetime, min_ttl)
        return token

    def _satisfiable(self, token: CachedToken, min_ttl: float, now: float, best_effort: bool) -> float:
        """``min_ttl``, if a token of the learned lifetime can have it left (or best effort's half a
        lifetime); a live token's lifetime is what Zus issues now (an expired one's may be outdated)."""
        if token.outlives(min_ttl) or token.seconds_left(now) <= 0:
            return min_ttl
        if best_effort:
            return token.lifetime / 2
        self._metrics.count("MinTtlUnsatisfiable")
        raise self._unsatisfiable(token.lifetime, min_ttl)

    @staticmethod
    def _unsatisfiable(lifetime: float, min_ttl: float) -> errors.UnprocessableRequest:
        return errors.UnprocessableRequest(f"tokens from Zus live {lifetime:.0f} s; minTtl {min_ttl:.0f} cannot be met")

    def _fetch_or_wait(self, client: str, min_ttl: float, state: TokenState, started: float) -> CachedToken:
        deadline = started + self.policy.wait_seconds
        for pause in backoff(0.025, 0.2):
            now = self._clock()
            if state.token is not None and state.token.seconds_left(now) >= min_ttl:
                self._memory[client] = state.token
                return replace(state.token, source="lease-wait")
            if state.paused_until(now):
                raise self._paused(client, state, now, min_ttl)
            if not state.lease_held(now):
                held = self._table.acquire_lease(client, self._owner, now, now + self.policy.lease_seconds)
                if held is not None:
                    return self._fetch_as_holder(client, min_ttl, held, started)
            if now + pause > deadline:
                raise errors.TemporarilyUnavailable(
                    f"another caller is fetching a token for {client!r}; retry shortly", retry_after=1.0
                )
            self._metrics.count("LeaseWait")
            self._sleep(pause)
            state = self._table.get(client, consistent=True)
        raise AssertionError("unreachable: backoff never ends")

    def _fetch_as_holder(self, client: str, min_ttl: float, held: TokenState, started: float) -> CachedToken:
        """With the lease, and the item as the lease write left it: another holder may have just stored a
        token or a failure, in which case nobody asks Zus now."""
        now = self._clock()
        if held.token is not None and held.token.seconds_left(now) >= min_ttl:
            quietly(lambda: self._table.release_lease(client, self._owner))
            self._memory[client] = held.token
            return replace(held.token, source="lease-wait")
        if held.paused_until(now):
            quietly(lambda: self._table.release_lease(client, self._owner))
            raise self._paused(client, held, now, min_ttl)
        return self._fetch_under_lease(client, held, started)

    def _paused(self, client: str, state: TokenState, now: float, min_ttl: float) -> errors.TemporarilyUnavailable:
        wait = state.paused_until(now) - now
        if state.blocked_until > now:
            why = "Zus asked us to pause token requests"
        else:
            why = f"Zus failed {state.failures} token request(s) in a row ({state.failed_by}); backing off"
        return errors.TemporarilyUnavailable(
            f"{why} for {client!r}; no cached token has {min_ttl:.0f} s left", retry_after=wait
        )

    def _after_hit(self, client: str, token: CachedToken, now: float) -> None:
        """Refresh ahead of expiry off the caller's path; record use for the scheduled pre-refresh."""
        if token.seconds_left(now) < self.policy.refresh_margin:
            self._background.submit_once(client, lambda: self.refresh(client))
        self._mark_in_background(client, now)

    def _mark_in_background(self, client: str, now: float) -> None:
        if now - self._marked_at.get(client, 0.0) >= self.policy.mark_interval:
            self._marked_at[client] = now
            self._background.submit(lambda: self._table.mark_requested(client, now))

    # --- refreshing ----------------------------------------------------------------------------

    def refresh(self, client: str, horizon: float = 0.0) -> bool:
        """Renew the client's token if it enters the refresh margin within ``horizon`` seconds and
        nobody else is renewing it (nor backing off). Used by refresh-ahead (horizon 0) and by the
        scheduled pre-refresh. True when this call fetched a token.
        """
        now = self._clock()
        state = self._table.get(client, consistent=True)
        if self._fresh_enough(client, state, now, horizon):
            return False
        if state.paused_until(now) or state.lease_held(now):
            return False
        held = self._table.acquire_lease(client, self._owner, now, now + self.policy.lease_seconds)
        if held is None:
            return False
        if self._fresh_enough(client, held, now, horizon) or held.paused_until(now):
            quietly(lambda: self._table.release_lease(client, self._owner))
            return False
        self._fetch_under_lease(client, held)
        return True

    def _fresh_enough(self, client: str, state: TokenState, now: float, horizon: float) -> bool:
        if state.token is not None and state.token.seconds_left(now) >= self.policy.refresh_margin + horizon:
            self._memory[client] = state.token  # another container already renewed it
            return True
        return False

    # --- talking to Zus ------------------------------------------------------------------------

    def _fetch_under_lease(self, client: str, state: TokenState, started: float | None = None) -> CachedToken:
        try:
            token = self._fetch(client, state, started)
        except errors.ZusError as exc:
            raise self._failed(client, state, exc) from exc
        except BaseException:
            quietly(lambda: self._table.release_lease(client, self._owner))
            raise
        self._memory[client] = token
        self._table.put_token(client, token, self._owner)
        return token

    def _failed(self, client: str, state: TokenState, error: errors.ZusError) -> errors.TemporarilyUnavailable:
        """Remember a failed attempt in the token item, so that every container backs off together."""
        cause = _cause(error)
        failures = state.failures + 1
        now = self._clock()
        wait = self.policy.backoff(failures) * random.uniform(0.8, 1.0)  # jitter: clients do not retry in step
        quietly(lambda: self._table.record_failure(client, self._owner, failures, cause, now + wait))
        self._metrics.count("UpstreamBackoff")
        logger.warning(
            "token request failed; backing off",
            extra={"client": client, "cause": cause, "failures": failures, "seconds": round(wait, 1)},
        )
        return errors.TemporarilyUnavailable(
            f"{error.detail}; no token request for {client!r} for {wait:.0f} s", retry_after=wait
        )

    def issue_with(self, client: str, credentials: ClientCredentials) -> CachedToken:
        """Obtain a token with given credentials (a new or pending secret) and cache it.

        Provisioning and rotation use it so that their checks cost no extra token request later; they
        are recovery, and may spend the budget's reserve.
        """
        token = self._request(client, credentials, reserve=0)
        self._memory[client] = token
        self._table.put_token(client, token, owner=None)
        return token

    def _fetch(self, client: str, state: TokenState, started: float | None = None) -> CachedToken:
        secret_id = self._naming.secret_id(client)
        current = self._secrets.read(secret_id, AWSCURRENT)
        if current is None:
            raise errors.ResourceNotFound(f"no managed app client named {client!r}")
        # The first attempt after Zus was unavailable is a recovery: it may spend the reserve.
        reserve = 0 if state.after_outage else self.policy.budget_reserve
        started = self._clock() if started is None else started
        try:
            return self._request(client, current, reserve=reserve)
        except errors.ZusCredentialsRefused:
            self._metrics.count("UpstreamCredentialsRefused")
        return self._fall_back(client, current, reserve, started)

    def _fall_back(self, client: str, refused: ClientCredentials, reserve: int, started: float) -> CachedToken:
        """A rotation may be under way, just finished, or still propagating at Zus: try each stored
        version (read afresh) once; and while one of them is settling, again, alternating, with short
        pauses, within the retry window and ``refused_attempts``."""
        secret_id = self._naming.secret_id(client)
        versions: list[tuple[str, ClientCredentials]] = []
        for stage in FALLBACK_STAGES:
            candidate = self._secrets.read(secret_id, stage, fresh=True)
            if candidate is not None and all(candidate.client_secret != kept.client_secret for _, kept in versions):
                versions.append((stage, candidate))
        queue = [(stage, version) for stage, version in versions if version.client_secret != refused.client_secret]
        attempts = 1
        for pause in backoff(0.05, 0.4):
            for stage, candidate in queue:
                if attempts >= self.policy.refused_attempts:
                    break
                attempts += 1
                try:
                    token = self._request(client, candidate, reserve=reserve)
                except errors.ZusCredentialsRefused:
                    self._metrics.count("UpstreamCredentialsRefused")
                    continue
                logger.info(
                    "token obtained after refused credentials",
                    extra={"client": client, "stage": stage, "attempts": attempts},
                )
                return token
            now = self._clock()
            settling = any(version.unsettled_for(now, self.policy.settle_seconds) for _, version in versions)
            out_of_time = now + pause - started >= self.policy.retry_window_seconds
            if not settling or out_of_time or attempts >= self.policy.refused_attempts:
                break
            self._sleep(pause)
            queue = versions
        self._metrics.count("InvalidClientExhausted")
        logger.error(
            "Zus refused every stored version of the client secret",
            extra={"client": client, "versions": len(versions), "attempts": attempts},
        )
        raise errors.ZusCredentialsRefused(
            "token request", 401, f"every stored secret version of {client!r} refused ({attempts} requests)"
        )

    def _request(self, client: str, credentials: ClientCredentials, *, reserve: int) -> CachedToken:
        """One token request, within budget (``reserve`` of it kept for recovery). No retry here: a
        failure is the caller's to remember (``_failed``); what Zus says of its quota is kept."""
        now = self._clock()
        verdict = self._table.spend_budget(client, now, self.policy.budget_per_hour, reserve=reserve)
        self._metrics.count("BudgetUsed", verdict.used)
        if not verdict.allowed:
            self._metrics.count("TokenBudgetExhausted")
            spent = (
                f"Zus reports the hourly token quota for {client!r} nearly spent (another user of the client?)"
                if verdict.by_zus
                else f"the hourly token budget of {self.policy.budget_per_hour} for {client!r} is spent"
            )
            raise errors.Throttled(spent, retry_after=verdict.retry_after)
        self._metrics.count("UpstreamTokenRequest")
        try:
            issued = self._endpoint.request_token(credentials.client_id, credentials.client_secret)
        except errors.ZusError as exc:
            self._note_quota(client, exc.quota, now)
            if isinstance(exc, errors.ZusRateLimited):
                self._metrics.count("UpstreamRateLimited")
                self._table.block(client, now + exc.retry_after)
                raise errors.TemporarilyUnavailable(
                    f"Zus rate-limited token requests for {client!r}", retry_after=exc.retry_after
                ) from exc
            if not isinstance(exc, errors.ZusCredentialsRefused):
                self._metrics.count("UpstreamUnavailable")
            raise
        self._note_quota(client, issued.quota, now)
        return CachedToken(
            issued.access_token, issued.token_type, now + issued.expires_in, lifetime=float(issued.expires_in)
        )

    def _note_quota(self, client: str, quota: ZusQuota | None, seen_at: float) -> None:
        if quota is not None:
            quietly(lambda: self._table.note_zus_quota(client, quota, seen_at))


def _cause(error: errors.ZusError) -> FailureCause:
    if isinstance(error, errors.ZusCredentialsRefused):
        return "refused"
    if isinstance(error, errors.ZusForbidden):
        return "forbidden"
    return "unavailable"
