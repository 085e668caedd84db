"""In-memory fakes of zus_m2m's own small interfaces (``zus_m2m.ports``), for unit tests of pure
logic; and ``crash_at``, a checkpoint that kills a flow where a test says (any test layer may use it)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from zus_m2m import errors
from zus_m2m.values import (
    AccessToken,
    AppClient,
    AppClientSecret,
    Budget,
    CachedToken,
    ClientCredentials,
    ClientRecord,
    ClientView,
    DueMark,
    FailureCause,
    RecordItem,
    Role,
    RotationFailure,
    SecretDescription,
    SecretNaming,
    TokenState,
    WorkItem,
    ZusCount,
    ZusQuota,
)

ADMIN = "zus-m2m-admin"
# Stage "test" of the service: clients' secrets are zus-m2m/test/<name>, the admin's too.
NAMING = SecretNaming(
    prefix="zus-m2m", stage="test", admin_client_name=ADMIN, admin_secret_name=f"zus-m2m/test/{ADMIN}"
)


class Crash(BaseException):
    """The function dying (a timeout, an OOM): no except clause of the flow sees it."""


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
    there too, as DynamoTokenTable keeps them (``refresh_margin``)."""

    def __init__(self, due: FakeDueIndex | None = None, refresh_margin: float = 300.0) -> None:
        self.due = due
        self.refresh_margin = refresh_margin
        self.states: dict[str, TokenState] = {}
        self.budgets: dict[str, list[float]] = {}
        self.records: dict[str, ClientRecord] = {}
        self.zus_counts: dict[str, ZusCount] = {}
        self.budget_versions: Counter[str] = Counter()
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

    def acquire_lease(self, client: str, owner: str, now: float, until: float) -> TokenState | None:
        with self.lock:
            state = self.states.get(client, TokenState())
            if state.lease_owner is not None and state.lease_until > now:
                return None
            self.states[client] = replace(state, lease_owner=owner, lease_until=until)
            return self.states[client]

    def release_lease(self, client: str, owner: str) -> None:
        with self.lock:
            state = self.states.get(client, TokenState())
            if state.lease_owner == owner:
                self.states[client] = replace(state, lease_owner=None, lease_until=0.0)

    def put_token(
        self, client: str, token: CachedToken, owner: str | None, *, replacing: CachedToken | None = None
    ) -> None:
        with self.lock:
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

    def mark_requested(self, client: str, now: float) -> None:
        with self.lock:
            self.states[client] = replace(self.states.get(client, TokenState()), last_requested_at=now)
            if self.due is not None:
                self.due.token_used(client, now)

    def purge(self, client: str) -> None:
        with self.lock:
            self.states.pop(client, None)
            self.budgets.pop(client, None)
            self.zus_counts.pop(client, None)


class FakeSecretReader:
    """Secrets by (secret id, stage)."""

    def __init__(self) -> None:
        self.versions: dict[tuple[str, str], ClientCredentials] = {}
        self.reads: list[tuple[str, str, bool]] = []

    def read(self, secret_id: str, stage: str, *, fresh: bool = False) -> ClientCredentials | None:
        self.reads.append((secret_id, stage, fresh))
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

    def count(self, name: str, value: float = 1.0) -> None:
        self.counts[name] += value


# --- provisioning -------------------------------------------------------------------------------


