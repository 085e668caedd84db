"""Zus's side of token vending: one client's token from its stored secret, within the hourly budget.

Every request to Zus first spends one unit of the client's rolling-hour budget, so the service never
sends Zus more than ``budget_per_hour`` token requests per client, however many containers run; part
of it is kept for recovery. A token is minted only with a secret of the app client the record names
(``binding``). Refused credentials are asked again only with another stored version of the secret, or
while a version is young enough to be still propagating at Zus. A failed attempt is remembered in the
token item (``failures``, ``failedUntil``): every container backs off together, so a vend call sends
one request, and a fleet one per back-off interval, however long Zus is down.
"""

from __future__ import annotations

import logging
import random
from typing import NamedTuple

from zus_m2m import errors
from zus_m2m.backoff import backoff
from zus_m2m.ports import Runtime, SecretReader, TokenEndpoint, TokenTable
from zus_m2m.tokens import budget
from zus_m2m.tokens.best_effort import quietly
from zus_m2m.tokens.policy import VendingPolicy
from zus_m2m.values import (
    AWSCURRENT,
    AWSPENDING,
    AWSPREVIOUS,
    CachedToken,
    ClientCredentials,
    FailureCause,
    SecretNaming,
    TokenState,
    ZusQuota,
)

logger = logging.getLogger(__name__)

# The versions a rotation can leave behind, in the order most likely to work mid-rotation.
FALLBACK_STAGES = (AWSPENDING, AWSCURRENT, AWSPREVIOUS)


class FailedAttempt(NamedTuple):
    """A failed token request as the token item remembers it, and the caller's answer."""

    failures: int
    cause: FailureCause
    until: float
    error: errors.TemporarilyUnavailable


