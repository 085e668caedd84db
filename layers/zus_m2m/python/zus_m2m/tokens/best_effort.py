"""Writes a token call makes for the fleet's sake (giving a lease back, recording a failure or Zus's
quota, an in-use mark, a refresh ahead of expiry) whose failure must not fail the call: they run in the
invocation, before it answers, and a failure is logged, never raised to the caller."""

from __future__ import annotations

import logging
from collections.abc import Callable

from zus_m2m import errors

logger = logging.getLogger(__name__)


def quietly(job: Callable[[], object]) -> None:
    """Run ``job``; a failure is logged, never raised."""
    try:
        job()
    except errors.ZusM2MError as exc:
        logger.warning("best-effort token work failed", extra={"reason": exc.detail})
    except Exception:
        logger.exception("best-effort token work failed unexpectedly")