class FakeClientRecords:
    """The record items by name, with the conditional-write semantics of DynamoClientRecords."""

    def __init__(self) -> None:
        self.items: dict[str, RecordItem] = {}
        self.rotation_requests: dict[str, float] = {}
        self.repair_requests: dict[str, tuple[float, float | None]] = {}  # last requested, in flight until
        self.lock = threading.Lock()

    def get(self, name: str):
        with self.lock:
            return self.items.get(name)

    def list_page(self, limit: int, after: str | None):
        """Pages in name order, each after the last name of the one before."""
        with self.lock:
            active = sorted(
                (i.record for i in self.items.values() if i.status == "active" and i.record),
                key=lambda r: r.name,
            )
        rest = [r for r in active if after is None or r.name > after]
        page = rest[:limit]
        return page, page[-1].name if len(rest) > limit else None

    def claim(self, name, role_name, consumers, owner, now, until, *, previous_owner):
        with self.lock:
            item = self.items.get(name)
            if previous_owner is None:
                if item is not None:
                    return None
                item = RecordItem(name=name, status="creating", role_name=role_name, claimed_at=now)
            elif item is None or item.status != "creating" or item.claim_owner != previous_owner:
                return None
            if item.claim_until > now:
                return None
            item = replace(item, role_name=role_name, consumers=consumers, claim_owner=owner, claim_until=until)
            self.items[name] = item
            return item

    def _update_claim(self, name: str, owner: str, **changes) -> bool:
        with self.lock:
            item = self.items.get(name)
            if item is None or item.status != "creating" or item.claim_owner != owner:
                return False
            self.items[name] = replace(item, **changes)
            return True

    def mark_create_started(self, name: str, owner: str, now: float) -> bool:
        return self._update_claim(name, owner, create_started_at=now)

    def forget_create_started(self, name: str, owner: str) -> None:
        self._update_claim(name, owner, create_started_at=None)

    def note_app_client(self, name: str, owner: str, app_client_id: str) -> bool:
        return self._update_claim(name, owner, app_client_id=app_client_id)

    def complete(self, record: ClientRecord, owner: str) -> bool:
        with self.lock:
            item = self.items.get(record.name)
            if item is None or item.status != "creating" or item.claim_owner != owner:
                return False
            self.items[record.name] = RecordItem(
                name=record.name, status="active", role_name=record.role_name, record=record
            )
            return True

    def release(self, name: str, owner: str) -> None:
        with self.lock:
            item = self.items.get(name)
            if item is None or item.status != "creating" or item.claim_owner != owner:
                return
            if item.create_started:
                self.items[name] = replace(item, claim_until=0.0)
            else:
                del self.items[name]

    def set_consumers(self, name: str, consumers: tuple[str, ...]) -> ClientRecord | None:
        with self.lock:
            item = self.items.get(name)
            if item is None or item.status != "active" or item.record is None:
                return None
            record = replace(item.record, consumers=consumers)
            self.items[name] = replace(item, record=record)
            return record

    def request_rotation(self, name: str, now: float, min_gap: float) -> float | None:
        with self.lock:
            if name != ADMIN and name not in self.items:
                return None
            last = self.rotation_requests.get(name)
            if last is not None and last > now - min_gap:
                return last + min_gap - now
            self.rotation_requests[name] = now
            return 0.0

    def request_repair(self, name: str, now: float, min_gap: float, lease: float) -> float | None:
        with self.lock:
            if name != ADMIN and name not in self.items:
                return None
            last, until = self.repair_requests.get(name, (None, None))
            waits = [w for w in ((last + min_gap - now) if last is not None else 0, (until or now) - now) if w > 0]
            if waits:
                return max(waits)
            self.repair_requests[name] = (now, now + lease)
            return 0.0

    def finish_repair(self, name: str, at: float) -> None:
        with self.lock:
            if self.repair_requests.get(name, (None, None))[0] == at:
                self.repair_requests[name] = (at, None)

    def forget_rotation_request(self, name: str, at: float) -> None:
        with self.lock:
            if self.rotation_requests.get(name) == at:
                del self.rotation_requests[name]

    def mark_deleting(self, name: str) -> bool:
        with self.lock:
            item = self.items.get(name)
            if item is None or item.status not in ("active", "deleting"):
                return False
            self.items[name] = replace(item, status="deleting")
            return True

    def delete(self, name: str) -> None:
        with self.lock:
            item = self.items.get(name)
            if item is not None and item.status == "deleting":
                del self.items[name]
                self.rotation_requests.pop(name, None)


