"""The token vendor's decisions, against in-memory fakes of the token table, secrets and Zus."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest
from fakes import NAMING, FakeClock, FakeMetrics, FakeSecretReader, FakeTokenEndpoint, FakeTokenTable

from zus_m2m import errors
from zus_m2m.access import AccessPolicy, Caller
from zus_m2m.ports import Runtime
from zus_m2m.tokens import budget
from zus_m2m.tokens.policy import VendingPolicy
from zus_m2m.tokens.pre_refresh import TokenPreRefresh
from zus_m2m.tokens.vendor import TokenVendor
from zus_m2m.values import (
    AWSCURRENT,
    AWSPENDING,
    AWSPREVIOUS,
    CachedToken,
    ClientCredentials,
    ClientRecord,
    TokenState,
    ZusQuota,
    fingerprint,
)
from zus_m2m.wiring import token_vendor

CLIENT = "billing"
SECRET = NAMING.secret_id(CLIENT)
CONSUMER_ROLE = "arn:aws:iam::111122223333:role/billing-service"
CALLER = Caller("arn:aws:sts::111122223333:assumed-role/billing-service/task-1", "111122223333")
STRANGER = Caller("arn:aws:sts::111122223333:assumed-role/reporting/task-9", "111122223333")
ADMIN_USER = "arn:aws:iam::111122223333:user/platform-admin"
ADMIN_CALLER = Caller(ADMIN_USER, "111122223333")
ACCESS = AccessPolicy.of([ADMIN_USER])
ADMIN = NAMING.admin_client_name


def credentials(secret: str, app_client_id: str = "app-1") -> ClientCredentials:
    """A version of the secret as read from the store: secret ``s-x`` is version ``v-x``."""
    return ClientCredentials(
        name=CLIENT,
        app_client_id=app_client_id,
        client_id="cid-1",
        client_secret=secret,
        version_id=secret.replace("s-", "v-", 1),
    )


def record(
    name: str = CLIENT, app_client_id: str = "app-1", consumers: tuple[str, ...] = (CONSUMER_ROLE,)
) -> ClientRecord:
    return ClientRecord(name, app_client_id, "cid-1", "role-1", "Builder Admin", "arn:secret", 0, consumers)


class World:
    def __init__(self, policy: VendingPolicy | None = None) -> None:
        self.clock = FakeClock()
        self.table = FakeTokenTable()
        self.secrets = FakeSecretReader()
        self.endpoint = FakeTokenEndpoint(valid_secrets={"s-current"})
        self.metrics = FakeMetrics()
        self.policy = policy or VendingPolicy(refresh_margin=300, budget_per_hour=100, wait_seconds=2.0)
        self.secrets.versions[(SECRET, AWSCURRENT)] = credentials("s-current")
        self.table.records[CLIENT] = record()

    def vendor(self) -> TokenVendor:
        runtime = Runtime(self.metrics, clock=self.clock, sleep=self.clock.sleep)
        return token_vendor(self.table, self.secrets, self.endpoint, NAMING, ACCESS, self.policy, runtime)

    def pre_refresh(self, horizon: float) -> TokenPreRefresh:
        """The pre-refresh of one client at a time, in a new container (the worker's)."""
        return TokenPreRefresh(self.vendor().flight, horizon=horizon, clock=self.clock)

    def stored(self) -> TokenState:
        return self.table.states.get(CLIENT, TokenState())


@pytest.fixture
def world() -> World:
    return World()


def test_a_miss_fetches_once_then_memory_serves(world: World) -> None:
    vendor = world.vendor()

    first = vendor.vend(CALLER, CLIENT, min_ttl=60)
    second = vendor.vend(CALLER, CLIENT, min_ttl=60)

    assert first.access_token == second.access_token == "token-1"
    assert world.endpoint.calls == ["s-current"]
    assert world.stored().token == first
    assert world.stored().lease_owner is None
    assert world.metrics.counts["TokenMiss"] == 1
    assert (first.source, second.source) == ("zus", "memory")


def test_another_container_reads_the_table_tier(world: World) -> None:
    world.vendor().vend(CALLER, CLIENT, min_ttl=60)

    token = world.vendor().vend(CALLER, CLIENT, min_ttl=60)

    assert token.access_token == "token-1"
    assert len(world.endpoint.calls) == 1
    assert token.source == "table"


def test_a_token_with_less_than_min_ttl_left_is_replaced(world: World) -> None:
    vendor = world.vendor()
    vendor.vend(CALLER, CLIENT, min_ttl=60)
    world.clock.now += 3600 - 100  # 100 s left

    token = vendor.vend(CALLER, CLIENT, min_ttl=600)

    assert token.access_token == "token-2"
    assert token.seconds_left(world.clock.now) == pytest.approx(3600)


def test_refresh_ahead_renews_the_token_in_the_call_that_finds_it_inside_the_margin(world: World) -> None:
    # Given a token inside the refresh margin but with more than minTtl left
    vendor = world.vendor()
    vendor.vend(CALLER, CLIENT, min_ttl=60)
    world.clock.now += 3600 - 200

    # When a caller asks
    token = vendor.vend(CALLER, CLIENT, min_ttl=60)

    # Then it is served the token it found, renewed before the call returned (nothing is left for
    # after the answer: Lambda freezes the environment then), and the lease is given back
    assert token.access_token == "token-1"
    assert len(world.endpoint.calls) == 2
    stored = world.stored().token
    assert stored is not None
    assert stored.access_token == "token-2"
    assert world.stored().lease_owner is None
    assert vendor.vend(CALLER, CLIENT, min_ttl=60).access_token == "token-2"


def test_a_failed_refresh_ahead_still_serves_the_token_it_found(world: World) -> None:
    vendor = world.vendor()
    vendor.vend(CALLER, CLIENT, min_ttl=60)
    world.clock.now += 3600 - 200
    world.endpoint.valid_secrets.clear()  # Zus now refuses the client's credentials

    token = vendor.vend(CALLER, CLIENT, min_ttl=60)

    assert token.access_token == "token-1"
    assert len(world.endpoint.calls) > 1


def test_tokens_that_live_shorter_than_the_margin_are_renewed_at_half_their_life(world: World) -> None:
    # Given tokens that live 60 s, shorter than the 300 s refresh margin
    world.endpoint.lifetime = 60
    vendor = world.vendor()
    vendor.vend(CALLER, CLIENT, min_ttl=10)

    # When callers are served through the token's life
    for _ in range(50):
        world.clock.now += 1.0
        vendor.vend(CALLER, CLIENT, min_ttl=0)

    # Then the token was renewed once its life was half over, and then again: not on every call
    assert len(world.endpoint.calls) == 2


def test_refresh_ahead_renews_once_however_many_callers_of_many_containers_find_the_token_due(
    world: World,
) -> None:
    # Given three containers that read the record and the token just before it enters the margin
    containers = [world.vendor() for _ in range(3)]
    for vendor in containers:
        vendor.vend(CALLER, CLIENT, min_ttl=60)
    world.clock.now += 3600 - 301
    for vendor in containers:
        vendor.vend(CALLER, CLIENT, min_ttl=60)

    # When, within the revalidation window, each finds the token it remembers inside the margin
    world.clock.now += 2
    for _ in range(5):
        for vendor in containers:
            vendor.vend(CALLER, CLIENT, min_ttl=60)

    # Then one of them renewed it, and the others took the renewed token from the table
    assert len(world.endpoint.calls) == 2
    assert all(vendor.vend(CALLER, CLIENT, min_ttl=60).access_token == "token-2" for vendor in containers)


def test_a_container_that_reads_another_containers_recent_mark_does_not_write_its_own(world: World) -> None:
    world.vendor().vend(CALLER, CLIENT, min_ttl=60)
    marked = world.clock.now

    world.clock.now += world.policy.mark_interval - 1
    other = world.vendor()
    other.vend(CALLER, CLIENT, min_ttl=60)  # a table-tier hit: its read shows the mark
    assert world.stored().last_requested_at == marked

    world.clock.now += world.policy.revalidate_seconds  # the record and the mark, read again
    other.vend(CALLER, CLIENT, min_ttl=60)
    assert world.stored().last_requested_at == world.clock.now


def test_the_in_use_mark_is_written_in_the_call_once_a_mark_interval(world: World) -> None:
    vendor = world.vendor()
    vendor.vend(CALLER, CLIENT, min_ttl=60)
    assert world.stored().last_requested_at == world.clock.now  # written before the call returned

    marked = world.clock.now
    world.clock.now += world.policy.mark_interval - 1
    vendor.vend(CALLER, CLIENT, min_ttl=60)
    assert world.stored().last_requested_at == marked
    world.clock.now += 1
    vendor.vend(CALLER, CLIENT, min_ttl=60)
    assert world.stored().last_requested_at == world.clock.now


def test_containers_that_have_not_read_each_others_marks_write_one_mark_an_interval() -> None:
    # Given two containers serving the client from memory (reading nothing), each marked it in its first call
    world = World(VendingPolicy(revalidate_seconds=3600))
    first, second = world.vendor(), world.vendor()
    first.vend(CALLER, CLIENT, min_ttl=60)
    second.vend(CALLER, CLIENT, min_ttl=60)
    marked = world.stored().last_requested_at

    # When an interval later both find their own marks old, a moment apart
    world.clock.now += world.policy.mark_interval
    first.vend(CALLER, CLIENT, min_ttl=60)
    first_mark = world.stored().last_requested_at
    world.clock.now += 1
    second.vend(CALLER, CLIENT, min_ttl=60)

    # Then the first wrote its mark, and the second's conditional write found it and wrote nothing
    assert first_mark == marked + world.policy.mark_interval
    assert world.stored().last_requested_at == first_mark


def test_a_caller_waits_for_the_lease_holder_instead_of_calling_zus(world: World) -> None:
    # Given another container holds a live lease and stores a token after a few polls
    world.table.acquire_lease(CLIENT, "other", world.clock.now, world.clock.now + 30)
    polls = []

    def other_container_finishes(client: str) -> None:
        polls.append(client)
        if len(polls) == 4:
            world.table.put_token(client, CachedToken("theirs", "Bearer", world.clock.now + 3600, "app-1"), "other")

    world.table.on_get = other_container_finishes

    token = world.vendor().vend(CALLER, CLIENT, min_ttl=60)

    assert token.access_token == "theirs"
    assert world.endpoint.calls == []
    assert world.metrics.counts["LeaseWait"] >= 1


def test_a_lease_waiter_leaves_the_in_use_mark_to_the_holder(world: World) -> None:
    # Given another container fetching the client's first token (the holder marks it in its own call)
    _another_container_fetching(world, takes=0.1, last_took=0.0)

    # When a caller of this container waits for it, and another is served from memory after
    vendor = world.vendor()
    assert vendor.vend(CALLER, CLIENT, min_ttl=60).source == "lease-wait"
    world.clock.now += 1
    assert vendor.vend(CALLER, CLIENT, min_ttl=60).source == "memory"

    # Then this container wrote no mark: the waiter's answer waited for no write (nor did the next call)
    assert world.stored().last_requested_at == 0


def _another_container_fetching(world: World, takes: float, last_took: float, read_takes: float = 0.0) -> list[float]:
    """Another container takes the lease now and stores its token ``takes`` seconds later; the item
    says the last holder took ``last_took``; a read takes ``read_takes``. Returns when each read began."""
    started = world.clock.now
    world.table.acquire_lease(CLIENT, "other", started, started + world.policy.lease_seconds)
    world.table.states[CLIENT] = replace(world.stored(), fetch_seconds=last_took)
    reads: list[float] = []

    def read(client: str) -> None:
        reads.append(world.clock.now)
        if world.clock.now >= started + takes and world.stored().lease_owner == "other":
            world.table.put_token(client, CachedToken("theirs", "Bearer", world.clock.now + 3600, "app-1"), "other")
        world.clock.now += read_takes

    world.table.on_get = read
    return reads


@pytest.mark.parametrize("read_takes", [0.0, 0.01])
def test_a_waiter_reads_the_item_from_shortly_before_the_holder_should_be_done(world: World, read_takes: float) -> None:
    # Given another container fetching, as long as its predecessor took (0.4 s); each read takes read_takes
    started = world.clock.now
    reads = _another_container_fetching(world, takes=0.4, last_took=0.4, read_takes=read_takes)

    # When a caller of this container asks
    token = world.vendor().vend(CALLER, CLIENT, min_ttl=60)

    # Then after its first read it read the item every poll (however long a read takes) from early_polls
    # polls before the holder should be done, got the token at the read when it was there, and asked Zus
    # nothing
    assert token.access_token == "theirs"
    assert token.source == "lease-wait"
    poll = world.policy.wait_poll
    expected = [started + 0.4 - poll * n for n in range(world.policy.early_polls, -1, -1)]
    assert reads == [started, *(pytest.approx(at) for at in expected)]
    assert world.endpoint.calls == []


@pytest.mark.parametrize(
    ("takes", "last_took", "most"),
    [
        (0.5, 0.4, 10),  # slower than its predecessor: the first read, then from 0.3 s to 0.5 s
        (0.31, 0.4, 3),  # faster than its predecessor: the first read, then at 0.3 s and 0.325 s
        (0.31, 0.0, 14),  # a client's first fetch (no holder's time known): the first read, then every poll
    ],
)
def test_a_waiter_gets_the_token_within_one_poll_of_its_write(
    world: World, takes: float, last_took: float, most: int
) -> None:
    started = world.clock.now
    reads = _another_container_fetching(world, takes=takes, last_took=last_took)

    world.vendor().vend(CALLER, CLIENT, min_ttl=60)

    # Then the token was taken within one poll of its write, in a bounded number of reads
    assert started + takes <= world.clock.now <= started + takes + world.policy.wait_poll + 1e-9
    assert len(reads) <= most


@pytest.mark.parametrize(("last_took", "most"), [(0.4, 17), (0.0, 47)])
def test_a_waiters_reads_are_bounded_however_long_the_holder_takes(last_took: float, most: int) -> None:
    # (0.0: no holder's fetch time known yet, a client's first fetch)
    policy = VendingPolicy()
    state = TokenState(lease_owner="other", lease_until=1000.0 + policy.lease_seconds, fetch_seconds=last_took)

    waited, reads = 0.0, 0
    for pause in policy.waiting(state, now=1000.0):
        if waited + pause > policy.wait_seconds:
            break
        waited, reads = waited + pause, reads + 1

    assert reads <= most


def test_the_lease_holder_keeps_its_fetch_time_for_the_next_waiters(world: World) -> None:
    world.endpoint.on_call = lambda: world.clock.sleep(0.3)  # Zus answers in 0.3 s

    world.vendor().vend(CALLER, CLIENT, min_ttl=60)

    assert world.stored().fetch_seconds == pytest.approx(0.3)
    assert world.metrics.durations["TokenFetchTime"] == [pytest.approx(0.3)]


def test_refresh_ahead_reads_the_item_again_only_once_another_containers_renewal_should_be_done(
    world: World,
) -> None:
    # Given a token in memory inside its refresh margin, and another container renewing it (0.4 s)
    vendor = world.vendor()
    vendor.vend(CALLER, CLIENT, min_ttl=60)
    world.clock.now += 3600 - 200
    reads = _another_container_fetching(world, takes=10.0, last_took=0.4)

    vendor.vend(CALLER, CLIENT, min_ttl=60)  # reads the item (its bound passed), sees the renewal under way
    seen = len(reads)

    # When callers are served from memory meanwhile
    for _ in range(10):
        world.clock.now += 0.01
        assert vendor.vend(CALLER, CLIENT, min_ttl=60).source == "memory"

    # Then none of them read the item; the first call after the renewal should be done does
    assert len(reads) == seen
    world.clock.now += 0.4
    vendor.vend(CALLER, CLIENT, min_ttl=60)
    assert len(reads) == seen + 1


def test_a_renewal_tells_the_secret_store_which_version_minted_the_token_it_renews(world: World) -> None:
    # Given a token minted with the current secret (version v-current), due for its pre-refresh
    world.vendor().vend(CALLER, CLIENT, min_ttl=60)
    world.clock.now += 3600 - 200

    assert world.pre_refresh(horizon=90).refresh(CLIENT)

    # Then the renewal's read named that version (the store may answer it from its cache)
    assert world.secrets.known_versions[-1] == "v-current"


def test_a_dead_lease_holder_does_not_block_for_longer_than_its_lease(world: World) -> None:
    world.table.acquire_lease(CLIENT, "crashed", world.clock.now - 40, world.clock.now - 10)

    token = world.vendor().vend(CALLER, CLIENT, min_ttl=60)

    assert token.access_token == "token-1"
    assert world.stored().lease_owner is None


@contextlib.contextmanager
def failing_writes(table: FakeTokenTable, *names: str) -> Iterator[None]:
    """Meanwhile the table's ``names`` writes fail, as the adapter's do when DynamoDB fails every attempt."""

    def fail(*args: object, **kwargs: object) -> None:
        raise errors.StoreUnavailable("storing a token failed: ThrottlingException")

    for name in names:
        setattr(table, name, fail)
    try:
        yield
    finally:
        for name in names:
            delattr(table, name)


def test_a_holder_whose_store_fails_gives_the_lease_back(world: World) -> None:
    world.vendor().vend(CALLER, CLIENT, min_ttl=60)
    world.clock.now += 3500  # inside the margin

    with failing_writes(world.table, "put_token"), pytest.raises(errors.StoreUnavailable):
        world.pre_refresh(horizon=60).refresh(CLIENT)

    assert world.stored().lease_owner is None  # another container need not wait the lease out
    assert world.pre_refresh(horizon=60).refresh(CLIENT) is True


def test_a_containers_own_lease_left_by_its_failed_call_holds_it_back_from_nothing(world: World) -> None:
    # Given a container whose renewal could neither store its token nor give its lease back (DynamoDB
    # failing every write; a lease write retried after its first attempt landed leaves the same)
    vendor = world.vendor()
    vendor.vend(CALLER, CLIENT, min_ttl=60)
    world.clock.now += 3500
    pre_refresh = TokenPreRefresh(vendor.flight, horizon=60, clock=world.clock)
    with failing_writes(world.table, "put_token", "release_lease"), pytest.raises(errors.StoreUnavailable):
        pre_refresh.refresh(CLIENT)
    assert world.stored().lease_held(world.clock.now)

    # Then its next renewal takes its own lease again at once
    assert pre_refresh.refresh(CLIENT) is True

    # ... and so does its next vend call after one that failed so (each asks more than the token left)
    world.clock.now += 20
    with failing_writes(world.table, "put_token", "release_lease"), pytest.raises(errors.StoreUnavailable):
        vendor.vend(CALLER, CLIENT, min_ttl=3590)
    assert world.stored().lease_held(world.clock.now)
    world.clock.now += 20
    assert vendor.vend(CALLER, CLIENT, min_ttl=3590).access_token == "token-5"


def test_a_live_lease_that_never_delivers_ends_in_503_after_the_wait(world: World) -> None:
    world.table.acquire_lease(CLIENT, "slow", world.clock.now, world.clock.now + 30)
    started = world.clock.now

    with pytest.raises(errors.TemporarilyUnavailable) as caught:
        world.vendor().vend(CALLER, CLIENT, min_ttl=60)

    assert caught.value.http_status == 503
    assert caught.value.retry_after == 1.0
    assert world.clock.now - started <= world.policy.wait_seconds
    assert world.endpoint.calls == []


def test_the_hourly_budget_is_never_exceeded() -> None:
    world = World(VendingPolicy(budget_per_hour=3))
    vendor = world.vendor()
    for _ in range(3):
        vendor.vend(CALLER, CLIENT, min_ttl=3599)
        world.clock.now += 2

    with pytest.raises(errors.Throttled) as caught:
        vendor.vend(CALLER, CLIENT, min_ttl=3599)

    assert caught.value.http_status == 429
    assert caught.value.retry_after == pytest.approx(3600 - 6)
    assert len(world.endpoint.calls) == 3
    assert world.metrics.counts["TokenBudgetExhausted"] == 1


def test_the_budget_rolls_with_the_hour() -> None:
    world = World(VendingPolicy(budget_per_hour=1))
    vendor = world.vendor()
    vendor.vend(CALLER, CLIENT, min_ttl=3599)
    world.clock.now += 3601

    token = vendor.vend(CALLER, CLIENT, min_ttl=3599)

    assert token.access_token == "token-2"


def test_a_zus_429_is_remembered_across_containers_until_retry_after(world: World) -> None:
    world.endpoint.failures = [errors.ZusRateLimited("token request", 429, "too_many_requests", retry_after=120)]

    with pytest.raises(errors.TemporarilyUnavailable) as first:
        world.vendor().vend(CALLER, CLIENT, min_ttl=60)
    with pytest.raises(errors.TemporarilyUnavailable) as second:
        world.vendor().vend(CALLER, CLIENT, min_ttl=60)

    assert first.value.http_status == second.value.http_status == 503
    assert first.value.retry_after == 120
    assert 0 < second.value.retry_after <= 120
    assert len(world.endpoint.calls) == 1
    world.clock.now += 121
    assert world.vendor().vend(CALLER, CLIENT, min_ttl=60).access_token == "token-2"


def test_a_failed_request_is_one_attempt_and_every_container_backs_off_together(world: World) -> None:
    world.endpoint.failures = [errors.ZusUnavailable("token request", 503, "error")] * 2

    with pytest.raises(errors.TemporarilyUnavailable) as first:
        world.vendor().vend(CALLER, CLIENT, min_ttl=60)
    with pytest.raises(errors.TemporarilyUnavailable) as meanwhile:
        world.vendor().vend(CALLER, CLIENT, min_ttl=60)  # another container, within the back-off

    assert first.value.http_status == meanwhile.value.http_status == 503
    assert 0.8 <= first.value.retry_after <= 1.0
    assert 0 < meanwhile.value.retry_after <= first.value.retry_after + 1e-6
    assert len(world.endpoint.calls) == 1  # one attempt per vend call, none during the back-off
    assert world.stored().lease_owner is None  # released for the next caller
    assert (world.stored().failures, world.stored().failed_by) == (1, "unavailable")
    world.clock.now += 1.0
    with pytest.raises(errors.TemporarilyUnavailable) as second:
        world.vendor().vend(CALLER, CLIENT, min_ttl=60)
    assert 1.6 <= second.value.retry_after <= 2.0  # the pause doubles
    world.clock.now += 2.0
    assert world.vendor().vend(CALLER, CLIENT, min_ttl=60).access_token == "token-3"
    assert world.stored().failures == 0  # Zus answered: forgotten
    assert budget.used(world.table, CLIENT, world.clock.now) == 3


def test_the_back_off_doubles_to_its_cap_and_a_fleet_makes_one_attempt_per_interval(world: World) -> None:
    world.endpoint.failures = [errors.ZusUnavailable("token request", None, "timed out")] * 1000
    containers = [world.vendor() for _ in range(8)]
    pauses: list[float] = []
    # 8 containers each asking every 0.1 s for 2 minutes of Zus being down
    for tick in range(1200):
        for vendor in containers:
            try:
                vendor.vend(CALLER, CLIENT, min_ttl=60)
            except errors.TemporarilyUnavailable as exc:
                if len(world.endpoint.calls) > len(pauses):
                    pauses.append(exc.retry_after)
        world.clock.now += 0.1
        assert tick >= 0

    assert len(world.endpoint.calls) == len(pauses)
    expected = [min(10.0, 2.0**n) for n in range(len(pauses))]
    assert all(0.8 * cap <= pause <= cap for pause, cap in zip(pauses, expected, strict=True))
    # 1 + 2 + 4 + 8 s, then one attempt per 8-10 s: 15-17 attempts in 120 s, not 9,600
    assert 13 <= len(world.endpoint.calls) <= 17


def test_a_long_outage_is_probed_at_half_the_ordinary_budget_per_hour() -> None:
    policy = VendingPolicy(budget_per_hour=100, budget_reserve_percent=10)  # 90 ordinary requests an hour

    pauses = [policy.backoff(failures) for failures in range(1, 200)]

    assert pauses[:6] == [1, 2, 4, 8, 10, 10]
    assert pauses[21] == 10  # 22 quick probes: a quarter of the 90
    assert set(pauses[22:]) == {80}  # then 45 an hour
    first_hour = sum(1 for end in itertools.accumulate(pause * 0.8 for pause in pauses) if end <= 3600)
    assert first_hour < 90  # even at the shortest jitter, an outage alone never spends the budget


def test_the_reserve_is_for_recovery_only() -> None:
    world = World(VendingPolicy(budget_per_hour=10, budget_reserve_percent=20, refresh_margin=0))
    world.table.budgets[CLIENT] = [world.clock.now - 10] * 8  # the ordinary 8 of 10 spent

    with pytest.raises(errors.Throttled) as ordinary:
        world.vendor().vend(CALLER, CLIENT, min_ttl=60)
    recovered = world.vendor().issue_with(CLIENT, credentials("s-current"))  # testSecret, a proof, the sweep

    assert ordinary.value.http_status == 429
    assert recovered.access_token == "token-1"
    assert budget.used(world.table, CLIENT, world.clock.now) == 9


def test_the_first_request_after_an_outage_may_use_the_reserve_but_not_after_refusals() -> None:
    world = World(VendingPolicy(budget_per_hour=10, budget_reserve_percent=20))
    world.table.budgets[CLIENT] = [world.clock.now - 10] * 7
    world.endpoint.failures = [errors.ZusUnavailable("token request", 503, "error")]
    with pytest.raises(errors.TemporarilyUnavailable):
        world.vendor().vend(CALLER, CLIENT, min_ttl=60)  # the 8th and last ordinary request: Zus is down
    world.clock.now += 10

    assert world.vendor().vend(CALLER, CLIENT, min_ttl=60).access_token == "token-2"  # the 9th, from the reserve

    # Refused credentials are no outage: the request after them does not touch the reserve.
    world.table.forget(CLIENT)
    world.table.budgets[CLIENT] = [world.clock.now - 10] * 7
    world.endpoint.valid_secrets = set()
    with pytest.raises(errors.TemporarilyUnavailable):
        world.vendor().vend(CALLER, CLIENT, min_ttl=60)
    world.endpoint.valid_secrets = {"s-current"}
    world.clock.now += 10
    with pytest.raises(errors.Throttled):
        world.vendor().vend(CALLER, CLIENT, min_ttl=60)


def test_zus_counting_more_than_our_budget_stops_ordinary_requests_early() -> None:
    # Another user of the same client: Zus says 12 requests are left, our own count says 99.
    world = World(VendingPolicy(budget_per_hour=100, budget_reserve_percent=10, refresh_margin=0))
    reset_at = world.clock.now + 900
    world.endpoint.quota = ZusQuota(remaining=12, reset_at=reset_at)
    world.endpoint.lifetime = 60
    vendor = world.vendor()
    vendor.vend(CALLER, CLIENT, min_ttl=30)  # Zus: 12 left
    world.endpoint.quota = None  # (answers without the headers)
    for _ in range(2):  # two more leave 10: the reserve
        world.clock.now += 40
        vendor.vend(CALLER, CLIENT, min_ttl=30)
    world.clock.now += 40

    with pytest.raises(errors.Throttled) as caught:
        vendor.vend(CALLER, CLIENT, min_ttl=30)

    assert caught.value.retry_after == pytest.approx(reset_at - world.clock.now)
    assert "Zus reports" in caught.value.detail
    assert len(world.endpoint.calls) == 3
    assert vendor.issue_with(CLIENT, credentials("s-current")).access_token == "token-4"  # recovery may


def test_invalid_client_falls_back_to_the_pending_version(world: World) -> None:
    # Given Zus rotated the secret: the cached current one is dead, the pending one works
    world.endpoint.valid_secrets = {"s-pending"}
    world.secrets.versions[(SECRET, AWSPENDING)] = credentials("s-pending")

    token = world.vendor().vend(CALLER, CLIENT, min_ttl=60)

    assert token.access_token == "token-2"
    assert world.endpoint.calls == ["s-current", "s-pending"]
    assert (SECRET, AWSPENDING, True) in world.secrets.reads


def test_invalid_client_falls_back_to_the_previous_version_while_a_new_secret_propagates(
    world: World,
) -> None:
    world.endpoint.valid_secrets = {"s-old"}
    world.secrets.versions[(SECRET, AWSPREVIOUS)] = credentials("s-old")

    assert world.vendor().vend(CALLER, CLIENT, min_ttl=60).access_token == "token-2"
    assert world.endpoint.calls == ["s-current", "s-old"]


def test_every_version_refused_is_one_attempt_each_then_503_and_a_metric(world: World) -> None:
    world.endpoint.valid_secrets = set()
    world.secrets.versions[(SECRET, AWSPENDING)] = credentials("s-pending")
    world.secrets.versions[(SECRET, AWSPREVIOUS)] = credentials("s-old")

    with pytest.raises(errors.TemporarilyUnavailable) as caught:
        world.vendor().vend(CALLER, CLIENT, min_ttl=60)

    assert caught.value.http_status == 503
    assert sorted(world.endpoint.calls) == ["s-current", "s-old", "s-pending"]
    assert world.metrics.counts["InvalidClientExhausted"] == 1
    assert "s-" not in str(caught.value)


def test_an_unknown_client_is_403_like_any_refusal_and_writes_nothing(world: World) -> None:
    with pytest.raises(errors.Forbidden) as caught:
        world.vendor().vend(CALLER, "nobody", min_ttl=60)

    assert str(caught.value) == f"{CALLER.arn} may not get tokens of app client 'nobody'"
    assert "nobody" not in world.table.states
    assert world.endpoint.calls == []
    assert world.secrets.reads == []


def test_an_admin_asking_for_an_unknown_client_learns_that_it_does_not_exist(world: World) -> None:
    with pytest.raises(errors.ResourceNotFound):
        world.vendor().vend(ADMIN_CALLER, "nobody", min_ttl=60)

    assert "nobody" not in world.table.states


def test_a_min_ttl_longer_than_zus_tokens_live_is_422(world: World) -> None:
    world.endpoint.lifetime = 20

    with pytest.raises(errors.UnprocessableRequest):
        world.vendor().vend(CALLER, CLIENT, min_ttl=60)


def test_a_min_ttl_beyond_the_learned_lifetime_is_422_without_asking_zus(world: World) -> None:
    world.endpoint.lifetime = 400
    world.vendor().vend(CALLER, CLIENT, min_ttl=60)  # learns that tokens live 400 s

    for vendor in (world.vendor(), world.vendor()):  # the table tier, then a container's memory
        for _ in range(3):
            with pytest.raises(errors.UnprocessableRequest, match="live 400 s; minTtl 3000"):
                vendor.vend(CALLER, CLIENT, min_ttl=3000)

    assert len(world.endpoint.calls) == 1
    assert budget.used(world.table, CLIENT, world.clock.now) == 1


def test_the_admin_token_settles_for_half_a_lifetime_when_tokens_live_shorter(world: World) -> None:
    world.endpoint.lifetime = 40
    world.secrets.versions[(NAMING.secret_id(ADMIN), AWSCURRENT)] = ClientCredentials(ADMIN, "", "admin", "s-current")
    vendor = world.vendor()

    first = vendor.admin_token(min_ttl=60)
    world.clock.now += 15
    again = vendor.admin_token(min_ttl=60)  # 25 s left >= 20
    world.clock.now += 10
    renewed = vendor.admin_token(min_ttl=60)  # 15 s left < 20
    elsewhere = world.vendor().admin_token(min_ttl=60)  # another container: the table tier, as best effort

    assert first.access_token == again.access_token == "token-1"
    assert renewed.access_token == elsewhere.access_token == "token-2"
    with pytest.raises(errors.UnprocessableRequest):
        vendor.vend(CALLER, CLIENT, min_ttl=60)  # a consumer's minTtl is never bent: 422


def test_a_settling_secret_is_asked_again_alternating_versions_within_the_window() -> None:
    # Zus accepts the old or the new secret at random while the rotated one propagates: here it refuses
    # the first five requests, whichever secret they carry.
    world = World()
    world.endpoint.valid_secrets = {"s-current", "s-pending"}
    refused = errors.ZusCredentialsRefused("token request", 401, "access_denied")
    world.endpoint.failures = [refused] * 5
    world.secrets.versions[(SECRET, AWSPENDING)] = replace(credentials("s-pending"), stored_at=world.clock.now - 5)
    started = world.clock.now

    token = world.vendor().vend(CALLER, CLIENT, min_ttl=60)

    assert token.access_token == "token-6"
    # One of each, then every stored version in turn (AWSPENDING first) until one is accepted.
    assert world.endpoint.calls == ["s-current", "s-pending", "s-pending", "s-current", "s-pending", "s-current"]
    assert world.clock.now - started < world.policy.retry_window_seconds


def test_versions_that_settled_long_ago_are_tried_once_each(world: World) -> None:
    world.endpoint.valid_secrets = set()
    world.secrets.versions[(SECRET, AWSPREVIOUS)] = replace(credentials("s-old"), stored_at=world.clock.now - 86400)

    with pytest.raises(errors.TemporarilyUnavailable) as caught:
        world.vendor().vend(CALLER, CLIENT, min_ttl=60)

    assert world.endpoint.calls == ["s-current", "s-old"]
    assert "every stored secret version" in caught.value.detail
    assert world.stored().failed_by == "refused"


def test_a_throttled_answer_is_never_refused_credentials(world: World) -> None:
    world.secrets.versions[(SECRET, AWSPENDING)] = credentials("s-pending")
    world.endpoint.failures = [errors.ZusRateLimited("token request", 500, "access_denied (global limit)", 900)]

    with pytest.raises(errors.TemporarilyUnavailable) as caught:
        world.vendor().vend(CALLER, CLIENT, min_ttl=60)

    assert caught.value.retry_after == 900
    assert world.endpoint.calls == ["s-current"]  # no fallback to other versions
    assert world.stored().blocked_until == world.clock.now + 900
    assert world.stored().failures == 0


def test_a_slow_429_pauses_from_its_answer_not_from_before_the_request(world: World) -> None:
    world.endpoint.failures = [errors.ZusRateLimited("token request", 429, "too_many_requests", 30)]
    world.endpoint.on_call = lambda: world.clock.sleep(2.0)  # the answer took 2 s to arrive

    with pytest.raises(errors.TemporarilyUnavailable):
        world.vendor().vend(CALLER, CLIENT, min_ttl=60)

    assert world.stored().blocked_until == world.clock.now + 30


def test_pre_refresh_renews_a_token_that_will_enter_the_margin_within_the_horizon(world: World) -> None:
    # Given two clients in use: one enters the margin within the horizon, the other does not
    world.secrets.versions[(NAMING.secret_id("fresh"), AWSCURRENT)] = credentials("s-current")
    world.table.records["fresh"] = record("fresh")
    vendor = world.vendor()
    vendor.vend(CALLER, CLIENT, min_ttl=60)
    world.clock.now += 3000  # 600 s left: outside the 300 s margin, inside it in 400 s
    vendor.vend(CALLER, "fresh", min_ttl=60)
    pre_refresh = world.pre_refresh(horizon=400)

    assert (pre_refresh.refresh(CLIENT), pre_refresh.refresh("fresh")) == (True, False)
    stored = world.stored().token
    assert stored is not None
    assert stored.seconds_left(world.clock.now) == pytest.approx(3600)
    assert stored.secret_version == "v-current"  # the version that minted it


def test_pre_refresh_respects_a_held_lease_and_the_budget() -> None:
    world = World(VendingPolicy(budget_per_hour=1))
    vendor = world.vendor()
    vendor.vend(CALLER, CLIENT, min_ttl=60)
    world.clock.now += 3500

    with pytest.raises(errors.Throttled):
        world.pre_refresh(horizon=60).refresh(CLIENT)
    world.table.budgets.clear()
    world.table.acquire_lease(CLIENT, "other", world.clock.now, world.clock.now + 30)
    assert world.pre_refresh(horizon=60).refresh(CLIENT) is False
    assert len(world.endpoint.calls) == 1


def test_a_client_is_idle_an_hour_after_its_token_was_last_asked_for(world: World) -> None:
    pre_refresh = world.pre_refresh(horizon=90)

    assert not pre_refresh.idle(world.clock.now - 3599)
    assert pre_refresh.idle(world.clock.now - 3601)


def test_fifty_threads_at_once_cause_one_upstream_request() -> None:
    # Real time and threads: the fake table is as atomic as DynamoDB's conditional writes.
    table = FakeTokenTable()
    table.records[CLIENT] = record()
    secrets = FakeSecretReader()
    secrets.versions[(SECRET, AWSCURRENT)] = credentials("s-current")
    endpoint = FakeTokenEndpoint(valid_secrets={"s-current"}, on_call=lambda: time.sleep(0.2))
    start = threading.Barrier(50)

    def one_container() -> str:
        vendor = token_vendor(table, secrets, endpoint, NAMING, ACCESS, VendingPolicy(), Runtime(FakeMetrics()))
        start.wait()
        return vendor.vend(CALLER, CLIENT, min_ttl=60).access_token

    with ThreadPoolExecutor(max_workers=50) as pool:
        tokens = list(pool.map(lambda _: one_container(), range(50)))

    assert tokens == ["token-1"] * 50
    assert len(endpoint.calls) == 1


# --- who gets which token: consumers, the bootstrap admin, tokens bound to the client that minted them ---


def test_a_caller_that_is_not_a_consumer_is_refused_and_nothing_is_written(world: World) -> None:
    with pytest.raises(errors.Forbidden) as caught:
        world.vendor().vend(STRANGER, CLIENT, min_ttl=60)

    assert caught.value.http_status == 403
    assert "token" in str(caught.value)
    assert world.table.states == {}
    assert world.endpoint.calls == []
    assert world.secrets.reads == []
    assert world.metrics.counts["TokenRefused"] == 1


def test_an_admin_is_not_a_consumer_of_every_client(world: World) -> None:
    with pytest.raises(errors.Forbidden):
        world.vendor().vend(ADMIN_CALLER, CLIENT, min_ttl=60)


def test_a_consumer_granted_a_moment_ago_is_served_at_once_a_stranger_still_refused(world: World) -> None:
    vendor = world.vendor()
    vendor.vend(CALLER, CLIENT, min_ttl=60)
    with pytest.raises(errors.Forbidden):
        vendor.vend(STRANGER, CLIENT, min_ttl=60)

    world.table.records[CLIENT] = record(consumers=(CONSUMER_ROLE, "arn:aws:iam::111122223333:role/reporting"))

    assert vendor.vend(STRANGER, CLIENT, min_ttl=60).access_token == "token-1"
    with pytest.raises(errors.Forbidden):
        vendor.vend(Caller("arn:aws:sts::111122223333:assumed-role/other/s"), CLIENT, min_ttl=60)


def test_the_bootstrap_admin_is_never_vended_and_nothing_is_read(world: World) -> None:
    world.table.records["zus-m2m-admin"] = record("zus-m2m-admin", consumers=(ADMIN_USER,))

    with pytest.raises(errors.Forbidden) as caught:
        world.vendor().vend(ADMIN_CALLER, "zus-m2m-admin", min_ttl=60)

    assert caught.value.http_status == 403
    assert world.table.views == 0
    assert world.secrets.reads == []
    assert world.endpoint.calls == []


def test_the_admin_token_serves_provisioning_without_a_record(world: World) -> None:
    admin_secret = NAMING.secret_id("zus-m2m-admin")
    world.secrets.versions[(admin_secret, AWSCURRENT)] = ClientCredentials("zus-m2m-admin", "", "admin", "s-current")
    vendor = world.vendor()

    first = vendor.admin_token(min_ttl=60)
    second = vendor.admin_token(min_ttl=60)

    assert first.access_token == second.access_token == "token-1"
    assert world.table.views == 0
    assert world.table.states["zus-m2m-admin"].token == first


def test_memory_serves_a_consumer_within_the_revalidation_bound_then_reads_the_record_again(world: World) -> None:
    vendor = world.vendor()
    vendor.vend(CALLER, CLIENT, min_ttl=60)
    assert world.table.views == 1

    world.clock.now += world.policy.revalidate_seconds - 0.1
    assert vendor.vend(CALLER, CLIENT, min_ttl=60).source == "memory"
    assert world.table.views == 1
    world.clock.now += 0.1
    assert vendor.vend(CALLER, CLIENT, min_ttl=60).source == "table"
    assert world.table.views == 2


def test_a_removed_consumer_stops_being_served_within_the_bound(world: World) -> None:
    vendor = world.vendor()
    vendor.vend(CALLER, CLIENT, min_ttl=60)
    world.table.records[CLIENT] = record(consumers=("arn:aws:iam::111122223333:role/reporting",))

    world.clock.now += world.policy.revalidate_seconds

    with pytest.raises(errors.Forbidden):
        vendor.vend(CALLER, CLIENT, min_ttl=60)
    assert vendor.vend(STRANGER, CLIENT, min_ttl=60).access_token == "token-1"


def test_a_deleted_client_stops_being_served_within_the_bound(world: World) -> None:
    vendor = world.vendor()
    vendor.vend(CALLER, CLIENT, min_ttl=60)
    del world.table.records[CLIENT]

    world.clock.now += world.policy.revalidate_seconds

    with pytest.raises(errors.Forbidden):
        vendor.vend(CALLER, CLIENT, min_ttl=60)
    with pytest.raises(errors.ResourceNotFound):
        vendor.vend(ADMIN_CALLER, CLIENT, min_ttl=60)


def test_a_recreated_client_never_gets_the_deleted_clients_token(world: World) -> None:
    # Given a container that served the first client of the name, whose token is still in the table
    vendor = world.vendor()
    old = vendor.vend(CALLER, CLIENT, min_ttl=60)
    world.endpoint.valid_secrets.add("s-new")

    # When the name is deleted and created again: a new Zus app client, its secret, its record
    world.table.records[CLIENT] = record(app_client_id="app-2")
    world.secrets.versions[(SECRET, AWSCURRENT)] = credentials("s-new", app_client_id="app-2")
    world.clock.now += world.policy.revalidate_seconds

    # Then the old token is neither served nor kept: the new client's is fetched
    token = vendor.vend(CALLER, CLIENT, min_ttl=60)
    assert token.access_token != old.access_token
    assert token.app_client_id == "app-2"
    assert world.endpoint.calls[-1] == "s-new"
    assert world.metrics.counts["StaleTokenDiscarded"] == 1
    stored = world.stored().token
    assert stored is not None
    assert stored.app_client_id == "app-2"


def test_a_table_token_of_another_app_client_is_discarded_not_served(world: World) -> None:
    # Given the table holds a token minted for a client that no longer exists under the name
    world.table.states[CLIENT] = TokenState(token=CachedToken("old", "Bearer", world.clock.now + 3600, "app-0"))
    vendor = world.vendor()

    token = vendor.vend(CALLER, CLIENT, min_ttl=60)

    assert token.access_token == "token-1"
    stored = world.stored().token
    assert stored is not None
    assert stored.access_token == "token-1"


def test_a_secret_that_does_not_hold_the_records_client_is_never_used(world: World) -> None:
    world.secrets.versions[(SECRET, AWSCURRENT)] = credentials("s-current", app_client_id="app-0")

    with pytest.raises(errors.TemporarilyUnavailable) as caught:
        world.vendor().vend(CALLER, CLIENT, min_ttl=60)

    assert caught.value.http_status == 503
    assert world.endpoint.calls == []


def test_a_record_without_consumers_is_refused_to_everyone(world: World) -> None:
    world.table.records[CLIENT] = record(consumers=())

    for caller in (CALLER, STRANGER, ADMIN_CALLER):
        with pytest.raises(errors.Forbidden):
            world.vendor().vend(caller, CLIENT, min_ttl=60)
    assert world.endpoint.calls == []


def test_an_account_root_consumer_covers_every_principal_of_that_account(world: World) -> None:
    world.table.records[CLIENT] = record(consumers=("arn:aws:iam::111122223333:root",))

    assert world.vendor().vend(STRANGER, CLIENT, min_ttl=60).access_token == "token-1"
    with pytest.raises(errors.Forbidden):
        world.vendor().vend(Caller("arn:aws:sts::444455556666:assumed-role/billing-service/x"), CLIENT, min_ttl=60)


# --- a token Zus refused (?refused=<fingerprint>): replaced once for every container ------------------------


def test_a_refused_token_is_replaced_once_and_every_container_then_gets_the_new_one(world: World) -> None:
    a, b = world.vendor(), world.vendor()
    refused = a.vend(CALLER, CLIENT, min_ttl=60)
    assert b.vend(CALLER, CLIENT, min_ttl=60) == refused  # both hold it: b in memory, from the table
    world.clock.now += world.policy.refused_min_token_age  # a token this young is never replaced

    replaced = a.vend(CALLER, CLIENT, min_ttl=60, refused=refused.fingerprint)
    from_b = b.vend(CALLER, CLIENT, min_ttl=60, refused=refused.fingerprint)  # b reports it too
    from_c = world.vendor().vend(CALLER, CLIENT, min_ttl=60, refused=refused.fingerprint)

    assert replaced.access_token == from_b.access_token == from_c.access_token == "token-2"
    assert (replaced.source, from_b.source, from_c.source) == ("zus", "table", "table")
    assert len(world.endpoint.calls) == 2  # the first token, and one replacement
    assert world.stored().token == replaced
    assert b.vend(CALLER, CLIENT, min_ttl=60).access_token == "token-2"  # the refused one left b's memory
    assert world.metrics.counts["RefusedTokenReported"] == 3
    assert world.metrics.counts["RefusedTokenReplaced"] == 1


def test_a_chain_of_reports_replaces_the_token_once_per_gap_and_never_a_young_one(world: World) -> None:
    vendor = world.vendor()
    held = vendor.vend(CALLER, CLIENT, min_ttl=60)
    policy = world.policy

    # A token younger than refused_min_token_age is kept: the report gets it back
    world.clock.now += policy.refused_min_token_age - 1
    assert vendor.vend(CALLER, CLIENT, min_ttl=60, refused=held.fingerprint) == held
    assert world.metrics.counts["RefusedReportIgnored"] == 1

    # Old enough: replaced once; each report of the replacement within the gap gets the replacement
    world.clock.now += 1
    replaced = vendor.vend(CALLER, CLIENT, min_ttl=60, refused=held.fingerprint)
    assert replaced.access_token == "token-2"
    for _ in range(30):
        world.clock.now += 1
        assert vendor.vend(CALLER, CLIENT, min_ttl=60, refused=replaced.fingerprint) == replaced
    assert len(world.endpoint.calls) == 2
    assert world.metrics.counts["RefusedReportIgnored"] == 31
    assert world.stored().refused_replaced_at == world.clock.now - 30

    # Past the gap, a report replaces it again
    world.clock.now = world.stored().refused_replaced_at + policy.refused_replacement_min_gap
    assert vendor.vend(CALLER, CLIENT, min_ttl=60, refused=replaced.fingerprint).access_token == "token-3"
    assert world.metrics.counts["RefusedTokenReplaced"] == 2


def test_a_fingerprint_of_another_token_gets_the_current_one_without_a_mint(world: World) -> None:
    vendor = world.vendor()
    current = vendor.vend(CALLER, CLIENT, min_ttl=60)

    for container in (vendor, world.vendor()):  # from memory, and from the table
        assert container.vend(CALLER, CLIENT, min_ttl=60, refused=fingerprint("some-other-token")) == current

    assert len(world.endpoint.calls) == 1
    assert world.metrics.counts["RefusedTokenReplaced"] == 0


def test_the_lease_holder_reads_the_item_again_and_serves_a_replacement_stored_meanwhile(world: World) -> None:
    # Given a container that still holds the refused token, and an eventually consistent read that still
    # answers it, while another container already stored its replacement
    world.policy = dataclasses.replace(world.policy, refused_min_token_age=0.0)  # reported a moment after minting
    vendor = world.vendor()
    refused = vendor.vend(CALLER, CLIENT, min_ttl=60)
    world.table.stale[CLIENT] = world.stored()
    replacement = CachedToken("token-elsewhere", "Bearer", world.clock.now + 3600, "app-1")
    world.table.put_token(CLIENT, replacement, owner=None)

    # When it is reported refused here, the lease's consistent read finds the replacement: no mint
    token = vendor.vend(CALLER, CLIENT, min_ttl=60, refused=refused.fingerprint)

    assert (token.access_token, token.source) == ("token-elsewhere", "lease-wait")
    assert len(world.endpoint.calls) == 1
    assert world.stored().lease_owner is None


def test_a_refused_token_is_replaced_even_when_it_expires_later_than_the_new_one(world: World) -> None:
    world.endpoint.lifetime = 600  # Zus now issues shorter-lived tokens than the one it refused
    long_lived = CachedToken("long-lived", "Bearer", world.clock.now + 3000, "app-1")
    world.table.put_token(CLIENT, long_lived, owner=None)

    token = world.vendor().vend(CALLER, CLIENT, min_ttl=60, refused=long_lived.fingerprint)

    assert token.access_token == "token-1"
    assert world.stored().token == token  # not kept for expiring later: it was refused


def test_waiters_get_the_replacement_the_lease_holder_stores() -> None:
    # Real time and threads: 20 containers report the same refused token at once; Zus answers slowly.
    world = World()

    def container() -> TokenVendor:
        # The reported token was minted a moment ago.
        policy = VendingPolicy(refused_min_token_age=0.0)
        return token_vendor(world.table, world.secrets, world.endpoint, NAMING, ACCESS, policy, Runtime(world.metrics))

    refused = container().vend(CALLER, CLIENT, min_ttl=60)
    world.endpoint.on_call = lambda: time.sleep(0.2)
    start = threading.Barrier(20)

    def report() -> str:
        vendor = container()
        start.wait()
        return vendor.vend(CALLER, CLIENT, min_ttl=60, refused=refused.fingerprint).access_token

    with ThreadPoolExecutor(max_workers=20) as pool:
        tokens = list(pool.map(lambda _: report(), range(20)))

    assert tokens == ["token-2"] * 20
    assert len(world.endpoint.calls) == 2


def test_a_refused_report_spends_the_ordinary_budget_only_and_is_never_answered_with_that_token() -> None:
    world = World(VendingPolicy(budget_per_hour=10, budget_reserve_percent=20))
    vendor = world.vendor()
    refused = vendor.vend(CALLER, CLIENT, min_ttl=60)
    world.clock.now += world.policy.refused_min_token_age
    world.table.budgets[CLIENT] = [world.clock.now] * 8  # the ordinary 8 of 10 spent: 2 kept for recovery

    with pytest.raises(errors.Throttled) as caught:
        vendor.vend(CALLER, CLIENT, min_ttl=60, refused=refused.fingerprint)

    assert caught.value.http_status == 429
    assert budget.used(world.table, CLIENT, world.clock.now) == 8
    assert world.stored().token == refused  # only a new token replaces it; a caller that did not report it
    assert world.vendor().vend(CALLER, CLIENT, min_ttl=60) == refused  # still gets it meanwhile


def test_another_container_drops_a_replaced_token_when_it_reads_the_record_again(world: World) -> None:
    # Given a container holding T in memory, and T replaced in the table by a token that expires earlier
    world.policy = dataclasses.replace(world.policy, refused_min_token_age=0.0)  # reported a moment after minting
    holder = world.vendor()
    refused = holder.vend(CALLER, CLIENT, min_ttl=60)
    world.endpoint.lifetime = 600
    replaced = world.vendor().vend(CALLER, CLIENT, min_ttl=60, refused=refused.fingerprint)
    assert replaced.expires_at < refused.expires_at

    assert holder.vend(CALLER, CLIENT, min_ttl=60) == refused  # served from memory within the bound

    # When the holder's next call past the bound reads the record (and the token item) again
    world.clock.now += world.policy.revalidate_seconds
    token = holder.vend(CALLER, CLIENT, min_ttl=60)

    # Then it serves the table's token, and from memory after that, never the refused one it held
    assert (token.access_token, token.source) == (replaced.access_token, "table")
    again = holder.vend(CALLER, CLIENT, min_ttl=60)
    assert (again.access_token, again.source) == (replaced.access_token, "memory")
