"""``TokenProvider``: a process's Zus access token for one managed client, fetched from zus-m2m.

The token is kept in the process and handed out while it has at least ``min_ttl`` seconds left. Once
it has less than ``min_ttl + margin`` left, the first caller to notice fetches the next one
while every other caller keeps using the current one; when there is no usable token, one caller fetches
and the others wait for it (single flight). Lifetimes are timed on the monotonic clock from the answer's
``expires_in``, so a host whose wall clock is wrong neither hands out a stale token nor asks for a new
one on every call. 429 and 503 answers are retried after their Retry-After within ``max_wait`` seconds.

The margin is ``refresh_margin`` (default 240 s) but at most half the token's lifetime (the longest
``expires_in`` seen), as the service's own; the route is asked for no more than a token of that lifetime
can have left, so short-lived tokens are neither refused (422) nor fetched on every call. A fetch made
while the held token is inside that window asks for more than the held token can have left (its
``expires_in`` is whole seconds, and the request took time): the service cannot answer it again, so a
process makes one call per token lifetime, not a second one when the held token is not yet inside the
service's own refresh margin.

When Zus refuses a token anyway (revoked, or the host slept past its expiry), ``report_refused`` drops
it, and the next fetch names it (``?refused=<fingerprint>``) so the service replaces it once for the
whole fleet. Each token counts once however many threads report it. The first refused token is replaced
at once; when its replacement is refused too, Zus is refusing fresh tokens (a revoked client, an outage
of its authorizer), and the next replacement waits an exponential back-off with jitter (2 s, 4 s, ...
up to ``MAX_REFUSAL_BACKOFF``), ``get_token`` raising ``TokenRefusedError`` meanwhile; so a client
that Zus keeps refusing spends a few tokens of its hourly budget, not all of it.
"""

from __future__ import annotations

import copy
import logging
import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import botocore.session

from zus_m2m_client import errors
from zus_m2m_client.api import MAX_MIN_TTL, AccessToken, ZusM2MApi, fingerprint, validate_client_name
from zus_m2m_client.transport import Transport

logger = logging.getLogger(__name__)

# A 429, 503 or lost connection without Retry-After is tried again after this many seconds.
DEFAULT_RETRY_WAIT = 1.0
# At most one refresh-ahead attempt per this many seconds, so a failing route is not asked on every call.
MIN_REFRESH_INTERVAL = 10.0
DEFAULT_REFRESH_MARGIN = 240.0
# Back-off after the second refused token in a row: doubles from the first up to the cap, each with jitter.
FIRST_REFUSAL_BACKOFF = 2.0
MAX_REFUSAL_BACKOFF = 300.0
# A refusal this long after the previous one starts a new count (the earlier trouble is over).
REFUSAL_MEMORY = 2 * MAX_REFUSAL_BACKOFF
_REMEMBERED_REFUSALS = 64


@dataclass(frozen=True)
class _Held:
    token: AccessToken
    deadline: float  # when the token expires, on the provider's clock
    latest: float  # the latest it can expire, on the same clock: when it was answered, plus a second of rounding

    def seconds_left(self, now: float) -> float:
        return self.deadline - now