class FakeRotationFailures:
    """The recorded rotation failures, one per client, with DynamoRotationFailures' conditions."""

    def __init__(self) -> None:
        self.failures: dict[str, RotationFailure] = {}

    def record(self, failure: RotationFailure) -> None:
        self.failures[failure.client] = failure

    def list(self) -> list[RotationFailure]:
        return list(self.failures.values())

    def mark_seen(self, failure: RotationFailure, now: float) -> bool:
        current = self.failures.get(failure.client)
        if current is None or (current.version, current.failed_at) != (failure.version, failure.failed_at):
            return False
        self.failures[failure.client] = replace(current, seen_at=now)
        return True

    def clear(self, client: str, version: str) -> None:
        current = self.failures.get(client)
        if current is not None and current.version == version:
            del self.failures[client]


@dataclass
class FakeSecret:
    arn: str
    tags: dict[str, str]
    kms_key_id: str
    created: float
    # version id -> (credentials, stages)
    versions: dict[str, tuple[ClientCredentials | None, list[str]]] = field(default_factory=dict)
    deleted: bool = False
    recovery_window_days: int | None = None
    rotation_arn: str | None = None
    rotation_days: int | None = None
    last_rotated: float | None = None
    idempotency_key: str = ""


class FakeSecretStore:
    """Secrets Manager in memory, with its stage rules: one version per stage, AWSPREVIOUS follows
    AWSCURRENT, a started rotation adds a value-less AWSPENDING version, a rotation in progress
    (AWSPENDING off AWSCURRENT) refuses another; scheduled deletion, rotation settings."""

    def __init__(self, clock: Callable[[], float] = lambda: 1_000_000.0) -> None:
        self.secrets: dict[str, FakeSecret] = {}
        self.clock = clock
        self.calls: list[tuple[str, str]] = []
        self.rotations_started: list[tuple[str, str | None]] = []
        self.lock = threading.Lock()
        self.changed: dict[str, float] = {}
        self.rotation_count = 0
        self.policies: dict[str, str] = {}

    def _stage(self, secret: FakeSecret, stage: str) -> tuple[str, ClientCredentials | None] | None:
        for version, (credentials, stages) in secret.versions.items():
            if stage in stages:
                return version, credentials
        return None

    def read(self, secret_id: str, stage: str, *, fresh: bool = False) -> ClientCredentials | None:
        secret = self.secrets.get(secret_id)
        if secret is None or secret.deleted:
            return None
        found = self._stage(secret, stage)
        return replace(found[1], version_id=found[0]) if found and found[1] else None

    def create(self, name, credentials, *, kms_key_id, tags, idempotency_key):
        with self.lock:
            self.calls.append(("create", name))
            if name in self.secrets:
                return self.secrets[name].arn
            secret = FakeSecret(
                arn=f"arn:aws:secretsmanager:us-east-1:123456789012:secret:{name}-AbCdEf",
                tags=dict(tags),
                kms_key_id=kms_key_id,
                created=self.clock(),
                idempotency_key=idempotency_key,
            )
            secret.versions[idempotency_key] = (credentials, ["AWSCURRENT"])
            self.secrets[name] = secret
            return secret.arn

    def describe(self, secret_id: str):
        secret = self.secrets.get(secret_id)
        if secret is None:
            return None
        next_rotation = None
        if secret.rotation_days and secret.last_rotated:
            next_rotation = secret.last_rotated + secret.rotation_days * 86400
        return SecretDescription(
            arn=secret.arn,
            name=secret_id,
            tags=dict(secret.tags),
            rotation_enabled=secret.rotation_arn is not None,
            versions={version: list(stages) for version, (_, stages) in secret.versions.items()},
            last_rotated=secret.last_rotated,
            next_rotation=next_rotation,
            created=secret.created,
            deleted=secret.deleted,
            last_changed=self.changed.get(secret_id, secret.created),
        )

    def put_current(self, secret_id: str, credentials: ClientCredentials, version_id: str) -> None:
        self.calls.append(("put_current", secret_id))
        secret = self.secrets[secret_id]
        for version, (value, stages) in list(secret.versions.items()):
            if "AWSPREVIOUS" in stages:
                stages.remove("AWSPREVIOUS")
            if "AWSCURRENT" in stages:
                stages.remove("AWSCURRENT")
                stages.append("AWSPREVIOUS")
            secret.versions[version] = (value, stages)
        secret.versions[version_id] = (credentials, ["AWSCURRENT"])

    def restore(self, secret_id: str) -> None:
        self.calls.append(("restore", secret_id))
        secret = self.secrets[secret_id]
        secret.deleted = False
        secret.recovery_window_days = None

    def resource_policy(self, secret_id: str) -> str | None:
        return self.policies.get(secret_id)

    def put_resource_policy(self, secret_id: str, policy: str) -> None:
        self.calls.append(("put_resource_policy", secret_id))
        self.policies[secret_id] = policy

    def configure_rotation(self, secret_id: str, rotation_function_arn: str, interval_days: int) -> None:
        self.calls.append(("configure_rotation", secret_id))
        secret = self.secrets[secret_id]
        secret.rotation_arn = rotation_function_arn
        secret.rotation_days = interval_days

    def schedule_deletion(self, secret_id: str, recovery_window_days: int) -> None:
        self.calls.append(("schedule_deletion", secret_id))
        secret = self.secrets[secret_id]
        if secret.deleted:
            raise errors.StoreUnavailable("scheduling the secret's deletion failed: InvalidRequestException")
        secret.deleted = True
        secret.recovery_window_days = recovery_window_days

    def _touch(self, secret_id: str) -> None:
        self.changed[secret_id] = self.clock()

    @staticmethod
    def _drop_label(secret: FakeSecret, stage: str) -> None:
        for version, (value, stages) in list(secret.versions.items()):
            secret.versions[version] = (value, [s for s in stages if s != stage])

    def read_version(self, secret_id: str, version_id: str) -> ClientCredentials | None:
        secret = self.secrets.get(secret_id)
        entry = secret.versions.get(version_id) if secret is not None else None
        return replace(entry[0], version_id=version_id) if entry is not None and entry[0] else None

    def put_pending(self, secret_id: str, credentials: ClientCredentials, version_id: str) -> None:
        self.calls.append(("put_pending", secret_id))
        secret = self.secrets[secret_id]
        value, stages = secret.versions.get(version_id, (None, []))
        if value is not None and value != credentials:
            raise errors.StoreUnavailable("storing the pending client secret failed: ResourceExistsException")
        self._drop_label(secret, "AWSPENDING")
        stages = secret.versions.get(version_id, (None, []))[1]
        secret.versions[version_id] = (credentials, [*stages, "AWSPENDING"])
        self._touch(secret_id)

    def move_stage(self, secret_id: str, stage: str, to_version: str, from_version: str | None) -> None:
        self.calls.append((f"move_stage {stage}", secret_id))
        secret = self.secrets[secret_id]
        holder = next((v for v, (_, stages) in secret.versions.items() if stage in stages), None)
        if holder is not None and holder != from_version:
            raise errors.StoreUnavailable(f"moving {stage} failed: InvalidParameterException")
        if stage == "AWSCURRENT" and from_version is not None:
            self._drop_label(secret, "AWSPREVIOUS")
            value, stages = secret.versions[from_version]
            secret.versions[from_version] = (value, [*stages, "AWSPREVIOUS"])
        self._drop_label(secret, stage)
        value, stages = secret.versions[to_version]
        secret.versions[to_version] = (value, [*stages, stage])
        self._touch(secret_id)

    def remove_stage(self, secret_id: str, stage: str, from_version: str) -> None:
        self.calls.append((f"remove_stage {stage}", secret_id))
        secret = self.secrets[secret_id]
        value, stages = secret.versions[from_version]
        if stage not in stages:
            raise errors.StoreUnavailable(f"removing {stage} failed: InvalidParameterException")
        secret.versions[from_version] = (value, [s for s in stages if s != stage])
        self._touch(secret_id)

    def start_rotation(self, secret_id: str, rotation_function_arn: str | None) -> None:
        self.rotations_started.append((secret_id, rotation_function_arn))
        secret = self.secrets[secret_id]
        description = self.describe(secret_id)
        if description is not None and description.rotation_in_progress:
            raise errors.StoreUnavailable("starting a rotation failed: InvalidRequestException")
        self.rotation_count += 1
        self._drop_label(secret, "AWSPENDING")
        secret.versions[f"rotation-{self.rotation_count}"] = (None, ["AWSPENDING"])
        secret.rotation_arn = rotation_function_arn or secret.rotation_arn
        secret.last_rotated = self.clock()

    def cancel_rotation(self, secret_id: str) -> None:
        self.calls.append(("cancel_rotation", secret_id))
        secret = self.secrets[secret_id]
        if secret.deleted or secret.rotation_arn is None:
            raise errors.StoreUnavailable("cancelling a rotation failed: InvalidRequestException")
        secret.rotation_arn = None

    def pending_version(self, secret_id: str) -> str | None:
        description = self.describe(secret_id)
        return description.version_at("AWSPENDING") if description is not None else None


