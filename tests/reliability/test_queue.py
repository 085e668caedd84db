"""The work queue: redelivered and poisoned messages, on a local stack of their own whose event source
mapping plays SQS's redelivery against moto (``zus_local.queue_poller``), at ``--schedule-scale 120``: the
work queue's 360 s visibility timeout is 3 s, so a refused message reaches the dead-letter queue after
its three receives within seconds. In the long profile the AWS-fault cases of the worker lift that
timeout to the worker's own timeout while they run (``worker_visibility``): AWS requires an SQS event
source's visibility timeout to be at least its function's timeout, and under latency or a throttled
table one invocation takes many times 3 s. The fast profile's cases (a throttle at 30 %, 500s at 100 %)
end their invocations within the 3 s and keep it, so that a failed message comes back in seconds.

* **Redelivered**: a message delivered several times, copies at once included (SQS delivers at least
  once, and again after a worker that timed out), does its work once: one token request to Zus for a
  refresh, one for an idle client's rotation check, and every copy is acknowledged.
* **Poisoned**: a message that names no work of this stack (not JSON, not the dispatcher's shape, an
  unknown kind, a client with no items) is refused at each receive and, after the third, sits in the
  dead-letter queue; the worker never fails as a whole (no crash loop), and good work sent with the
  poison is done.
"""

from __future__ import annotations

import contextlib
import functools
import json
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from e2e_support import wait_until
from local_stack_process import StackProcess
from reliability_calls import Api
from reliability_integrity import SystemCheck
from reliability_outside import Aws, Emulator
from reliability_results import RESULTS
from reliability_stack import MotoControl, start_reliability_stack
from reliability_support import ROOT, SOAK, profile, unique

from zus_local.aws_fault_proxy import AwsFault, AwsFaultProxy
from zus_local.cfn_yaml import load_template

STACK = "zus-m2m-queue"
COPIES = 5


QueueStack = tuple[StackProcess, MotoControl, AwsFaultProxy]


@pytest.fixture(scope="module")
def queue_stack() -> Iterator[QueueStack]:
    moto = MotoControl()
    proxy = AwsFaultProxy(moto.url).start()
    stack = None
    try:
        stack = start_reliability_stack(
            moto, "--schedule-scale", "120", "--stack-name", STACK, functions_endpoint=proxy.url
        )
        yield stack, moto, proxy
    finally:
        if stack is not None:
            stack.terminate(timeout=20)
        proxy.stop()
        moto.close()


class Queues:
    def __init__(self, endpoint: str) -> None:
        self.sqs = boto3.client(
            "sqs", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="l", aws_secret_access_key="l"
        )
        self.work = self.sqs.get_queue_url(QueueName=f"{STACK}-work")["QueueUrl"]
        self.dead = self.sqs.get_queue_url(QueueName=f"{STACK}-work-dlq")["QueueUrl"]

    def send(self, bodies: list[str]) -> None:
        entries = [{"Id": str(index), "MessageBody": body} for index, body in enumerate(bodies)]
        answer = self.sqs.send_message_batch(QueueUrl=self.work, Entries=entries)
        assert not answer.get("Failed"), answer["Failed"]

    def count(self, url: str) -> int:
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        attributes = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
        return sum(int(attributes[name]) for name in names)

    @contextlib.contextmanager
    def visibility(self, seconds: int) -> Iterator[None]:
        """The work queue's visibility timeout set to ``seconds`` meanwhile (moto's attribute, which the
        stack's poller meets at each receive), then set back."""
        name = "VisibilityTimeout"
        was = self.sqs.get_queue_attributes(QueueUrl=self.work, AttributeNames=[name])["Attributes"][name]
        self.sqs.set_queue_attributes(QueueUrl=self.work, Attributes={name: str(seconds)})
        try:
            yield
        finally:
            self.sqs.set_queue_attributes(QueueUrl=self.work, Attributes={name: was})

    def dead_letters(self) -> list[dict[str, Any]]:
        """Every message in the dead-letter queue, left there (visible again a moment later)."""
        answer = self.sqs.receive_message(
            QueueUrl=self.dead, MaxNumberOfMessages=10, VisibilityTimeout=0, AttributeNames=["All"]
        )
        return list(answer.get("Messages", []))


def in_use_refresh_later(aws: Aws, name: str) -> None:
    """The client's token item as in use now, its refresh due only in 50 minutes (no pre-refresh run
    hands it out meanwhile: the messages a test sends are its only ones)."""
    aws.dynamodb.update_item(
        TableName=aws.table,
        Key={"pk": {"S": f"client#{name}"}, "sk": {"S": "token"}},
        UpdateExpression="SET lastRequestedAt = :now, dueKind = :refresh, dueAt = :later",
        ExpressionAttributeValues={
            ":now": {"N": str(time.time())},
            ":refresh": {"S": "refresh"},
            ":later": {"N": str(round(time.time() + 3000, 3))},
        },
    )


