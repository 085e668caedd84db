"""Lambda's SQS event source mapping as the local stack plays it (``zus_local.queue_poller``), against moto
server: handled messages are deleted, failed ones come back after their visibility timeout, and one
received ``maxReceiveCount`` times reaches the dead-letter queue."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from integration_support import wait_until

from zus_local.aws_setup import create_queues
from zus_local.console import Console
from zus_local.event_sources import QueueSpec, QueueSubscription
from zus_local.lambda_runtime import Invocation
from zus_local.queue_poller import QueuePoller

QUEUES = {
    "Work": QueueSpec("Work", "poller-work", "arn:aws:sqs:us-east-1:123456789012:poller-work", 1, 3600, "Dead", 2),
    "Dead": QueueSpec("Dead", "poller-dead", "arn:aws:sqs:us-east-1:123456789012:poller-dead"),
}
SUBSCRIPTION = QueueSubscription(
    "Worker", "Work", "Work", batch_size=10, maximum_concurrency=2, report_batch_item_failures=True
)


class Function:
    """The function the poller invokes: it fails the bodies in ``failing`` (or raises for all, ``broken``)."""

    def __init__(self) -> None:
        self.bodies: list[str] = []
        self.failing: set[str] = set()
        self.broken = False
        self.lock = threading.Lock()

    def __call__(self, function: str, event: dict[str, Any]) -> Invocation:
        with self.lock:
            self.bodies.extend(record["body"] for record in event["Records"])
        if self.broken:
            raise RuntimeError("the function crashed")
        failures = [{"itemIdentifier": r["messageId"]} for r in event["Records"] if r["body"] in self.failing]
        return Invocation({"batchItemFailures": failures}, 1.0, False, "request", 1)


@pytest.fixture
def queues(aws: Any) -> tuple[Any, dict[str, str]]:
    sqs = aws.client("sqs")
    return sqs, create_queues(sqs, QUEUES)


@pytest.fixture
def polled(queues: tuple[Any, dict[str, str]]) -> Iterator[tuple[Function, io.StringIO]]:
    sqs, urls = queues
    function, output = Function(), io.StringIO()
    poller = QueuePoller(
        sqs,
        SUBSCRIPTION,
        QUEUES["Work"],
        urls["Work"],
        function,
        Console(out=output),
        region="us-east-1",
        concurrency=2,
        idle_pause=0.05,
    ).start()
    yield function, output
    poller.stop()


def count(sqs: Any, url: str) -> int:
    attributes = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


def test_handled_messages_are_deleted_and_a_failed_one_reaches_the_dead_letters(
    queues: tuple[Any, dict[str, str]], polled: tuple[Function, io.StringIO]
) -> None:
    sqs, urls = queues
    function, output = polled
    function.failing = {"poison"}
    for body in ("one", "two", "poison"):
        sqs.send_message(QueueUrl=urls["Work"], MessageBody=body)

    wait_until(lambda: count(sqs, urls["Dead"]) == 1, "the failed message in the dead-letter queue")

    assert sorted(set(function.bodies)) == ["one", "poison", "two"]
    assert function.bodies.count("one") == function.bodies.count("two") == 1
    assert function.bodies.count("poison") == 2  # maxReceiveCount
    assert count(sqs, urls["Work"]) == 0
    [dead] = sqs.receive_message(QueueUrl=urls["Dead"])["Messages"]
    assert dead["Body"] == "poison"
    assert "queue poller-work" in output.getvalue()
    assert "-> Worker" in output.getvalue()


def test_an_invocation_that_raises_leaves_every_message_for_another_receive(
    queues: tuple[Any, dict[str, str]], polled: tuple[Function, io.StringIO]
) -> None:
    sqs, urls = queues
    function, output = polled
    function.broken = True
    sqs.send_message(QueueUrl=urls["Work"], MessageBody="once")
    wait_until(lambda: function.bodies.count("once") >= 1, "the first delivery")
    function.broken = False

    wait_until(lambda: count(sqs, urls["Work"]) == 0, "the redelivered message to be handled")

    assert function.bodies.count("once") == 2
    assert "failed (RuntimeError)" in output.getvalue()
