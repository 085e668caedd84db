"""In-memory fakes of zus_m2m's own small interfaces (ports.py), for unit tests of pure logic."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from zus_m2m import errors
from zus_m2m.credentials import ClientCredentials
from zus_m2m.ports import BudgetVerdict, CachedToken, TokenState
from zus_m2m.zus.models import AccessToken


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class FakeTokenTable:
    def __init__(self) -> None:
        self.states: dict[str, TokenState] = {}
        self.budgets: dict[str, list[float]] = {}
        self.lock = threading.Lock()
        self.on_get: Callable[[str], None] | None = None

    def get(self, client: str, *, consistent: bool = False) -> TokenState:
        if self.on_get is not None:
            self.on_get(client)
        with self.lock:
            return self.states.get(client, TokenState())

    def acquire_lease(self, client: str, owner: str, now: float, until: float) -> bool:
        with self.lock:
            state = self.states.get(client, TokenState())
            if state.lease_owner is not None and state.lease_until > now:
                return False
            self.states[client] = replace(state, lease_owner=owner, lease_until=until)
            return True

    def release_lease(self, client: str, owner: str) -> None:
        with self.lock:
            state = self.states.get(client, TokenState())
            if state.lease_owner == owner:
                self.states[client] = replace(state, lease_owner=None, lease_until=0.0)

    def put_token(self, client: str, token: CachedToken, owner: str | None) -> None:
        with self.lock:
            state = self.states.get(client, TokenState())
            if state.token is None or state.token.expires_at <= token.expires_at:
                state = replace(state, token=token)
            if owner is not None and state.lease_owner == owner:
                state = replace(state, lease_owner=None, lease_until=0.0)
            self.states[client] = state

    def block(self, client: str, until: float) -> None:
        with self.lock:
            self.states[client] = replace(self.states.get(client, TokenState()), blocked_until=until)

    def spend_budget(self, client: str, now: float, limit: int) -> BudgetVerdict:
        with self.lock:
            stamps = [s for s in self.budgets.get(client, []) if s > now - 3600]
            if len(stamps) >= limit:
                return BudgetVerdict(False, len(stamps), min(stamps) + 3600 - now)
            self.budgets[client] = [*stamps, now]
            return BudgetVerdict(True, len(stamps) + 1)

    def budget_used(self, client: str, now: float) -> int:
        return len([s for s in self.budgets.get(client, []) if s > now - 3600])

    def mark_requested(self, client: str, now: float) -> None:
        with self.lock:
            self.states[client] = replace(self.states.get(client, TokenState()), last_requested_at=now)

    def requested_since(self, since: float) -> list[str]:
        return sorted(c for c, s in self.states.items() if s.last_requested_at >= since)

    def purge(self, client: str) -> None:
        with self.lock:
            self.states.pop(client, None)
            self.budgets.pop(client, None)


class FakeSecrets:
    """Secrets by (secret id, stage)."""

    def __init__(self) -> None:
        self.versions: dict[tuple[str, str], ClientCredentials] = {}
        self.reads: list[tuple[str, str, bool]] = []

    def read(self, secret_id: str, stage: str, *, fresh: bool = False) -> ClientCredentials | None:
        self.reads.append((secret_id, stage, fresh))
        return self.versions.get((secret_id, stage))


@dataclass
class FakeIssuer:
    """Answers token requests by secret: a token, or the error scripted for that secret."""

    valid_secrets: set[str] = field(default_factory=set)
    lifetime: int = 3600
    failures: list[Exception] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    on_call: Callable[[], None] | None = None

    def request_token(self, client_id: str, client_secret: str) -> AccessToken:
        with self.lock:
            self.calls.append(client_secret)
            count = len(self.calls)
            failure = self.failures.pop(0) if self.failures else None
        if self.on_call is not None:
            self.on_call()
        if failure is not None:
            raise failure
        if client_secret not in self.valid_secrets:
            raise errors.ZusInvalidClient("token request", 401, "invalid_client")
        return AccessToken(access_token=f"token-{count}", expires_in=self.lifetime)


class FakeMetrics:
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def count(self, name: str, value: float = 1.0) -> None:
        self.counts[name] += value


def run_now(job: Callable[[], None]) -> None:
    job()