def due_now(aws: Aws, name: str) -> None:
    """The client's refresh due now, as when the claim its message carried lapses: the dispatcher hands
    it out again."""
    aws.dynamodb.update_item(
        TableName=aws.table,
        Key={"pk": {"S": f"client#{name}"}, "sk": {"S": "token"}},
        UpdateExpression="SET dueAt = :now",
        ExpressionAttributeValues={":now": {"N": str(round(time.time(), 3))}},
    )


def outcomes(lines: list[str], names: list[str]) -> dict[str, list[str]]:
    """The outcomes the worker logged for each of ``names``' work, in order."""
    found: dict[str, list[str]] = {name: [] for name in names}
    for line in lines:
        if '"scheduled work done"' in line:
            document = json.loads(line[line.index("{") :])
            found.get(document["client"], []).append(document["outcome"])
    return found


def checked_once(aws: Aws, name: str) -> bool:
    """The client's first check ran: its next is due in an hour."""
    return float(item(aws, name, "record")["dueAt"]["N"]) > time.time() + 3000


def item(aws: Aws, name: str, kind: str) -> dict[str, Any]:
    key = {"pk": {"S": f"client#{name}"}, "sk": {"S": kind}}
    return dict(aws.dynamodb.get_item(TableName=aws.table, Key=key, ConsistentRead=True)["Item"])


@pytest.fixture
def api(queue_stack: QueueStack) -> Iterator[Api]:
    """The test's API client on the queue stack; after the test, a failing one too, the whole-system
    check on that stack (every client asked Zus for a token): what it finds is the data lost of every
    row the test wrote (so no row of a test that ran is "unchecked"), and fails the test."""
    stack, moto, _ = queue_stack
    api = Api(stack.api, stack.credentials_file)
    RESULTS.begin()
    yield api
    problems = SystemCheck(Emulator(stack.zus), Aws(moto.url, STACK)).run(api.deleted, thorough=True).problems
    for row in RESULTS.written():
        row.integrity_checked += 1
        row.data_lost += len(problems)
    assert problems == []


def message(kind: str, name: str, due_at: str) -> str:
    return json.dumps({"kind": kind, "client": name, "dueAt": float(due_at)})


def due_for_refresh(api: Api, emulator: Emulator, aws: Aws, name: str) -> None:
    """``name`` created with a short-lived token (less than the refresh margin left), in use, its
    refresh due only in 50 minutes (no pre-refresh run hands it out meanwhile: the test's messages are
    its only ones)."""
    emulator.config(tokenLifetimeSeconds=180)
    try:
        assert api.create(name).status == 201
    finally:
        emulator.config(tokenLifetimeSeconds=3600)
    wait_until(lambda: float(item(aws, name, "record")["dueAt"]["N"]) > time.time() + 3000, 60, "its first check")
    in_use_refresh_later(aws, name)


def worker_visibility() -> int:
    """The work queue's visibility timeout for the worker's AWS-fault cases: the worker's timeout from
    template.yaml, the longest one invocation can take (the local runtime ends it there, as Lambda
    does), and the least AWS allows an SQS event source. The stack's 3 s (360 s at ``--schedule-scale
    120``) is shorter than one invocation under these faults (four boto3 attempts per call, 5 s each
    with latency): a message came back, and was dead-lettered after its third receive, while its first
    invocation still ran, which the template's 360 s against the worker's 60 s never allows."""
    resources = load_template(ROOT / "template.yaml")["Resources"]
    return int(resources["WorkerFunction"]["Properties"]["Timeout"])


# The worker's outcomes for refresh work it acknowledged without doing it: due again once its claim lapses.
DUE_AGAIN = ("failed", "deferred")

# The worker's refresh reads and writes the token item (DynamoDB) on every message; its client's
# secret may come from the container's memory, so DynamoDB is the service every case meets.
WORKER_CASES = profile(
    [("dynamodb", "throttle", 0.3), ("dynamodb", "500", 1.0)],
    [
        ("dynamodb", kind, rate)
        for kind in ("throttle", "provisioned", "500", "latency", "drop")
        for rate in (0.1, 0.3, 1.0)
    ],
)