class TokenProvider:
    """Zus access tokens for ``client_name`` from the zus-m2m API at ``api_url``, for every thread of a process.

    ``session`` is the botocore session whose credentials sign the requests (default: botocore's default
    chain); ``region`` the region to sign for (default: from the URL, else the session's). ``transport``
    replaces the SigV4 HTTP transport; ``clock`` (monotonic seconds) and ``sleep`` are for tests.
    """

    def __init__(
        self,
        api_url: str,
        client_name: str,
        *,
        session: botocore.session.Session | None = None,
        region: str | None = None,
        min_ttl: float = 60.0,
        refresh_margin: float = DEFAULT_REFRESH_MARGIN,
        max_wait: float = 20.0,
        transport: Transport | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if min_ttl < 0 or refresh_margin < 0 or max_wait < 0:
            raise ValueError("min_ttl, refresh_margin and max_wait are seconds >= 0")
        if min_ttl + refresh_margin > MAX_MIN_TTL:
            raise ValueError(f"min_ttl + refresh_margin is at most {MAX_MIN_TTL} seconds (the token route's limit)")
        self.client_name = validate_client_name(client_name)
        self.min_ttl = min_ttl
        self.refresh_margin = refresh_margin
        self.max_wait = max_wait
        self._api = ZusM2MApi(api_url, session=session, region=region, transport=transport)
        self._lifetime = 0.0  # the longest expires_in seen: the token's lifetime, as far as is known
        self._clock = clock
        self._sleep = sleep
        self._changed = threading.Condition()
        self._held: _Held | None = None
        self._fetching = False
        self._generation = 0  # fetches finished so far; waiters watch it change
        self._failure: BaseException | None = None  # how the last fetch failed, if it did
        self._refused: str | None = None  # fingerprint the next fetch names as refused
        self._next_refresh_at = -math.inf
        self._reported: list[str] = []  # fingerprints reported refused (recent ones): each counts once
        self._refusals = 0  # tokens refused in a row
        self._last_refusal_at = -math.inf
        self._replace_after = -math.inf  # no replacement fetch before this (back-off)

    def __repr__(self) -> str:
        return (
            f"TokenProvider(api_url={self._api.api_url!r}, client_name={self.client_name!r}, "
            f"min_ttl={self.min_ttl!r}, refresh_margin={self.refresh_margin!r}, max_wait={self.max_wait!r})"
        )

    def get_token(self, *, fresh: bool = False) -> AccessToken:
        """A token with at least ``min_ttl`` seconds left; raises a ``ZusM2MError`` when none can be had.
        ``fresh``: ask the route even while the held token is good (or wait for a fetch under way), and hold
        what it answers."""
        with self._changed:
            while True:
                now = self._clock()
                held = self._held
                if not fresh and held is not None and held.seconds_left(now) >= self.min_ttl:
                    if self._fetching or held.seconds_left(now) >= self._window() or now < self._next_refresh_at:
                        return held.token
                    self._fetching = True
                    ahead = True  # this caller refreshes; the others keep using the held token meanwhile
                    break
                if not self._fetching:
                    if now < self._replace_after:
                        raise self._refused_error(now)
                    self._fetching = True
                    ahead = False
                    break
                generation = self._generation
                while self._generation == generation:
                    self._changed.wait()
                fresh = False  # the fetch waited for is fresh enough
                if self._failure is not None and self._usable() is None:
                    raise _for_waiter(self._failure)
        return self._lead(ahead=ahead)

    def report_refused(self, access_token: str) -> None:
        """Zus refused ``access_token``: stop handing it out and ask the service to replace it (at once
        the first time, after a back-off when its replacement is refused too)."""
        refused = fingerprint(access_token)
        with self._changed:
            held = self._held
            if refused in self._reported or (held is not None and held.token.fingerprint != refused):
                return  # reported already, or already replaced (another thread reported it first)
            self._reported = [*self._reported[-(_REMEMBERED_REFUSALS - 1) :], refused]
            now = self._clock()
            self._refusals = 1 if now - self._last_refusal_at > REFUSAL_MEMORY else self._refusals + 1
            self._last_refusal_at = now
            if self._refusals > 1:
                ceiling = min(MAX_REFUSAL_BACKOFF, FIRST_REFUSAL_BACKOFF * 2.0 ** (self._refusals - 2))
                self._replace_after = now + ceiling * random.uniform(0.5, 1.0)  # jitter, not a secret
            self._held = None
            self._refused = refused
            refusals, wait = self._refusals, max(0.0, self._replace_after - now)
        if refusals == 1:
            logger.info(
                "Zus refused token %s of client %s; the next fetch asks for a replacement", refused, self.client_name
            )
        else:
            logger.warning(
                "Zus refused token %s of client %s, the %d. in a row; the next replacement in %.1f s",
                refused,
                self.client_name,
                refusals,
                wait,
            )

    def _refused_error(self, now: float) -> errors.TokenRefusedError:
        wait = self._replace_after - now
        return errors.TokenRefusedError(
            f"Zus refused the last {self._refusals} tokens of client {self.client_name!r} (revoked, or Zus is "
            f"refusing its tokens); the next replacement is asked for in {wait:.0f} s",
            retry_after=wait,
        )

    def _window(self) -> float:
        """Seconds left under which the held token is refreshed ahead (and what the route is asked for):
        ``min_ttl`` plus the margin, the margin being ``refresh_margin`` but at most what leaves half the
        token's known lifetime (none before a token is seen), so a token that lives shorter than the
        margin is neither refused (422) nor refreshed on every call."""
        return min(self.min_ttl + self.refresh_margin, max(self.min_ttl, self._lifetime / 2))

    def _asked_min_ttl(self, now: float) -> int:
        """The ``minTtl`` a fetch asks for: the window; while the held token is inside it, also more than
        that token can have left at the service (but no more than a token can have), so the answer is its
        successor rather than the held token again, which would be asked for anew ``MIN_REFRESH_INTERVAL``
        later (a second call per lifetime whenever the window reaches past the service's refresh margin).
        Called with the lock held."""
        window = self._window()
        asked = math.ceil(window)
        held = self._held
        if held is not None and held.seconds_left(now) < window:
            ceiling = min(MAX_MIN_TTL, math.floor(self._lifetime)) if self._lifetime else MAX_MIN_TTL
            asked = max(asked, min(math.floor(held.latest - now) + 1, ceiling))
        return asked

    def _usable(self) -> AccessToken | None:
        held = self._held
        return held.token if held is not None and held.seconds_left(self._clock()) >= self.min_ttl else None

    def _lead(self, *, ahead: bool) -> AccessToken:
        try:
            token = self._fetch(retry=not ahead)
        except BaseException as exc:
            with self._changed:
                self._finish(exc)
                wait = exc.retry_after if isinstance(exc, errors.ZusM2MApiError) and exc.retry_after else 0.0
                self._next_refresh_at = self._clock() + max(MIN_REFRESH_INTERVAL, wait)
                current = self._usable() if ahead and isinstance(exc, errors.ZusM2MError) else None
            if current is None:
                raise
            logger.warning(
                "refreshing the token of client %s ahead of expiry failed (%s); the current one is used meanwhile",
                self.client_name,
                exc,
            )
            return current
        with self._changed:
            self._finish(None)
        return token

    def _fetch(self, *, retry: bool) -> AccessToken:
        """One token from the route, held once it arrives; 429, 503 and no answer are tried again within
        ``max_wait`` when ``retry``."""
        give_up_at = self._clock() + self.max_wait
        asked_again = False
        while True:
            asked_at = self._clock()
            with self._changed:
                refused = self._refused
                min_ttl = self._asked_min_ttl(asked_at)
            try:
                token = self._api.token(self.client_name, min_ttl=min_ttl, refused=refused)
            except (errors.ThrottledError, errors.UnavailableError, errors.TransportError) as exc:
                wait = exc.retry_after if exc.retry_after is not None else DEFAULT_RETRY_WAIT
                if not retry or self._clock() + wait > give_up_at:
                    raise
                logger.info("token route for %s: %s; trying again in %.0f s", self.client_name, exc, wait)
                self._sleep(wait)
                continue
            with self._changed:
                if token.fingerprint == self._refused and refused != self._refused and not asked_again:
                    asked_again = True  # reported refused while this request was under way: name it this time
                    continue
                self._refused = None  # named, or a newer token is in hand: nothing left to report
                self._held = _Held(token, asked_at + token.expires_in, self._clock() + token.expires_in + 1)
                self._lifetime = max(self._lifetime, float(token.expires_in))
                self._next_refresh_at = self._clock() + MIN_REFRESH_INTERVAL
            logger.debug(
                "token %s for client %s fetched, %d s left", token.fingerprint, self.client_name, token.expires_in
            )
            return token

    def _finish(self, failure: BaseException | None) -> None:
        """Called with the lock held when a fetch ends: wake whoever waits for it."""
        self._fetching = False
        self._failure = failure
        self._generation += 1
        self._changed.notify_all()


def _for_waiter(failure: BaseException) -> errors.ZusM2MError:
    """The error a caller that waited for a failed fetch raises: its own copy of the fetcher's."""
    if isinstance(failure, errors.ZusM2MError):
        mine = copy.copy(failure)
        mine.__cause__ = failure.__cause__
        return mine
    waited = errors.ZusM2MError(f"the token fetch this call waited for failed ({type(failure).__name__})")
    waited.__cause__ = failure
    return waited
