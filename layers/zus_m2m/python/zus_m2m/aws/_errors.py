"""Translate botocore failures into the service's errors, in one place for every adapter."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from botocore.exceptions import BotoCoreError, ClientError

from zus_m2m.errors import StoreUnavailable


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
