"""The token vendor: serves a token with enough life left from the cheapest tier that has one.

Tiers: this container's memory (``tokens.memory``), then the client's DynamoDB item, then Zus
(``tokens.upstream``: the budget, its reserve, refused credentials, the memory of failed attempts).
Only the caller holding the DynamoDB lease talks to Zus; everyone else waits a bounded time for the
item it writes, and nobody asks Zus while the item says to back off.

Who gets a token, and which: the memory tier keeps, with each client's token, the client's record as
last read (its consumers and its Zus app client id). A caller is served only if it is one of the
consumers, and only a token minted for the app client the record names. The record is read again (the
copy the token item carries: one read, ``TokenTable.view``) by the first call that finds it
``revalidate_seconds`` old, before it is used: a consumer removed, or a client deleted or re-created
under its name, stops being served within that bound. The bootstrap admin client's token is never
vended; provisioning and rotation get it through ``admin_token``.

Nothing is left for after the answer: Lambda freezes the environment once the handler returns, so a
thread left running would stall with a lease held or a request in flight. The call that finds the
token inside its refresh margin renews it before answering (refresh-ahead; docs/design.md says why in
the invocation rather than through the work queue), and in-use marks are written in the call (by the
lease's holder, not by the callers that waited for its token); both are best effort
(``tokens.best_effort``): their failure never fails the call.

A ``min_ttl`` longer than Zus's tokens live (learned from the last one) is 422 without asking Zus;
``admin_token`` settles for half a lifetime instead.
"""

from __future__ import annotations

import math

from zus_m2m import errors
from zus_m2m.access import AccessPolicy, Caller, refused_token
from zus_m2m.ports import Runtime, SecretReader
from zus_m2m.tokens.best_effort import quietly
from zus_m2m.tokens.memory import KnownClient, bound
from zus_m2m.tokens.single_flight import SingleFlight
from zus_m2m.values import (
    AWSCURRENT,
    CachedToken,
    ClientCredentials,
    ClientView,
    SecretNaming,
    TokenSource,
    TokenState,
)


