"""The reliability suite's basics: the two profiles and their sizes, names, the principals and routes
every module shares, and how a scenario runs things at once (``parallel``); it waits with the e2e
suite's ``wait_until`` (``e2e_support``), never a fixed sleep.

Two profiles: the fast one runs in ``make test``; ``ZUS_M2M_SOAK=1`` (``make soak``) runs every
scenario longer and wider. Scenario code asks ``profile(fast, soak)`` for its sizes.

The harness's other modules, one concern each: ``reliability_calls`` (the API over HTTP, every answer
timed), ``reliability_contract`` (what every answer must be), ``reliability_outside`` (the emulator and
moto, read from outside), ``reliability_integrity`` (what the service owns, checked), ``reliability_leaks``
and ``reliability_results`` (the table).
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from zus_local.local_principals import CONSUMER_USER, user_arn

ROOT = Path(__file__).resolve().parents[2]
SOAK = os.environ.get("ZUS_M2M_SOAK", "") not in ("", "0")
TABLE_FILE = os.environ.get("ZUS_M2M_RELIABILITY_TABLE", "")
AUDIENCE = "https://api.sandbox.zusapi.com"
ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET = "local-admin", "local-admin-secret"
ADMIN_CLIENT_NAME = "zus-m2m-admin"  # the bootstrap admin's record name (its secret: zus-m2m/<stage>/zus-m2m-admin)
PROBLEM_JSON = "application/problem+json"
TOKEN_ROUTE = re.compile(r"^/app-clients/[^/?]+/token")
# The local stack's consumer (make dev's IAM user in moto), the consumer of every client the suite makes.
CONSUMER_ARN = user_arn("123456789012", CONSUMER_USER)

T = TypeVar("T")
R = TypeVar("R")


def profile(fast: T, soak: T) -> T:
    return soak if SOAK else fast


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def fingerprint(access_token: str) -> str:
    """How a caller names a token Zus refused: the first 16 hex characters of its SHA-256."""
    return hashlib.sha256(access_token.encode()).hexdigest()[:16]


def parallel(function: Callable[[T], R], items: Sequence[T], workers: int) -> list[R]:
    """``function`` over ``items`` on ``workers`` threads, results in the items' order."""
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(items)))) as pool:
        return list(pool.map(function, items))