class UpstreamTokens:
    """Mints tokens at Zus for the vendor (``fetch``, ``request``) and remembers failed attempts."""

    def __init__(
        self,
        table: TokenTable,
        secrets: SecretReader,
        endpoint: TokenEndpoint,
        naming: SecretNaming,
        policy: VendingPolicy,
        runtime: Runtime,
    ) -> None:
        self._table = table
        self._secrets = secrets
        self._endpoint = endpoint
        self._naming = naming
        self._metrics = runtime.metrics
        self._policy = policy
        self._clock = runtime.clock
        self._sleep = runtime.sleep

    def fetch(self, client: str, state: TokenState, binding: str | None, started: float | None = None) -> CachedToken:
        """A new token of ``client`` from its stored secret, as of the item ``state``; ``binding``: the app
        client it must be minted for (None: whichever the secret holds, for the bootstrap admin)."""
        secret_id = self._naming.secret_id(client)
        minted_with = state.token.secret_version if state.token is not None else None
        current = self._secrets.read(secret_id, AWSCURRENT, current_version=minted_with)
        if current is not None and binding is not None and current.app_client_id != binding:
            current = self._secrets.read(secret_id, AWSCURRENT, fresh=True)  # the cache may predate a re-create
        if current is None:
            raise errors.ResourceNotFound(f"no managed app client named {client!r}")
        if binding is not None and current.app_client_id != binding:
            raise errors.TemporarilyUnavailable(
                f"the secret of {client!r} does not hold the app client its record names yet", retry_after=1.0
            )
        # The first attempt after Zus was unavailable is a recovery: it may spend the reserve.
        reserve = 0 if state.after_outage else self._policy.budget_reserve
        started = self._clock() if started is None else started
        try:
            return self.request(client, current, reserve=reserve)
        except errors.ZusCredentialsRefused:
            self._metrics.count("UpstreamCredentialsRefused")
        return self._fall_back(client, current, binding, reserve, started)

    def _fall_back(
        self, client: str, refused: ClientCredentials, binding: str | None, reserve: int, started: float
    ) -> CachedToken:
        """A rotation may be under way, just finished, or still propagating at Zus: try each stored
        version of the bound app client (read afresh) once; and while one of them is settling, again,
        alternating, with short pauses, within the retry window and ``refused_attempts``."""
        secret_id = self._naming.secret_id(client)
        versions: list[tuple[str, ClientCredentials]] = []
        for stage in FALLBACK_STAGES:
            candidate = self._secrets.read(secret_id, stage, fresh=True)
            if (
                candidate is not None
                and binding in (None, candidate.app_client_id)
                and all(candidate.client_secret != kept.client_secret for _, kept in versions)
            ):
                versions.append((stage, candidate))
        queue = [(stage, version) for stage, version in versions if version.client_secret != refused.client_secret]
        attempts = 1
        for pause in backoff(0.05, 0.4):
            for stage, candidate in queue:
                if attempts >= self._policy.refused_attempts:
                    break
                attempts += 1
                try:
                    token = self.request(client, candidate, reserve=reserve)
                except errors.ZusCredentialsRefused:
                    self._metrics.count("UpstreamCredentialsRefused")
                    continue
                logger.info(
                    "token obtained after refused credentials",
                    extra={"client": client, "stage": stage, "attempts": attempts},
                )
                return token
            now = self._clock()
            settling = any(version.unsettled_for(now, self._policy.settle_seconds) for _, version in versions)
            out_of_time = now + pause - started >= self._policy.retry_window_seconds
            if not settling or out_of_time or attempts >= self._policy.refused_attempts:
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

    def request(self, client: str, credentials: ClientCredentials, *, reserve: int) -> CachedToken:
        """One token request, within budget (``reserve`` of it kept for recovery). No retry here: a
        failure is the caller's to remember (``failed``); what Zus says of its quota is kept."""
        now = self._clock()
        verdict = budget.spend(self._table, client, now, self._policy.budget_per_hour, reserve=reserve)
        self._metrics.count("BudgetUsed", verdict.used)
        if not verdict.allowed:
            self._metrics.count("TokenBudgetExhausted")
            spent = (
                f"Zus reports the hourly token quota for {client!r} nearly spent (another user of the client?)"
                if verdict.by_zus
                else f"the hourly token budget of {self._policy.budget_per_hour} for {client!r} is spent"
            )
            raise errors.Throttled(spent, retry_after=verdict.retry_after)
        self._metrics.count("UpstreamTokenRequest")
        try:
            issued = self._endpoint.request_token(credentials.client_id, credentials.client_secret)
        except errors.ZusError as exc:
            self._note_quota(client, exc.quota, now)
            if isinstance(exc, errors.ZusRateLimited):
                self._metrics.count("UpstreamRateLimited")
                # From now, not from before the budget's write: the pause must not end before Zus's.
                self._table.block(client, self._clock() + exc.retry_after)
                raise errors.TemporarilyUnavailable(
                    f"Zus rate-limited token requests for {client!r}", retry_after=exc.retry_after
                ) from exc
            if not isinstance(exc, errors.ZusCredentialsRefused):
                self._metrics.count("UpstreamUnavailable")
            raise
        self._note_quota(client, issued.quota, now)
        return CachedToken(
            issued.access_token,
            issued.token_type,
            now + issued.expires_in,
            credentials.app_client_id,
            lifetime=float(issued.expires_in),
            secret_version=credentials.version_id,
        )

    def failed(self, client: str, state: TokenState, error: errors.ZusError) -> FailedAttempt:
        """A failed attempt after the item ``state``: what to remember in the token item, so that every
        container backs off together (the lease's holder writes it), and the error for the caller."""
        cause = _cause(error)
        failures = state.failures + 1
        now = self._clock()
        wait = self._policy.backoff(failures) * random.uniform(0.8, 1.0)  # jitter: clients do not retry in step
        self._metrics.count("UpstreamBackoff")
        logger.warning(
            "token request failed; backing off",
            extra={"client": client, "cause": cause, "failures": failures, "seconds": round(wait, 1)},
        )
        answer = errors.TemporarilyUnavailable(
            f"{error.detail}; no token request for {client!r} for {wait:.0f} s", retry_after=wait
        )
        return FailedAttempt(failures, cause, now + wait, answer)

    def _note_quota(self, client: str, quota: ZusQuota | None, seen_at: float) -> None:
        if quota is not None:
            quietly(lambda: self._table.note_zus_quota(client, quota, seen_at))


def _cause(error: errors.ZusError) -> FailureCause:
    if isinstance(error, errors.ZusCredentialsRefused):
        return "refused"
    if isinstance(error, errors.ZusForbidden):
        return "forbidden"
    return "unavailable"
