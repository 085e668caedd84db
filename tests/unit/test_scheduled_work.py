"""Scheduled work's decisions: the dispatch of due items to the work queue, the worker's per-client work,
and the queue message between them, against in-memory fakes (the due index, the queue, the token table,
the secret store and Zus)."""

from __future__ import annotations

import json

import pytest
from fake_deployment import FakeDeployment
from fake_records import FakeDueIndex, FakeWorkQueue
from fakes import ADMIN, FakeTokenEndpoint, FakeTokenTable

from zus_m2m import errors
from zus_m2m.access import AccessPolicy
from zus_m2m.ports import Runtime
from zus_m2m.rotation.policy import RotationPolicy
from zus_m2m.rotation.repair import RotationRepair
from zus_m2m.rotation.steps import RotationSteps
from zus_m2m.rotation.sweep import RotationSweep
from zus_m2m.tokens.policy import VendingPolicy
from zus_m2m.tokens.pre_refresh import TokenPreRefresh
from zus_m2m.values import REFRESH, ROTATION, CachedToken, WorkItem
from zus_m2m.wiring import token_vendor
from zus_m2m.work import items
from zus_m2m.work.dispatch import DISPATCH_POLICIES, DueWorkDispatch
from zus_m2m.work.worker import Worker

CLIENT = "billing"
REFRESH_POLICY = DISPATCH_POLICIES[REFRESH]


class World(FakeDeployment):
    """One deployment: a managed client whose secret works at Zus, the due index its items are in, the
    work queue, and the token table linked to the index as DynamoTokenTable keeps it."""

    def __init__(self) -> None:
        super().__init__()
        self.due = FakeDueIndex()
        self.table = FakeTokenTable(due=self.due)
        self.issuer.table = self.table
        self.queue = FakeWorkQueue()
        self.credentials = self.add_client(CLIENT)
        self.endpoint = FakeTokenEndpoint(valid_secrets={self.credentials.client_secret})
        self.policy = RotationPolicy(naming=self.naming, rotation_function_arn="arn:rotation")

    def dispatch(self) -> DueWorkDispatch:
        return DueWorkDispatch(self.due, self.queue, self.metrics, ADMIN, clock=self.clock)

    def work(self) -> Worker:
        """A new container of the worker function."""
        runtime = Runtime(self.metrics, clock=self.clock, sleep=self.clock.sleep)
        access = AccessPolicy.of([])
        vendor = token_vendor(self.table, self.secrets, self.endpoint, self.naming, access, VendingPolicy(), runtime)
        steps = RotationSteps(self.secrets, self.admin, self.issuer, self.failures, self.policy, Runtime(self.metrics))
        repair = RotationRepair(self.secrets, steps, self.issuer, self.failures, self.policy, Runtime(self.metrics))
        sweep = RotationSweep(self.secrets, repair, self.policy, self.metrics, self.table, clock=self.clock)
        return Worker(self.due, TokenPreRefresh(vendor.flight, clock=self.clock), sweep, self.metrics, clock=self.clock)

    def in_use(self, expires_in: float) -> None:
        """The client's token (of its current secret) expires in ``expires_in`` s; it was asked for a minute ago."""
        token = CachedToken("token-0", "Bearer", self.clock.now + expires_in, self.credentials.app_client_id)
        self.table.put_token(CLIENT, token, None)
        self.table.mark_requested(CLIENT, self.clock.now - 60)

    def deliver(self, work: Worker | None = None) -> list[str]:
        """The worker takes every message sent so far (the queue keeps them: a redelivery is a second call)."""
        work = work or self.work()
        return [work.run_message(item.to_message()) for item in self.queue.sent]


@pytest.fixture
def world() -> World:
    return World()


# --- the message ------------------------------------------------------------------------------------