class TokenVendor:
    """Vends tokens (``vend``; the bootstrap admin's: ``admin_token``), renews them ahead of expiry
    (refresh-ahead, through ``flight``), and obtains one with given credentials for provisioning and
    rotation (``issue_with``: ``TokenIssuer``). Its tiers are the single flight's: this container's
    memory, the table, and Zus behind the lease (the composition root builds them, ``wiring``)."""

    def __init__(
        self, flight: SingleFlight, secrets: SecretReader, naming: SecretNaming, access: AccessPolicy, runtime: Runtime
    ) -> None:
        self.flight = flight
        self._table = flight.table
        self._memory = flight.memory
        self._upstream = flight.upstream
        self.policy = flight.policy
        self._secrets = secrets
        self._naming = naming
        self._access = access
        self._metrics = runtime.metrics
        self._clock = runtime.clock
        self._marked_at: dict[str, float] = {}

    # --- the vending path ---------------------------------------------------------------------

    def vend(self, caller: Caller, client: str, min_ttl: float, refused: str | None = None) -> CachedToken:
        """A token of ``client`` with at least ``min_ttl`` seconds left, for one of its consumers; or a
        ZusM2MError saying why not (403 alike for a client that does not exist and one the caller may
        not use, unless the caller is an admin; 422 for a ``min_ttl`` no token of Zus's can have).

        ``refused``: the fingerprint of a token Zus refused. That token is never served again: it leaves
        this container's memory, and one new token replaces it in the table for every container (the
        lease's single flight); a token with another fingerprint is served as usual."""
        if client == self._naming.admin_client_name:
            raise errors.Forbidden(f"the bootstrap admin client {client!r} is never vended")
        if refused is not None:
            self._metrics.count("RefusedTokenReported")
        now = self._clock()
        remembered = self._memory.known(client)
        age = now - remembered.checked_at if remembered is not None else math.inf
        # A caller the remembered record does not name is checked against the record as it is now: a
        # consumer just granted is served at once (a removed one within the revalidation bound).
        if (
            remembered is not None
            and age < self.policy.revalidate_seconds
            and self._access.may_get_token(caller, remembered.consumers)
        ):
            known = remembered
            served, min_ttl = self._hit(client, known.token, min_ttl, now, "memory", refused=refused)
            if served is not None:
                return served
            state = self._read(client, self._table.get(client))
        else:
            view = self._table.view(client)
            known = self._authorized(caller, client, self._revalidated(client, view, now))
            state = self._read(client, view.token)
        token = bound(state.token, known.app_client_id)
        served, min_ttl = self._hit(client, token, min_ttl, now, "table", refused=refused)
        if served is not None:
            return served
        return self._obtain(client, min_ttl, state, now, known.app_client_id, refused=refused)

    def admin_token(self, min_ttl: float) -> CachedToken:
        """The bootstrap admin client's token, for provisioning's and rotation's admin calls: cached like
        any client's (in its own partition), never vended to a caller. Best effort: where Zus's tokens
        live shorter than ``min_ttl``, one with half a lifetime left will do."""
        client = self._naming.admin_client_name
        now = self._clock()
        served, min_ttl = self._hit(client, self._memory.unbound(client), min_ttl, now, "memory", best_effort=True)
        if served is not None:
            return served
        state = self._read(client, self._table.get(client))
        served, min_ttl = self._hit(client, state.token, min_ttl, now, "table", best_effort=True)
        if served is not None:
            return served
        # Before any write: the (cached) secret read says whether the admin client is there at all.
        if self._secrets.read(self._naming.secret_id(client), AWSCURRENT) is None:
            raise errors.ResourceNotFound(f"no managed app client named {client!r}")
        return self._obtain(client, min_ttl, state, now, binding=None, best_effort=True)

    def _hit(
        self,
        client: str,
        token: CachedToken | None,
        min_ttl: float,
        now: float,
        tier: TokenSource,
        best_effort: bool = False,
        refused: str | None = None,
    ) -> tuple[CachedToken | None, float]:
        """``token`` as served from ``tier`` if it has ``min_ttl`` seconds left and is not the one
        ``refused`` names (else None: that one leaves this container's memory), and the ``min_ttl`` a
        token of its lifetime can have (``_satisfiable``)."""
        if token is None:
            return None, min_ttl
        min_ttl = self._satisfiable(token, min_ttl, now, best_effort)
        if refused is not None and token.fingerprint == refused:
            self._memory.forget(client, token)
            return None, min_ttl
        if token.seconds_left(now) < min_ttl:
            return None, min_ttl
        if tier == "table":
            self._memory.remember(client, token)
        self._after_hit(client, token, now)
        return token.served_from(tier), min_ttl

    def _satisfiable(self, token: CachedToken, min_ttl: float, now: float, best_effort: bool) -> float:
        """``min_ttl``, if a token of the learned lifetime can have it left (or best effort's half a
        lifetime); a live token's lifetime is what Zus issues now (an expired one's may be outdated)."""
        if token.outlives(min_ttl) or token.seconds_left(now) <= 0:
            return min_ttl
        if best_effort:
            return token.lifetime / 2
        self._metrics.count("MinTtlUnsatisfiable")
        raise _unsatisfiable(token.lifetime, min_ttl)

    def _obtain(
        self,
        client: str,
        min_ttl: float,
        state: TokenState,
        started: float,
        binding: str | None,
        best_effort: bool = False,
        refused: str | None = None,
    ) -> CachedToken:
        self._metrics.count("TokenMiss")
        token = self.flight.fetch_or_wait(client, min_ttl, state, started, binding, refused)
        # Judged as the token arrives: the bookkeeping write after it spends none of the caller's minTtl.
        if token.seconds_left(self._clock()) < min_ttl and not best_effort:
            raise _unsatisfiable(token.lifetime, min_ttl)
        if token.source == "lease-wait":
            # The lease's holder marks the client in use in its own call, or found it marked lately (a
            # pre-refresh holding it renews a client in use): the waiters' answers wait for no write, and
            # a burst of them writes no mark each.
            self._marked_at[client] = self._clock()
        else:
            self._mark_in_use(client, self._clock())
        return token

    def _revalidated(self, client: str, view: ClientView, now: float) -> KnownClient | None:
        """What the record just read says, remembered; a token of another app client than the record's
        is never kept, and is removed from the table (best effort: it is never served anyway)."""
        stale = view.token.token
        if stale is not None and stale.app_client_id != view.app_client_id:
            self._metrics.count("StaleTokenDiscarded")
            quietly(lambda: self._table.discard_token(client, stale.app_client_id))
        return self._memory.learn(client, view, now)

    def _authorized(self, caller: Caller, client: str, known: KnownClient | None) -> KnownClient:
        """``known`` if ``caller`` is one of its consumers; otherwise a refusal."""
        if known is not None and self._access.may_get_token(caller, known.consumers):
            return known
        if known is None and self._access.may_administer(caller):
            raise errors.ResourceNotFound(f"no managed app client named {client!r}")
        self._metrics.count("TokenRefused")
        raise refused_token(caller, client)

    def _after_hit(self, client: str, token: CachedToken, now: float) -> None:
        """Refresh ahead of expiry (this call renews the token it serves, unless another caller is
        renewing it); record use for the scheduled pre-refresh."""
        if token.seconds_left(now) < self.policy.margin_for(token):
            quietly(lambda: self.flight.refresh(client))
        self._mark_in_use(client, now)

    def _read(self, client: str, state: TokenState) -> TokenState:
        """``state`` as just read: an in-use mark another container wrote spares this one writing its own
        within ``mark_interval``."""
        if state.last_requested_at > self._marked_at.get(client, 0.0):
            self._marked_at[client] = state.last_requested_at
        return state

    def _mark_in_use(self, client: str, now: float) -> None:
        """A write, in the call, when neither this container nor (as last read) another marked the client
        within ``mark_interval``; conditional, so that at most one per interval is written for the fleet
        (a container that has not read the item since attempts one per interval)."""
        if now - self._marked_at.get(client, 0.0) >= self.policy.mark_interval:
            self._marked_at[client] = now
            since = now - self.policy.mark_interval
            quietly(lambda: self._table.mark_requested(client, now, unless_since=since))

    # --- issuing ------------------------------------------------------------------

    def issue_with(self, client: str, credentials: ClientCredentials) -> CachedToken:
        """Obtain a token with given credentials (a new or pending secret) and cache it.

        Provisioning and rotation use it so that their checks cost no extra token request later; they
        are recovery, and may spend the budget's reserve.
        """
        token = self._upstream.request(client, credentials, reserve=0)
        self._memory.remember(client, token)
        self._table.put_token(client, token, owner=None)
        return token


def _unsatisfiable(lifetime: float, min_ttl: float) -> errors.UnprocessableRequest:
    return errors.UnprocessableRequest(f"tokens from Zus live {lifetime:.0f} s; minTtl {min_ttl:.0f} cannot be met")
