"""Translate botocore failures into the service's errors, in one place for every adapter."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from typing import TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from zus_m2m.errors import StoreUnavailable

T = TypeVar("T")

# DynamoDB's answer to a conditional write whose condition did not hold: a decision, not a failure.
CONDITION_FAILED = ("ConditionalCheckFailedException",)


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


@contextmanager
def translated(operation: str) -> Iterator[None]:
    """Any AWS failure inside becomes ``StoreUnavailable`` naming the operation (never a value)."""
    try:
        yield
    except ClientError as exc:
        raise StoreUnavailable(f"{operation} failed: {error_code(exc) or 'AWS error'}") from exc
    except BotoCoreError as exc:
        raise StoreUnavailable(f"{operation} failed: {type(exc).__name__}") from exc


def answer_or_none(operation: str, request: Callable[[], T], *, none_when: Collection[str]) -> T | None:
    """``request()``'s answer, or None when AWS answers with an error code in ``none_when`` (a secret
    that is not there, a condition that did not hold); any other failure as ``translated`` says."""
    with translated(operation):
        try:
            return request()
        except ClientError as exc:
            if error_code(exc) in none_when:
                return None
            raise


def written(operation: str, write: Callable[[], object]) -> bool:
    """A conditional write: True when written, False when its condition did not hold."""
    return answer_or_none(operation, write, none_when=CONDITION_FAILED) is not None


# A transaction cancelled because another write touched one of its items meanwhile: retried at once, a
# few times, as the AWS SDKs' own transaction helpers do.
_TRANSACTION_ATTEMPTS = 3


def transacted(operation: str, write: Callable[[], object]) -> bool:
    """A TransactWriteItems: True when written, False when one of its conditions did not hold."""
    attempts = _TRANSACTION_ATTEMPTS
    while True:
        with translated(operation):
            try:
                write()
                return True
            except ClientError as exc:
                reasons = _cancellation_reasons(exc)
                if "ConditionalCheckFailed" in reasons:
                    return False
                attempts -= 1
                if "TransactionConflict" not in reasons or attempts == 0:
                    raise


def _cancellation_reasons(exc: ClientError) -> set[str]:
    if error_code(exc) != "TransactionCanceledException":
        return set()
    reasons = exc.response.get("CancellationReasons", [])
    return {str(reason.get("Code")) for reason in reasons}
