"""zus_local.queue_poller's reading of a function's answer, as Lambda's SQS event source reads it."""

from __future__ import annotations

import pytest

from zus_local.queue_poller import handled, sqs_event

MESSAGES = [{"MessageId": f"m{n}", "ReceiptHandle": f"r{n}", "Body": f"body {n}"} for n in range(3)]


def test_the_event_carries_each_message_as_lambda_hands_it_over() -> None:
    [first, *_] = sqs_event(MESSAGES, "arn:aws:sqs:us-east-1:123456789012:q", "us-east-1")["Records"]

    assert first["messageId"] == "m0"
    assert first["receiptHandle"] == "r0"
    assert first["body"] == "body 0"
    assert first["eventSource"] == "aws:sqs"
    assert first["eventSourceARN"] == "arn:aws:sqs:us-east-1:123456789012:q"
    assert len(first["md5OfBody"]) == 32


@pytest.mark.parametrize(
    ("answer", "report_failures", "deleted"),
    [
        (None, True, ["m0", "m1", "m2"]),
        ({"batchItemFailures": []}, True, ["m0", "m1", "m2"]),
        ({"batchItemFailures": [{"itemIdentifier": "m1"}]}, True, ["m0", "m2"]),
        # a failure the batch does not hold, or a malformed answer: the whole batch failed
        ({"batchItemFailures": [{"itemIdentifier": "elsewhere"}]}, True, []),
        ({"batchItemFailures": [{"itemIdentifier": "m1"}, {"itemIdentifier": "m1"}]}, True, []),
        ({"batchItemFailures": "m1"}, True, []),
        # without ReportBatchItemFailures an answer is a success
        ({"batchItemFailures": [{"itemIdentifier": "m1"}]}, False, ["m0", "m1", "m2"]),
    ],
)
def test_the_messages_to_delete_are_those_the_answer_does_not_name_as_failed(
    answer: object, report_failures: bool, deleted: list[str]
) -> None:
    assert [message["MessageId"] for message in handled(MESSAGES, answer, report_failures)] == deleted