@dataclass
class FakeZusAdmin:
    """Zus's admin API in memory. ``fail`` maps an operation to the errors its next calls raise;
    ``after`` maps an operation to a hook run after it changed state (e.g. to drop its answer)."""

    clock: Callable[[], float] = lambda: 1_000_000.0
    admin_token: str = "admin-token"
    roles: dict[str, str] = field(
        default_factory=lambda: {"Builder Admin": "role-builder-admin", "Care Team User": "role-care-team"}
    )
    clients: dict[str, tuple[AppClient, str]] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    fail: dict[str, list[Exception]] = field(default_factory=dict)
    after: dict[str, Callable[[], None]] = field(default_factory=dict)
    delay: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)
    counter: int = 0

    def _enter(self, operation: str, bearer: str, admin: bool = True) -> None:
        with self.lock:
            self.calls.append(operation)
            failures = self.fail.get(operation)
            failure = failures.pop(0) if failures else None
        if failure is not None:
            raise failure
        if admin and bearer != self.admin_token:
            raise errors.ZusForbidden(operation, 403, "Forbidden")

    def find_role(self, name: str, bearer: str) -> Role:
        self._enter("role lookup", bearer)
        if name not in self.roles:
            raise errors.UnknownRole(name, list(self.roles))
        return Role(id=self.roles[name], name=name)

    def add_client(self, name: str, role_id: str, created_at: int) -> AppClientSecret:
        with self.lock:
            self.counter += 1
            client = AppClient(
                id=f"app-{self.counter}",
                client_id=f"cid-{self.counter}",
                name=name,
                role_id=role_id,
                created_at=created_at,
                updated_at=created_at,
            )
            secret = f"secret-{self.counter}"
            self.clients[client.id] = (client, secret)
        return AppClientSecret(client, secret)

    def create_app_client(self, name: str, role_id: str, bearer: str) -> AppClientSecret:
        self._enter("create app client", bearer)
        if self.delay:
            time.sleep(self.delay)
        created = self.add_client(name, role_id, int(self.clock()))
        hook = self.after.get("create app client")
        if hook is not None:
            hook()
        return created

    def list_app_clients(self, bearer: str) -> list[AppClient]:
        self._enter("list app clients", bearer, admin=False)
        return [client for client, _ in self.clients.values()]

    def get_app_client(self, app_client_id: str, bearer: str) -> AppClient:
        self._enter("get app client", bearer, admin=False)
        if app_client_id not in self.clients:
            raise errors.ZusNotFound("get app client", 404, "Not Found")
        return self.clients[app_client_id][0]

    def delete_app_client(self, app_client_id: str, bearer: str) -> None:
        self._enter("delete app client", bearer)
        if self.clients.pop(app_client_id, None) is None:
            raise errors.ZusNotFound("delete app client", 404, "Not Found")

    def rotate_secret(self, app_client_id: str, bearer: str) -> AppClientSecret:
        self._enter("rotate secret", bearer)
        with self.lock:
            client, _ = self.clients[app_client_id]
            self.counter += 1
            secret = f"rotated-{self.counter}"
            self.clients[app_client_id] = (client, secret)
        return AppClientSecret(client, secret)

    def named(self, name: str) -> list[AppClient]:
        return [client for client, _ in self.clients.values() if client.name == name]

    def secret_of(self, app_client_id: str) -> str:
        return self.clients[app_client_id][1]