@pytest.mark.parametrize(
    ("service", "kind", "rate"), WORKER_CASES, ids=[f"{s}-{k}-{r:.0%}" for s, k, r in WORKER_CASES]
)
def test_the_worker_under_aws_faults(queue_stack: QueueStack, api: Api, service: str, kind: str, rate: float) -> None:
    """Refresh work sent while the worker's AWS calls fail: the faults stay on until each message met
    one or was done, then clear; every refresh is then done once (a message whose invocation failed is
    redelivered, never dead-lettered; work that failed after the worker took it on, or that it deferred
    to another holder's live lease, is acknowledged, still due, and handed out again by the dispatcher
    each time its claim is made to lapse) and the system is intact."""
    stack, moto, proxy = queue_stack
    emulator, aws, queues = Emulator(stack.zus), Aws(moto.url, STACK), Queues(moto.url)
    row = RESULTS.row(f"aws faults: the worker, {service} {kind} at {rate:.0%}")
    names = [unique("aws-worker") for _ in range(3)]
    for name in names:
        due_for_refresh(api, emulator, aws, name)
    client_ids = {name: api.get(name).json()["clientId"] for name in names}
    # The function's read timeout, plus one second (``zus_m2m.wiring.AWS_CONFIG``).
    latency_ms = 6000 if kind == "latency" else 0
    before = emulator.stats()["tokenRequests"]
    fired_before = proxy.fired(service)
    dead_before = queues.count(queues.dead)  # an earlier case's dead letters are that case's
    started = len(stack.lines)

    visibility = worker_visibility() if SOAK else None  # None: the stack's own 3 s
    patience = max(visibility or 0, 30)  # a loaded machine's invocations, beyond the visibility timeout

    def refreshed(name: str) -> bool:
        return float(item(aws, name, "token")["expiresAt"]["N"]) > time.time() + 3000

    with queues.visibility(visibility) if visibility else contextlib.nullcontext():
        with proxy.faulted(AwsFault(service, kind, rate, latency_ms=latency_ms)):
            queues.send([message("refresh", name, item(aws, name, "token")["dueAt"]["N"]) for name in names])
            # Until a fault fired and the worker finished an invocation with it (its messages done, or
            # failed and to be received again): at most the worker's timeout.
            wait_until(
                lambda: (
                    proxy.fired(service) > fired_before
                    and any("-> WorkerFunction" in line for line in stack.lines[started:])
                ),
                patience + 30,
                "the faults to meet the work",
            )
        fired = proxy.fired(service) - fired_before
        # A message whose invocation failed comes back once its visibility timeout has passed.
        wait_until(lambda: queues.count(queues.work) == 0, patience + 60, "every message to be acknowledged")
    # Work the worker took on and failed for AWS's reason, or deferred to another holder's live lease (a
    # timed-out invocation's), is acknowledged and stays due (outcomes "failed", "deferred"): the
    # dispatcher hands it out again each time its claim lapses, here 50 minutes on, so the case makes
    # it lapse after each such outcome. Work whose message was lost has no outcome and is never redone.
    lapsed: Counter[str] = Counter()

    def done_or_due_again() -> bool:
        worked = outcomes(stack.lines[started:], names)
        for name in names:
            tries = sum(1 for outcome in worked[name] if outcome in DUE_AGAIN)
            if worked[name][-1:] and worked[name][-1] in DUE_AGAIN and lapsed[name] < tries and not refreshed(name):
                assert item(aws, name, "token")["dueKind"]["S"] == "refresh", f"{name}'s work is no longer due"
                due_now(aws, name)
                lapsed[name] = tries
        return all(refreshed(name) for name in names)

    try:
        try:
            wait_until(done_or_due_again, 90, "the work to be done")
        except pytest.fail.Exception:
            pytest.fail(f"the work was not done; the worker's outcomes: {outcomes(stack.lines[started:], names)}")
    finally:  # the row counts a case whose work was not done too
        after = emulator.stats()["tokenRequests"]
        done = {name: after.get(client_ids[name], 0) - before.get(client_ids[name], 0) for name in names}
        dead = queues.count(queues.dead) - dead_before
        row.requests += len(names)
        row.successes += sum(1 for name in names if refreshed(name))
        row.violations += dead + sum(1 for name in names if done[name] < 1 or not refreshed(name))
        if lapsed:
            row.errors["failed or deferred, due again"] += len(lapsed)
        row.fired(fired)
    batches = [line for line in stack.lines[started:] if "-> WorkerFunction" in line]
    assert fired > 0, "the fault never fired"
    assert dead == 0
    assert all(count >= 1 for count in done.values()), done
    assert batches


