"""The work queue (template.yaml's WorkQueue, SQS): one message per client's due work, sent in batches
of ten (SendMessageBatch's most)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from zus_m2m.aws._errors import translated
from zus_m2m.values import WorkItem

BATCH = 10


class SqsWorkQueue:
    def __init__(self, sqs: Any, queue_url: str) -> None:
        """``sqs``: a boto3 SQS client."""
        self._sqs = sqs
        self._url = queue_url

    def send(self, items: Sequence[WorkItem]) -> list[WorkItem]:
        unsent: list[WorkItem] = []
        for start in range(0, len(items), BATCH):
            batch = items[start : start + BATCH]
            entries = [{"Id": str(index), "MessageBody": item.to_message()} for index, item in enumerate(batch)]
            with translated("sending due work"):
                answer = self._sqs.send_message_batch(QueueUrl=self._url, Entries=entries)
            unsent.extend(batch[int(failed["Id"])] for failed in answer.get("Failed", []))
        return unsent