@dataclass
class FakeTokenIssuer:
    """Token vending's issue_with against FakeZusAdmin: a token only for the client's current secret,
    cached in ``tokens`` when given (with the secret version that minted it); ``refusals`` makes it
    refuse that many requests first (a secret still propagating at Zus)."""

    zus: FakeZusAdmin
    issued: list[str] = field(default_factory=list)
    refusals: int = 0
    attempts: list[str] = field(default_factory=list)
    tokens: FakeTokenTable | None = None

    def issue_with(self, client: str, credentials: ClientCredentials) -> CachedToken:
        self.attempts.append(client)
        if self.refusals > 0:
            self.refusals -= 1
            raise errors.ZusCredentialsRefused("token request", 401, "invalid_client")
        current = self.zus.clients.get(credentials.app_client_id)
        if current is None or current[1] != credentials.client_secret:
            raise errors.ZusCredentialsRefused("token request", 401, "invalid_client")
        self.issued.append(client)
        token = CachedToken(
            f"token-for-{client}",
            "Bearer",
            self.zus.clock() + 3600,
            credentials.app_client_id,
            secret_version=credentials.version_id,
        )
        if self.tokens is not None:
            self.tokens.put_token(client, token, None)
        return token


@dataclass
class FakeAdminTokens:
    """The bootstrap admin's bearer token: FakeZusAdmin's admin token unless a test swaps ``token``
    (e.g. for a Care Team User's) or removes the admin's secret (``missing``)."""

    zus: FakeZusAdmin
    token: str | None = None
    missing: bool = False
    taken: int = 0

    def bearer(self) -> str:
        if self.missing:
            raise errors.ResourceNotFound(f"no managed app client named {ADMIN!r}")
        self.taken += 1
        return self.token or self.zus.admin_token


