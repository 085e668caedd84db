"""The token vendor: serves a token with enough life left from the cheapest tier that has one.

Tiers: this container's memory, then the client's DynamoDB item, then Zus. Only the caller holding
the DynamoDB lease talks to Zus; everyone else waits a bounded time for the item it writes. Every
request to Zus first spends one unit of the client's rolling-hour budget, so the service never sends
Zus more than ``budget_per_hour`` token requests per client, however many containers run.

Who gets a token, and which: the memory tier keeps, with each client's token, the client's record as
last read (its consumers and its Zus app client id). A caller is served only if it is one of the
consumers, and only a token minted for the app client the record names. The record is read again, in
the same query as the token item, once it is ``revalidate_seconds`` old: a consumer removed, or a
client deleted or re-created under its name, stops being served within that bound. The bootstrap
admin client's token is never vended; provisioning and rotation get it through ``admin_token``.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from zus_m2m import errors
from zus_m2m.access import AccessPolicy, Caller, Principal, consumers_of, refused_token
from zus_m2m.backoff import backoff
from zus_m2m.ports import Clock, MetricsSink, SecretReader, Sleep, TokenEndpoint, TokenTable
from zus_m2m.values import (
    AWSCURRENT,
    AWSPENDING,
    AWSPREVIOUS,
    CachedToken,
    ClientCredentials,
    ClientView,
    SecretNaming,
    TokenState,
)

logger = logging.getLogger(__name__)

# The versions a rotation can leave behind, in the order most likely to work mid-rotation.
FALLBACK_STAGES = (AWSPENDING, AWSCURRENT, AWSPREVIOUS)

Runner = Callable[[Callable[[], None]], None]


@dataclass(frozen=True)
class VendingPolicy:
    refresh_margin: float = 300.0
    budget_per_hour: int = 100
    # Longer than one token request can take (3 s connect + 10 s read, twice), so a live holder keeps it.
    lease_seconds: float = 30.0
    # How long a caller waits for another caller's fetch before answering 503.
    wait_seconds: float = 3.0
    upstream_attempts: int = 3
    # No upstream retry starts later than this after the vend call began (a caller that waited for
    # the lease and took it over included): with the vending function's Zus timeouts
    # (wiring.TOKEN_VENDING_ZUS_TIMEOUT) every vend call answers well inside the function's 10 s.
    retry_window_seconds: float = 4.0
    # How often a container records that a client is in use (for the scheduled pre-refresh).
    mark_interval: float = 60.0
    # How long a container trusts the record it read (consumers, app client id): past half of it, a
    # background job reads it again while callers are served; past all of it, the caller's call does.
    revalidate_seconds: float = 5.0


@dataclass(frozen=True)
class KnownClient:
    """What this container knows of a managed client, from its record as read at ``checked_at``: the
    Zus app client it names and its consumers (parsed), and the token of that app client it last saw."""

    app_client_id: str
    consumers: tuple[Principal, ...]
    checked_at: float
    token: CachedToken | None = None


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
        access: AccessPolicy,
        clock: Clock = time.time,
        sleep: Sleep = time.sleep,
        run_in_background: Runner | None = None,
    ) -> None:
        self._table = table
        self._secrets = secrets
        self._endpoint = endpoint
        self._naming = naming
        self._access = access
        self._metrics = metrics
        self.policy = policy or VendingPolicy()
        self._clock = clock
        self._sleep = sleep
        self._background = BackgroundWork(run_in_background or background_runner())
        self._owner = f"{uuid.uuid4()}"
        self._known: dict[str, KnownClient] = {}
        # Tokens of clients served without a record: the bootstrap admin's.
        self._unbound: dict[str, CachedToken] = {}
        self._marked_at: dict[str, float] = {}

    # --- the vending path ---------------------------------------------------------------------

    def vend(self, caller: Caller, client: str, min_ttl: float) -> CachedToken:
        """A token of ``client`` with at least ``min_ttl`` seconds left, for one of its consumers; or a
        ZusM2MError saying why not (403 alike for a client that does not exist and one the caller may
        not use, unless the caller is an admin)."""
        if client == self._naming.admin_client_name:
            raise errors.Forbidden(f"the bootstrap admin client {client!r} is never vended")
        now = self._clock()
        remembered = self._known.get(client)
        age = now - remembered.checked_at if remembered is not None else math.inf
        # A caller the remembered record does not name is checked against the record as it is now: a
        # consumer just granted is served at once (a removed one within the revalidation bound).
        if (
            remembered is not None
            and age < self.policy.revalidate_seconds
            and self._access.may_get_token(caller, remembered.consumers)
        ):
            known = remembered
            if age >= self.policy.revalidate_seconds / 2:
                # Read the record again off the callers' path before the bound, once per container.
                self._background.submit_once(f"{client}\nrecord", lambda: self._revalidate(client))
            if known.token is not None and known.token.seconds_left(now) >= min_ttl:
                self._metrics.count("TokenMemoryHit")
                self._after_hit(client, known.token, now)
                return replace(known.token, source="memory")
            state = self._table.get(client)
        else:
            view = self._table.view(client)
            known = self._authorized(caller, client, self._revalidated(client, view, now))
            state = view.token
        binding = known.app_client_id
        token = _bound(state.token, binding)
        if token is not None and token.seconds_left(now) >= min_ttl:
            self._metrics.count("TokenTableHit")
            self._remember(client, token)
            self._after_hit(client, token, now)
            return replace(token, source="table")
        self._metrics.count("TokenMiss")
        token = self._fetch_or_wait(client, min_ttl, state, started=now, binding=binding)
        self._mark_in_background(client, self._clock())
        return token

    def admin_token(self, min_ttl: float) -> CachedToken:
        """The bootstrap admin client's token, for provisioning's and rotation's admin calls: cached like
        any client's (in its own partition), never vended to a caller."""
        client = self._naming.admin_client_name
        now = self._clock()
        token = self._unbound.get(client)
        if token is not None and token.seconds_left(now) >= min_ttl:
            self._metrics.count("TokenMemoryHit")
            self._after_hit(client, token, now)
            return token
        state = self._table.get(client)
        if state.token is not None and state.token.seconds_left(now) >= min_ttl:
            self._metrics.count("TokenTableHit")
            self._remember(client, state.token)
            self._after_hit(client, state.token, now)
            return state.token
        self._metrics.count("TokenMiss")
        token = self._fetch_or_wait(client, min_ttl, state, started=now, binding=None)
        self._mark_in_background(client, self._clock())
        return token

    def _revalidate(self, client: str) -> None:
        """Read the client's record and token item again (a background job): what a caller is served
        from memory is never older than the revalidation bound, and callers do not wait for the read."""
        started = self._clock()
        self._revalidated(client, self._table.view(client), started)

    def _revalidated(self, client: str, view: ClientView, now: float) -> KnownClient | None:
        """What the record just read says, remembered; a token of another app client than the record's
        is never kept, and is removed from the table off the caller's path."""
        app_client_id = view.app_client_id
        stale = view.token.token
        if stale is not None and stale.app_client_id != app_client_id:
            self._metrics.count("StaleTokenDiscarded")
            self._background.submit(lambda: self._table.discard_token(client, stale.app_client_id))
        if app_client_id is None:
            self._known.pop(client, None)
            return None
        previous = self._known.get(client)
        token = _later(
            previous.token if previous is not None and previous.app_client_id == app_client_id else None,
            _bound(view.token.token, app_client_id),
        )
        known = KnownClient(app_client_id, consumers_of(view.consumers), checked_at=now, token=token)
        self._known[client] = known
        return known

    def _authorized(self, caller: Caller, client: str, known: KnownClient | None) -> KnownClient:
        """``known`` if ``caller`` is one of its consumers; otherwise a refusal."""
        if known is not None and self._access.may_get_token(caller, known.consumers):
            return known
        if known is None and self._access.may_administer(caller):
            raise errors.ResourceNotFound(f"no managed app client named {client!r}")
        self._metrics.count("TokenRefused")
        raise refused_token(caller, client)

    def _remember(self, client: str, token: CachedToken) -> None:
        """Keep ``token`` in memory if it is of the app client this container knows under that name
        and expires later than the one it has."""
        if client == self._naming.admin_client_name:
            self._unbound[client] = _later(self._unbound.get(client), token) or token
            return
        known = self._known.get(client)
        if known is not None and known.app_client_id == token.app_client_id:
            self._known[client] = replace(known, token=_later(known.token, token))

    def _fetch_or_wait(
        self, client: str, min_ttl: float, state: TokenState, started: float, binding: str | None
    ) -> CachedToken:
        """``binding``: the app client a token must be of (None: any, for the bootstrap admin)."""
        deadline = started + self.policy.wait_seconds
        for pause in backoff(0.025, 0.2):
            now = self._clock()
            token = state.token if binding is None else _bound(state.token, binding)
            if token is not None and token.seconds_left(now) >= min_ttl:
                self._remember(client, token)
                return replace(token, source="lease-wait")
            if state.blocked_until > now:
                raise errors.TemporarilyUnavailable(
                    f"Zus asked us to pause token requests for {client!r}; no cached token has {min_ttl:.0f} s left",
                    retry_after=state.blocked_until - now,
                )
            lease_free = not state.lease_held(now)
            if lease_free and self._table.acquire_lease(client, self._owner, now, now + self.policy.lease_seconds):
                token = self._fetch_under_lease(client, started, binding)
                if token.seconds_left(self._clock()) < min_ttl:
                    lifetime = token.seconds_left(now)
                    raise errors.UnprocessableRequest(
                        f"tokens from Zus live {lifetime:.0f} s; minTtl {min_ttl:.0f} cannot be met"
                    )
                return token
            if now + pause > deadline:
                raise errors.TemporarilyUnavailable(
                    f"another caller is fetching a token for {client!r}; retry shortly", retry_after=1.0
                )
            self._metrics.count("LeaseWait")
            self._sleep(pause)
            state = self._table.get(client, consistent=True)
        raise AssertionError("unreachable: backoff never ends")

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
        nobody else is renewing it. Used by refresh-ahead (horizon 0) and by the scheduled pre-refresh.
        True when this call fetched a token.
        """
        now = self._clock()
        state = self._table.get(client, consistent=True)
        if state.token is not None and state.token.seconds_left(now) >= self.policy.refresh_margin + horizon:
            self._remember(client, state.token)  # another container already renewed it
            return False
        if state.blocked_until > now or state.lease_held(now):
            return False
        if not self._table.acquire_lease(client, self._owner, now, now + self.policy.lease_seconds):
            return False
        self._fetch_under_lease(client)
        return True

    # --- talking to Zus ------------------------------------------------------------------------

    def _fetch_under_lease(self, client: str, started: float | None = None, binding: str | None = None) -> CachedToken:
        try:
            token = self._fetch(client, started, binding)
        except BaseException:
            quietly(lambda: self._table.release_lease(client, self._owner))
            raise
        self._remember(client, token)
        self._table.put_token(client, token, self._owner)
        return token

    def issue_with(self, client: str, credentials: ClientCredentials) -> CachedToken:
        """Obtain a token with given credentials (a new or pending secret) and cache it.

        Provisioning and rotation use it so that their checks cost no extra token request later.
        """
        token = self._request(client, credentials)
        self._remember(client, token)
        self._table.put_token(client, token, owner=None)
        return token

    def _fetch(self, client: str, started: float | None = None, binding: str | None = None) -> CachedToken:
        secret_id = self._naming.secret_id(client)
        current = self._secrets.read(secret_id, AWSCURRENT)
        if current is not None and binding is not None and current.app_client_id != binding:
            current = self._secrets.read(secret_id, AWSCURRENT, fresh=True)  # the cache may predate a re-create
        if current is None:
            raise errors.ResourceNotFound(f"no managed app client named {client!r}")
        if binding is not None and current.app_client_id != binding:
            raise errors.TemporarilyUnavailable(
                f"the secret of {client!r} does not hold the app client its record names yet", retry_after=1.0
            )
        tried = {current.client_secret}
        try:
            return self._request(client, current, started)
        except errors.ZusInvalidClient:
            self._metrics.count("UpstreamInvalidClient")
        # A rotation may be under way or just finished: try each stored version once, read afresh.
        for stage in FALLBACK_STAGES:
            candidate = self._secrets.read(secret_id, stage, fresh=True)
            if candidate is None or candidate.client_secret in tried:
                continue
            tried.add(candidate.client_secret)
            try:
                token = self._request(client, candidate, started)
            except errors.ZusInvalidClient:
                self._metrics.count("UpstreamInvalidClient")
                continue
            logger.info("token obtained with a fallback secret version", extra={"client": client, "stage": stage})
            return token
        self._metrics.count("InvalidClientExhausted")
        logger.error(
            "Zus refused every stored version of the client secret",
            extra={"client": client, "versions_tried": len(tried)},
        )
        raise errors.TemporarilyUnavailable(
            f"Zus refused every stored secret version of {client!r} (invalid_client)", retry_after=30.0
        )

    def _request(self, client: str, credentials: ClientCredentials, started: float | None = None) -> CachedToken:
        """One logical token request: bounded, jittered retries on 5xx and timeouts, each within budget,
        none starting later than ``retry_window_seconds`` after ``started`` (default: now)."""
        started = self._clock() if started is None else started
        for attempt in range(self.policy.upstream_attempts):
            now = self._clock()
            verdict = self._table.spend_budget(client, now, self.policy.budget_per_hour)
            self._metrics.count("BudgetUsed", verdict.used)
            if not verdict.allowed:
                self._metrics.count("TokenBudgetExhausted")
                raise errors.Throttled(
                    f"the hourly token budget of {self.policy.budget_per_hour} for {client!r} is spent",
                    retry_after=verdict.retry_after,
                )
            self._metrics.count("UpstreamTokenRequest")
            try:
                issued = self._endpoint.request_token(credentials.client_id, credentials.client_secret)
            except errors.ZusRateLimited as exc:
                self._metrics.count("UpstreamRateLimited")
                self._table.block(client, now + exc.retry_after)
                raise errors.TemporarilyUnavailable(
                    f"Zus rate-limited token requests for {client!r}", retry_after=exc.retry_after
                ) from exc
            except errors.ZusUnavailable:
                self._metrics.count("UpstreamUnavailable")
                pause = random.uniform(0.1, 0.4) * 2**attempt
                out_of_time = self._clock() + pause - started >= self.policy.retry_window_seconds
                if attempt + 1 == self.policy.upstream_attempts or out_of_time:
                    raise
                self._sleep(pause)
                continue
            return CachedToken(
                issued.access_token,
                issued.token_type,
                now + issued.expires_in,
                credentials.app_client_id,
                secret_version=credentials.version_id,
            )
        raise AssertionError("unreachable: the loop returns or raises")


def _bound(token: CachedToken | None, app_client_id: str) -> CachedToken | None:
    """``token`` if it was minted for ``app_client_id``."""
    return token if token is not None and token.app_client_id == app_client_id else None


def _later(first: CachedToken | None, second: CachedToken | None) -> CachedToken | None:
    if first is None or (second is not None and second.expires_at > first.expires_at):
        return second
    return first