def test_a_message_delivered_again_and_at_once_does_its_work_once(queue_stack: QueueStack, api: Api) -> None:
    stack, moto, _ = queue_stack
    emulator, aws = Emulator(stack.zus), Aws(moto.url, STACK)
    queues = Queues(moto.url)
    row = RESULTS.row(f"queue: the same message {COPIES} times at once (a refresh, an idle client's check)")
    refreshed, checked = unique("redelivered"), unique("rechecked")
    # The refreshed client's token (from its create) has less than the margin (half its life: 90 s) and
    # the horizon left
    emulator.config(tokenLifetimeSeconds=180)
    try:
        assert api.create(refreshed).status == 201
    finally:
        emulator.config(tokenLifetimeSeconds=3600)
    assert api.create(checked).status == 201
    client_ids = {name: api.get(name).json()["clientId"] for name in (refreshed, checked)}
    for name in (refreshed, checked):  # each one's first check, at once; the next in an hour
        wait_until(functools.partial(checked_once, aws, name), 60, "a check")
    # ... in use, and due for its refresh only in 50 minutes (so that no pre-refresh run hands it out
    # meanwhile: the copies below are its only messages)
    in_use_refresh_later(aws, refreshed)
    aws.forget_token(checked)  # idle: its check must mint a token
    before = emulator.stats()["tokenRequests"]
    started = len(stack.lines)

    queues.send([message("refresh", refreshed, item(aws, refreshed, "token")["dueAt"]["N"])] * COPIES)
    queues.send([message("rotation", checked, item(aws, checked, "record")["dueAt"]["N"])] * COPIES)
    wait_until(lambda: queues.count(queues.work) == 0, 60, "every copy to be acknowledged")

    after = emulator.stats()["tokenRequests"]
    done = {name: after.get(client_ids[name], 0) - before.get(client_ids[name], 0) for name in client_ids}
    batches = [line for line in stack.lines[started:] if "-> WorkerFunction" in line]
    row.requests += 2 * COPIES
    row.successes += 2 * COPIES - queues.count(queues.dead)
    row.violations += sum(abs(count - 1) for count in done.values()) + queues.count(queues.dead)
    row.violations += sum(1 for line in batches if "failed" in line)
    assert done == {refreshed: 1, checked: 1}
    assert queues.count(queues.dead) == 0
    assert not [line for line in batches if "failed" in line]
    token = item(aws, refreshed, "token")
    assert float(token["expiresAt"]["N"]) > time.time() + 3000  # renewed (an hour's token)
    assert float(token["dueAt"]["N"]) == pytest.approx(float(token["expiresAt"]["N"]) - 300)


def test_poisoned_messages_reach_the_dead_letters_and_good_work_goes_on(queue_stack: QueueStack, api: Api) -> None:
    stack, moto, _ = queue_stack
    aws, queues = Aws(moto.url, STACK), Queues(moto.url)
    row = RESULTS.row("queue: poisoned messages (malformed, unknown kind, unknown client)")
    good = unique("beside-poison")
    assert api.create(good).status == 201
    wait_until(lambda: float(item(aws, good, "record")["dueAt"]["N"]) > time.time() + 3000, 60, "its first check")
    first_check = float(item(aws, good, "record")["dueAt"]["N"])
    poison = [
        "not json",
        json.dumps({"kind": "refresh", "client": good}),
        json.dumps({"kind": "refresh", "client": good, "dueAt": 1.0, "more": True}),
        json.dumps({"kind": "rotate-everything", "client": good, "dueAt": 1.0}),
        json.dumps({"kind": "rotation", "client": "nobody-here", "dueAt": 1.0}),
        json.dumps({"kind": "refresh", "client": "../../etc", "dueAt": 1.0}),
    ]
    good_body = message("rotation", good, item(aws, good, "record")["dueAt"]["N"])
    started = len(stack.lines)

    queues.send([*poison, good_body])

    def all_dead() -> list[dict[str, Any]]:
        dead = queues.dead_letters()
        return dead if sorted(m["Body"] for m in dead) == sorted(poison) else []

    dead = wait_until(all_dead, 60, "the poisoned messages in the dead-letter queue")
    wait_until(lambda: queues.count(queues.work) == 0, 60, "the work queue to drain")
    lines = stack.lines[started:]
    batches = [line for line in lines if "-> WorkerFunction" in line]
    receives = {m["Body"]: int(m["Attributes"]["ApproximateReceiveCount"]) for m in dead}
    crashed = [line for line in batches if "failed (" in line]
    good_done = float(item(aws, good, "record")["dueAt"]["N"]) > first_check  # checked again: the next moved on
    row.requests += len(poison) + 1
    row.successes += int(good_done)
    row.errors["dead-lettered"] += len(dead)
    row.violations += len(crashed) + int(not good_done) + sum(1 for count in receives.values() if count < 3)
    assert not crashed, crashed  # refused messages, never a failed invocation
    assert all(count >= 3 for count in receives.values()), receives  # each one had its three receives
    assert good_done
    # ... and only the dead letters stay: emptied here, so that the session ends as it began
    queues.sqs.purge_queue(QueueUrl=queues.dead)