def test_a_work_item_travels_as_a_message_and_back() -> None:
    item = WorkItem(ROTATION, "billing-service.v2", 1_700_000_123.4567)

    assert items.from_message(item.to_message()) == WorkItem(ROTATION, "billing-service.v2", 1_700_000_123.457)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("", "not JSON"),
        ("{", "not JSON"),
        ('"refresh"', "a JSON object"),
        ("[]", "a JSON object"),
        ('{"kind": "refresh", "client": "a"}', "exactly the fields"),
        ('{"kind": "refresh", "client": "a", "dueAt": 1, "extra": 1}', "exactly the fields"),
        ('{"kind": "refresh", "kind": "rotation", "client": "a", "dueAt": 1}', "given twice"),
        ('{"kind": "rotate-everything", "client": "a", "dueAt": 1}', "unknown kind"),
        ('{"kind": "refresh", "client": "../a", "dueAt": 1}', "name must be"),
        ('{"kind": "refresh", "client": 7, "dueAt": 1}', "name must be"),
        ('{"kind": "refresh", "client": "a", "dueAt": "soon"}', "dueAt must be"),
        ('{"kind": "refresh", "client": "a", "dueAt": true}', "dueAt must be"),
        ('{"kind": "refresh", "client": "a", "dueAt": NaN}', "dueAt must be"),
        ("[" * 100_000, "at most 1024"),
    ],
)
def test_a_message_the_dispatcher_would_not_send_is_refused_naming_the_problem(body: str, problem: str) -> None:
    with pytest.raises(errors.InvalidRequest, match=problem):
        items.from_message(body)


# --- the dispatch -------------------------------------------------------------------------------------


def test_a_run_hands_out_what_is_due_within_the_lookahead_oldest_first_one_message_each(world: World) -> None:
    now = world.clock.now
    world.due.put(REFRESH, "late", now - 30, now)
    world.due.put(REFRESH, "soon", now + REFRESH_POLICY.lookahead - 1, now)
    world.due.put(REFRESH, "later", now + REFRESH_POLICY.lookahead + 1, now)
    world.due.put(ROTATION, "other-kind", now - 60)

    report = world.dispatch().run(REFRESH)

    assert report == {"due": 2, "dispatched": 2, "superseded": 0, "unsent": 0, "capped": 0}
    retry = round(now + REFRESH_POLICY.lookahead + REFRESH_POLICY.retry_after, 3)
    assert world.queue.sent == [WorkItem(REFRESH, "late", retry), WorkItem(REFRESH, "soon", retry)]
    assert world.due.read == 2  # the items due, not every item
    assert world.metrics.counts["RefreshesDispatched"] == 2


def test_a_claimed_item_is_not_handed_out_again_until_its_claim_lapses(world: World) -> None:
    world.due.put(REFRESH, CLIENT, world.clock.now, world.clock.now)
    world.dispatch().run(REFRESH)

    world.clock.now += REFRESH_POLICY.retry_after - 1
    assert world.dispatch().run(REFRESH)["due"] == 0
    world.clock.now += 1
    assert world.dispatch().run(REFRESH)["dispatched"] == 1
    assert [item.client for item in world.queue.sent] == [CLIENT, CLIENT]


def test_an_item_another_run_claimed_meanwhile_is_taken_not_sent(world: World) -> None:
    item = world.due.put(REFRESH, CLIENT, world.clock.now, world.clock.now)
    found = world.due.due

    def overtaken(kind: str, until: float, limit: int) -> list[WorkItem]:
        seen = found(kind, until, limit)
        world.due.claim(item, world.clock.now + 500)  # the other run claims between our query and claim
        return seen

    world.due.due = overtaken  # type: ignore[method-assign]

    assert world.dispatch().run(REFRESH) == {"due": 1, "dispatched": 0, "superseded": 1, "unsent": 0, "capped": 0}
    assert world.queue.sent == []


