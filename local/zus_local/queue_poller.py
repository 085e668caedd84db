"""Lambda's SQS event source mapping, played locally: for each ``SQS`` event of the template, threads
(``MaximumConcurrency`` of them) poll the queue in moto, invoke the function with an SQS event of up to
``BatchSize`` messages, and delete the messages it handled. With ``ReportBatchItemFailures`` the
function's ``batchItemFailures`` stay in the queue; an invocation that raises (or answers a failure the
batch does not hold) leaves every message. Messages left behind come back once their visibility
timeout has passed, and moto's redrive policy moves one received ``maxReceiveCount`` times to its
dead-letter queue, as SQS does.

Polls are short (moto serves one request of a service at a time: a long poll would hold every other SQS request up),
with a pause while the queue is empty. One line per batch: queue, messages, function, outcome, and the
environment (pid, cold or warm) with the invocation's duration.
"""

from __future__ import annotations

import hashlib
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from zus_local.console import Console
from zus_local.event_sources import QueueSpec, QueueSubscription
from zus_local.lambda_runtime import Invocation

Invoke = Callable[[str, Any], Invocation]


def sqs_event(messages: Sequence[dict[str, Any]], queue_arn: str, region: str) -> dict[str, Any]:
    """The event Lambda hands a function for a batch of messages ReceiveMessage returned."""
    return {
        "Records": [
            {
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": message["Body"],
                "attributes": dict(message.get("Attributes", {})),
                "messageAttributes": dict(message.get("MessageAttributes", {})),
                "md5OfBody": message.get("MD5OfBody") or hashlib.md5(message["Body"].encode()).hexdigest(),  # noqa: S324
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region,
            }
            for message in messages
        ]
    }


def handled(messages: Sequence[dict[str, Any]], result: Any, report_failures: bool) -> list[dict[str, Any]]:
    """The messages a function's answer says it handled (to delete): all of them, or with
    ``ReportBatchItemFailures`` all but the ``batchItemFailures``; none if that list names a message the
    batch does not hold or is malformed (Lambda then takes the whole batch as failed)."""
    if not report_failures or not isinstance(result, dict) or not result.get("batchItemFailures"):
        return list(messages)
    failures = result["batchItemFailures"]
    ids = {message["MessageId"] for message in messages}
    if not isinstance(failures, list):
        return []
    failed = {entry.get("itemIdentifier") for entry in failures if isinstance(entry, dict)}
    if len(failed) != len(failures) or not failed <= ids:
        return []
    return [message for message in messages if message["MessageId"] not in failed]


class QueuePoller:
    def __init__(
        self,
        sqs: Any,
        subscription: QueueSubscription,
        queue: QueueSpec,
        queue_url: str,
        invoke: Invoke,
        console: Console,
        *,
        region: str,
        concurrency: int,
        idle_pause: float = 0.2,
    ) -> None:
        """``concurrency``: the most invocations at once (the subscription's MaximumConcurrency, bounded
        by the local runtime's containers per function)."""
        self.subscription = subscription
        self.queue = queue
        self._sqs = sqs
        self._url = queue_url
        self._invoke = invoke
        self._console = console
        self._region = region
        self._threads = max(1, min(concurrency, subscription.maximum_concurrency))
        self._idle_pause = idle_pause
        self._stopping = threading.Event()
        self._workers: list[threading.Thread] = []
        self._last_problem = ""

    def start(self) -> QueuePoller:
        for number in range(self._threads):
            worker = threading.Thread(target=self._loop, name=f"queue-{self.queue.name}-{number}", daemon=True)
            worker.start()
            self._workers.append(worker)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """No new batches; waits up to ``timeout`` for batches in progress."""
        self._stopping.set()
        deadline = time.monotonic() + timeout
        for worker in self._workers:
            worker.join(timeout=max(0.0, deadline - time.monotonic()))
        self._workers.clear()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                busy = self.poll_once()
                self._last_problem = ""
            except Exception as exc:  # moto restarting or stopping: say so once, keep polling
                problem = type(exc).__name__
                if problem != self._last_problem:
                    self._console.line(f"queue {self.queue.name}: cannot receive ({problem}); retrying")
                    self._last_problem = problem
                busy = False
            if not busy:
                self._stopping.wait(self._idle_pause)

    def poll_once(self) -> bool:
        """Receive one batch and hand it to the function; False if the queue had nothing."""
        subscription = self.subscription
        messages = self._sqs.receive_message(
            QueueUrl=self._url,
            MaxNumberOfMessages=min(10, subscription.batch_size),
            WaitTimeSeconds=0,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not messages:
            return False
        label = f"queue {self.queue.name}  {len(messages)} message{'s' if len(messages) != 1 else ''}"
        label += f" -> {subscription.function}"
        started = time.perf_counter()
        try:
            invocation = self._invoke(subscription.function, sqs_event(messages, self.queue.arn, self._region))
        except Exception as exc:
            elapsed = (time.perf_counter() - started) * 1000
            self._console.line(f"{label}  failed ({type(exc).__name__})  {elapsed:.0f} ms")
            self._console.error("".join(traceback.format_exception(exc)))
            return True
        done = handled(messages, invocation.result, subscription.report_batch_item_failures)
        for start in range(0, len(done), 10):
            entries = [
                {"Id": str(index), "ReceiptHandle": message["ReceiptHandle"]}
                for index, message in enumerate(done[start : start + 10])
            ]
            self._sqs.delete_message_batch(QueueUrl=self._url, Entries=entries)
        failed = len(messages) - len(done)
        outcome = "ok" if not failed else f"{len(done)} ok, {failed} failed"
        self._console.line(f"{label}  {outcome}  {invocation.describe()}")
        return True
