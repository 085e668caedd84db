"""In-memory fakes of zus_m2m's own small interfaces (``zus_m2m.ports``), for unit tests of pure
logic: here the clock, metrics and token vending's ports (the others in ``fake_records``,
``fake_secrets``, ``fake_zus``, and wired together in ``fake_deployment``); and ``crash_at``, a
checkpoint that kills a flow where a test says (any test layer may use it)."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from zus_m2m import errors
from zus_m2m.admin_values import CreateRequest
from zus_m2m.values import (
    AccessToken,
    Budget,
    CachedToken,
    ClientCredentials,
    ClientRecord,
    ClientView,
    FailureCause,
    LeaseAttempt,
    SecretNaming,
    TokenState,
    ZusCount,
    ZusQuota,
)

if TYPE_CHECKING:
    from fake_records import FakeDueIndex

    from zus_m2m.wiring import Provisioning

ADMIN = "zus-m2m-admin"
# Stage "test" of the service: clients' secrets are zus-m2m/test/<name>, the admin's too.
NAMING = SecretNaming(
    prefix="zus-m2m", stage="test", admin_client_name=ADMIN, admin_secret_name=f"zus-m2m/test/{ADMIN}"
)

# A client record's JSON, as the API answers it (docs/openapi.json's AppClient): no more, no fewer.
RECORD_FIELDS = {"name", "appClientId", "clientId", "roleId", "roleName", "secretArn", "createdAt", "consumers"}


class Crash(BaseException):
    """The function dying (a timeout, an OOM): no except clause of the flow sees it."""


def create_at_once(containers: list[Provisioning], name: str) -> list[tuple[ClientRecord, bool]]:
    """The same create of ``name`` from every container, each in its own thread, all let go at once."""
    start = threading.Barrier(len(containers))

    def create(provisioning: Provisioning) -> tuple[ClientRecord, bool]:
        start.wait()
        return provisioning.create_client(CreateRequest(name))

    with ThreadPoolExecutor(max_workers=len(containers)) as pool:
        return list(pool.map(create, containers))


def crash_at(
    checkpoint: str, *, error: Callable[[str], BaseException] = Crash, once: bool = False
) -> Callable[[str], None]:
    """A checkpoint hook that raises ``error(checkpoint)`` when the flow reaches ``checkpoint``:
    every time, or only the first time (``once``: the retry then gets through)."""
    crashed: list[str] = []

    def hook(reached: str) -> None:
        if reached == checkpoint and not (once and crashed):
            crashed.append(reached)
            raise error(reached)

    return hook


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class FakeTokenTable:
    """The token and budget items in memory, with DynamoTokenTable's conditions (and its budget rule),
    and the active records ``view`` reads with them (``records``); with ``due``, a token item's due marks
    there too, as DynamoTokenTable keeps them (``refresh_margin``). A retired client's item is a tombstone
    (``retired``): the writes that would create it write nothing."""

    def __init__(self, due: FakeDueIndex | None = None, refresh_margin: float = 300.0) -> None:
        self.due = due
        self.refresh_margin = refresh_margin
        self.states: dict[str, TokenState] = {}
        self.budgets: dict[str, list[float]] = {}
        self.records: dict[str, ClientRecord] = {}
        self.zus_counts: dict[str, ZusCount] = {}
        self.budget_versions: Counter[str] = Counter()
        self.retired: set[str] = set()
        # What an eventually consistent read still answers (DynamoDB's GetItem without ConsistentRead).
        self.stale: dict[str, TokenState] = {}
        self.lock = threading.Lock()
        self.on_get: Callable[[str], None] | None = None
        self.views = 0

    def get(self, client: str, *, consistent: bool = False) -> TokenState:
        if self.on_get is not None:
            self.on_get(client)
        with self.lock:
            if not consistent and client in self.stale:
                return self.stale[client]
            return self.states.get(client, TokenState())

    def view(self, client: str) -> ClientView:
        if self.on_get is not None:
            self.on_get(client)
        with self.lock:
            self.views += 1
            record = self.records.get(client)
            return ClientView(
                record.app_client_id if record is not None else None,
                record.consumers if record is not None else (),
                self.states.get(client, TokenState()),
            )

    def discard_token(self, client: str, app_client_id: str) -> None:
        with self.lock:
            state = self.states.get(client, TokenState())
            if state.token is not None and state.token.app_client_id == app_client_id:
                self.states[client] = replace(state, token=None)

    def acquire_lease(self, client: str, owner: str, now: float, until: float) -> LeaseAttempt:
        with self.lock:
            if client in self.retired:
                raise errors.ResourceNotFound(f"app client {client!r} is being deleted")
            state = self.states.get(client, TokenState())
            if state.lease_held(now, by_other_than=owner):
                return LeaseAttempt(False, state)
            self.states[client] = replace(state, lease_owner=owner, lease_until=until)
            return LeaseAttempt(True, self.states[client])

    def release_lease(self, client: str, owner: str) -> None:
        with self.lock:
            state = self.states.get(client, TokenState())
            if state.lease_owner == owner:
                self.states[client] = replace(state, lease_owner=None, lease_until=0.0)

    def put_token(
        self,
        client: str,
        token: CachedToken,
        owner: str | None,
        *,
        replacing: CachedToken | None = None,
        fetch_seconds: float = 0.0,
    ) -> None:
        with self.lock:
            if client in self.retired:
                return
            state = self.states.get(client, TokenState())
            stored = state.token
            if (
                stored is None
                or stored.expires_at <= token.expires_at
                or stored.app_client_id != token.app_client_id
                or (replacing is not None and stored.access_token == replacing.access_token)
            ):
                state = replace(state, token=token, failures=0, failed_by=None, failed_until=0.0)
                if replacing is not None:
                    state = replace(state, refused_replaced_at=token.expires_at - token.lifetime)
                if fetch_seconds > 0:
                    state = replace(state, fetch_seconds=fetch_seconds)
            if owner is not None and state.lease_owner == owner:
                state = replace(state, lease_owner=None, lease_until=0.0)
            self.states[client] = state
            if self.due is not None and state.token is token:
                self.due.token_stored(client, token.expires_at - self.refresh_margin)

    def record_failure(self, client: str, owner: str, failures: int, cause: FailureCause, until: float) -> None:
        with self.lock:
            state = self.states.get(client, TokenState())
            if state.lease_owner == owner:
                self.states[client] = replace(
                    state, failures=failures, failed_by=cause, failed_until=until, lease_owner=None, lease_until=0.0
                )

    def block(self, client: str, until: float) -> None:
        with self.lock:
            if client not in self.retired:
                self.states[client] = replace(self.states.get(client, TokenState()), blocked_until=until)

    def read_budget(self, client: str, now: float) -> Budget:
        with self.lock:
            stamps = tuple(s for s in self.budgets.get(client, []) if s > now - 3600)
            return Budget(stamps, self.budget_versions[client], self.zus_counts.get(client))

    def count_request(self, client: str, budget: Budget, now: float) -> bool:
        with self.lock:
            if self.budget_versions[client] != budget.version:
                return False
            self.budgets[client] = [*budget.stamps, now]
            self.budget_versions[client] += 1
            return True

    def note_zus_quota(self, client: str, quota: ZusQuota, seen_at: float) -> None:
        with self.lock:
            known = self.zus_counts.get(client)
            if known is None or known.seen_at <= seen_at:
                self.zus_counts[client] = ZusCount(quota, seen_at)

    def mark_requested(self, client: str, now: float, *, unless_since: float | None = None) -> None:
        with self.lock:
            state = self.states.get(client, TokenState())
            if client in self.retired or (unless_since is not None and state.last_requested_at > unless_since):
                return
            self.states[client] = replace(state, last_requested_at=now)
            if self.due is not None:
                self.due.token_used(client, now)

    def retire(self, client: str, now: float) -> None:
        self.forget(client)
        with self.lock:
            self.retired.add(client)

    def forget(self, client: str) -> None:
        """The client's token and budget items deleted (a test's cold start, not a retirement)."""
        with self.lock:
            self.states.pop(client, None)
            self.budgets.pop(client, None)
            self.zus_counts.pop(client, None)


class FakeSecretReader:
    """Secrets by (secret id, stage)."""

    def __init__(self) -> None:
        self.versions: dict[tuple[str, str], ClientCredentials] = {}
        self.reads: list[tuple[str, str, bool]] = []
        self.known_versions: list[str | None] = []

    def read(
        self, secret_id: str, stage: str, *, fresh: bool = False, current_version: str | None = None
    ) -> ClientCredentials | None:
        self.reads.append((secret_id, stage, fresh))
        self.known_versions.append(current_version)
        return self.versions.get((secret_id, stage))


@dataclass
class FakeTokenEndpoint:
    """Zus's token endpoint: a token for a valid secret, or the error scripted for the next request."""

    valid_secrets: set[str] = field(default_factory=set)
    lifetime: int = 3600
    failures: list[Exception] = field(default_factory=list)
    quota: ZusQuota | None = None
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
            raise errors.ZusCredentialsRefused("token request", 401, "invalid_client")
        return AccessToken(access_token=f"token-{count}", expires_in=self.lifetime, quota=self.quota)


class FakeMetrics:
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.durations: dict[str, list[float]] = {}

    def duration(self, name: str, seconds: float) -> None:
        self.durations.setdefault(name, []).append(seconds)

    def count(self, name: str, value: float = 1.0) -> None:
        self.counts[name] += value  # type: ignore[assignment]  # a Counter of floats, as CloudWatch sums them