def test_a_run_stops_at_its_bound_and_the_next_run_goes_on(world: World) -> None:
    for index in range(4):
        world.due.put(ROTATION, f"client-{index}", world.clock.now - 10 + index)
    dispatch = world.dispatch()
    dispatch.policies = {**dispatch.policies, ROTATION: DISPATCH_POLICIES[ROTATION].__class__(0.0, 900.0, 3)}

    first, second = dispatch.run(ROTATION), dispatch.run(ROTATION)

    assert (first["dispatched"], first["capped"], second["dispatched"], second["capped"]) == (3, 1, 2, 0)
    assert [item.client for item in world.queue.sent] == [*(f"client-{i}" for i in range(4)), ADMIN]


def test_an_item_the_queue_did_not_take_is_due_again_after_its_claim_lapses(world: World) -> None:
    world.due.put(REFRESH, CLIENT, world.clock.now, world.clock.now)
    world.queue.refuse = {CLIENT}

    assert world.dispatch().run(REFRESH)["unsent"] == 1
    world.queue.refuse = set()
    world.clock.now += REFRESH_POLICY.retry_after
    assert world.dispatch().run(REFRESH)["dispatched"] == 1


def test_the_rotation_sweep_enlists_the_bootstrap_admin_and_records_written_before_the_index(world: World) -> None:
    world.due.unlisted = ["old-1", "old-2"]

    report = world.dispatch().run(ROTATION)

    assert report["enlisted"] == 3
    assert {item.client for item in world.queue.sent} == {ADMIN, "old-1", "old-2"}
    assert world.dispatch().run(ROTATION)["enlisted"] == 0  # enlisted once


# --- the worker: refreshes ------------------------------------------------------------------------------


def test_a_due_refresh_renews_the_token_once_however_often_the_message_comes(world: World) -> None:
    world.in_use(expires_in=300 + 60)
    world.dispatch().run(REFRESH)

    assert world.deliver() == ["refreshed"]
    assert world.deliver() == ["superseded"]  # redelivered: the renewed token moved the item on
    assert len(world.endpoint.calls) == 1
    mark = world.due.mark(REFRESH, CLIENT)
    assert mark is not None
    assert mark.due_at == pytest.approx(world.clock.now + 3600 - 300)


def test_copies_of_a_message_delivered_at_once_do_the_work_once(world: World) -> None:
    world.due.put(ROTATION, CLIENT, world.clock.now)
    world.dispatch().run(ROTATION)
    [message] = [item for item in world.queue.sent if item.client == CLIENT]
    mark = world.due.mark(ROTATION, CLIENT)
    assert mark is not None
    first, second = world.work(), world.work()  # two invocations read the item before either works

    outcomes = [first.run(message, mark), second.run(message, mark)]

    assert outcomes == ["healthy", "superseded"]
    assert world.issuer.attempts.count(CLIENT) == 1


def test_copies_of_a_refresh_message_at_once_renew_once_under_the_fetch_lease(world: World) -> None:
    world.in_use(expires_in=300 + 60)
    world.dispatch().run(REFRESH)
    [message] = world.queue.sent
    mark = world.due.mark(REFRESH, CLIENT)
    assert mark is not None
    first, second = world.work(), world.work()  # two invocations read the item before either works

    outcomes = [first.run(message, mark), second.run(message, mark)]

    assert outcomes == ["refreshed", "fresh"]
    assert len(world.endpoint.calls) == 1


def test_a_refresh_another_holders_live_lease_blocks_is_deferred_and_stays_due(world: World) -> None:
    # Given a refresh handed out while another container (a timed-out invocation's) holds the lease
    world.in_use(expires_in=300 + 60)
    world.dispatch().run(REFRESH)
    world.table.acquire_lease(CLIENT, "timed-out", world.clock.now, world.clock.now + 30)

    # Then the worker says so, asks Zus nothing, and the work is still due for the dispatcher's next try
    assert world.deliver() == ["deferred"]
    assert world.endpoint.calls == []
    assert world.metrics.counts["PreRefreshesDeferred"] == 1
    [message] = world.queue.sent
    mark = world.due.mark(REFRESH, CLIENT)
    assert mark is not None
    assert mark.holds(message)