class FakeDeployment:
    """One deployment's fakes wired together: Zus with its admin, the secret store, the token table,
    token vending's issue_with, metrics, and a clock, for stage "test" (``NAMING``)."""

    def __init__(self) -> None:
        self.clock = FakeClock()
        self.zus = FakeZusAdmin(clock=self.clock)
        self.secrets = FakeSecretStore(self.clock)
        self.tokens = FakeTokenTable()
        self.issuer = FakeTokenIssuer(self.zus, tokens=self.tokens)
        self.admin_tokens = FakeAdminTokens(self.zus)
        self.failures = FakeRotationFailures()
        self.metrics = FakeMetrics()
        self.naming = NAMING

    def add_client(self, name: str, *, tags: dict[str, str] | None = None) -> ClientCredentials:
        """A client made at Zus and stored as its secret (managed tags unless ``tags``), as provisioning
        leaves it; the bootstrap admin's as an operator stores it: without tags."""
        created = self.zus.add_client(name, "role-builder-admin", int(self.clock()))
        credentials = ClientCredentials(
            name, created.app_client.id, created.app_client.client_id, created.client_secret
        )
        default_tags = {} if name == ADMIN else self.naming.tags(name)
        self.secrets.create(
            self.naming.secret_id(name),
            credentials,
            kms_key_id="",
            tags=default_tags if tags is None else tags,
            idempotency_key=f"{name}-v1",
        )
        return credentials