def test_a_token_renewed_meanwhile_by_a_caller_is_not_renewed_again(world: World) -> None:
    world.in_use(expires_in=300 + 60)
    world.dispatch().run(REFRESH)
    world.work().pre_refresh.flight.refresh(CLIENT, 120)  # a caller's refresh-ahead, before the message

    assert world.deliver() == ["superseded"]
    assert len(world.endpoint.calls) == 1


def test_an_idle_client_leaves_the_index_without_a_token_request(world: World) -> None:
    world.in_use(expires_in=300 + 60)
    world.table.mark_requested(CLIENT, world.clock.now - 3601)
    world.dispatch().run(REFRESH)

    assert world.deliver() == ["idle"]
    assert len(world.endpoint.calls) == 0
    assert world.dispatch().run(REFRESH)["due"] == 0
    world.table.mark_requested(CLIENT, world.clock.now)  # asked for again: back in the index, due
    world.clock.now += REFRESH_POLICY.retry_after + 1  # once its last claim lapsed
    assert world.dispatch().run(REFRESH)["due"] == 1


def test_a_refresh_zus_refuses_now_is_acknowledged_and_due_again_once_its_claim_lapses(world: World) -> None:
    world.in_use(expires_in=300 + 60)
    world.dispatch().run(REFRESH)
    world.endpoint.failures = [errors.ZusUnavailable("token request", 503, "down")]

    assert world.deliver() == ["failed"]
    assert world.metrics.counts["WorkFailed"] == 1
    world.clock.now += REFRESH_POLICY.retry_after + 1
    world.queue.sent.clear()
    world.dispatch().run(REFRESH)
    assert world.deliver() == ["refreshed"]


# --- the worker: rotation checks -------------------------------------------------------------------------


def test_a_due_rotation_check_runs_once_and_schedules_the_next(world: World) -> None:
    world.due.put(ROTATION, CLIENT, world.clock.now)
    world.dispatch().run(ROTATION)

    outcomes = world.deliver()
    again = world.deliver()

    assert dict(zip([item.client for item in world.queue.sent], outcomes, strict=True))[CLIENT] == "healthy"
    assert dict(zip([item.client for item in world.queue.sent], again, strict=True))[CLIENT] == "superseded"
    assert world.issuer.attempts.count(CLIENT) == 1
    mark = world.due.mark(ROTATION, CLIENT)
    assert mark is not None
    assert mark.due_at == world.clock.now + world.policy.check_interval


def test_a_failed_rotation_check_counts_as_a_rotation_failure_and_stays_claimed(world: World) -> None:
    item = world.due.put(ROTATION, CLIENT, world.clock.now)
    claimed = world.due.claim(item, world.clock.now + 900)
    assert claimed is not None

    def down(client: str, credentials: object) -> object:
        raise errors.ZusUnavailable("token request", 503, "down")

    world.issuer.issue_with = down  # type: ignore[assignment,method-assign]

    assert world.work().run_message(claimed.to_message()) == "failed"
    assert world.metrics.counts["RotationFailed"] == 1
    mark = world.due.mark(ROTATION, CLIENT)
    assert mark is not None
    assert mark.due_at == pytest.approx(claimed.due_at)  # due again when the claim lapses


# --- the worker: messages that name no work ---------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        json.dumps({"kind": "refresh", "client": "billing"}),
        json.dumps({"kind": "refresh", "client": "nobody", "dueAt": 1.0}),
        json.dumps({"kind": "rotation", "client": "nobody", "dueAt": 1.0}),
    ],
)
def test_a_message_that_names_no_work_of_this_stack_raises_and_changes_nothing(world: World, body: str) -> None:
    with pytest.raises((errors.InvalidRequest, errors.ResourceNotFound)):
        world.work().run_message(body)
    assert world.metrics.counts["WorkRefused"] == 1
    assert world.endpoint.calls == []
    assert world.due.marks == {}