# --- scheduled work -----------------------------------------------------------------------------


class FakeDueIndex:
    """Due marks by (kind, client), with DynamoDueIndex's conditions; ``read`` counts the items ``due``
    read, ``unlisted`` the records ``backfill`` would find (a page at a time)."""

    def __init__(self) -> None:
        self.marks: dict[tuple[str, str], DueMark] = {}
        self.read = 0
        self.unlisted: list[str] = []

    def put(self, kind: str, client: str, due_at: float | None, last_requested_at: float = 0.0) -> WorkItem:
        self.marks[(kind, client)] = DueMark(kind if due_at is not None else None, due_at, last_requested_at)
        return WorkItem(kind, client, due_at or 0.0)

    def due(self, kind: str, until: float, limit: int) -> list[WorkItem]:
        found = sorted(
            (mark.due_at, client)
            for (of, client), mark in self.marks.items()
            if of == kind and mark.kind == kind and mark.due_at is not None and mark.due_at <= until
        )[:limit]
        self.read += len(found)
        return [WorkItem(kind, client, due_at) for due_at, client in found]

    def claim(self, item: WorkItem, until: float) -> WorkItem | None:
        claimed = WorkItem(item.kind, item.client, round(until, 3))
        return claimed if self.reschedule(item, claimed.due_at) else None

    def mark(self, kind: str, client: str) -> DueMark | None:
        return self.marks.get((kind, client))

    def token_stored(self, client: str, due_at: float) -> None:
        """FakeTokenTable.put_token: the item's next refresh moves with the token."""
        mark = self.marks.get(("refresh", client), DueMark(None, None))
        self.marks[("refresh", client)] = replace(mark, due_at=due_at)

    def token_used(self, client: str, now: float) -> None:
        """FakeTokenTable.mark_requested: a client in use is in the index."""
        mark = self.marks.get(("refresh", client), DueMark(None, None))
        self.marks[("refresh", client)] = replace(mark, kind="refresh", last_requested_at=now)

    def reschedule(self, item: WorkItem, at: float) -> bool:
        mark = self.marks.get((item.kind, item.client))
        if mark is None or not mark.holds(item):
            return False
        self.marks[(item.kind, item.client)] = replace(mark, due_at=at)
        return True

    def delist(self, item: WorkItem, idle_before: float) -> bool:
        mark = self.marks.get((item.kind, item.client))
        if mark is None or not mark.holds(item) or mark.last_requested_at >= idle_before:
            return False
        self.marks[(item.kind, item.client)] = replace(mark, kind=None)
        return True

    def enlist(self, kind: str, client: str, at: float) -> bool:
        mark = self.marks.get((kind, client))
        if mark is not None and mark.kind is not None:
            return False
        self.marks[(kind, client)] = DueMark(kind, at, mark.last_requested_at if mark else 0.0)
        return True

    def backfill(self, at: float, page_size: int) -> int:
        page, self.unlisted = self.unlisted[:page_size], self.unlisted[page_size:]
        return sum(self.enlist("rotation", client, at) for client in page)


class FakeWorkQueue:
    """The work queue: every item sent, in order; ``refuse`` names clients whose messages are not taken."""

    def __init__(self) -> None:
        self.sent: list[WorkItem] = []
        self.refuse: set[str] = set()

    def send(self, items: Sequence[WorkItem]) -> list[WorkItem]:
        unsent = [item for item in items if item.client in self.refuse]
        self.sent.extend(item for item in items if item.client not in self.refuse)
        return unsent


class FakePageTokens:
    """Page tokens sealed by a prefix: ``sealed:<position>``; anything else was not issued here."""

    def seal(self, position: str) -> str:
        return f"sealed:{position}"

    def open(self, token: str) -> str:
        if not token.startswith("sealed:"):
            raise errors.InvalidRequest("nextToken was not issued by this service")
        return token.removeprefix("sealed:")
