"""The audit trail: one structured line per API call, written by the HTTP edge (``edge.audited``) once
the call was answered, whatever route answered it and however. It reads API Gateway's HTTP API event
(payload 2.0) as it comes, a plain mapping: the token vending function, which serves its route without
Powertools' event handler, has no event class to give it.

The line is a Powertools JSON log line (the handlers copy their Logger's configuration onto this
module's logger) whose ``audit`` key holds the event (docs/security.md lists the fields and the Logs
Insights queries over them). It names the caller, the client and the outcome, and the expiry of a
vended token, never the token, a secret, a request body or a header.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Mapping
from typing import Any

logger = logging.getLogger(__name__)

# Longer client names than the API accepts (64) are the caller's input, not a name: cut them.
_MAX_CLIENT = 128


def outcome(status: int) -> str:
    """``allowed`` (2xx/3xx), ``denied`` (401, 403: the audit metric filter counts these),
    ``rejected`` (any other 4xx) or ``failed`` (5xx)."""
    if status < 400:
        return "allowed"
    if status in (401, 403):
        return "denied"
    return "rejected" if status < 500 else "failed"


def audit_event(event: Mapping[str, Any], status: int, details: Mapping[str, Any]) -> dict[str, Any]:
    """The audit event of one answered call; ``details`` are what the route added (``client``, a
    ``problem`` kind, ``tokenExpiresAt``)."""
    context = event["requestContext"]
    iam = authorizer_iam(event)
    epoch_ms = context["timeEpoch"] or int(datetime.datetime.now(datetime.UTC).timestamp() * 1000)
    when = datetime.datetime.fromtimestamp(epoch_ms / 1000, datetime.UTC)
    client = details.get("client") or (event.get("pathParameters") or {}).get("name")
    record: dict[str, Any] = {
        "time": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "requestId": context["requestId"],
        "action": context["routeKey"],
        "client": str(client)[:_MAX_CLIENT] if client else None,
        "caller": iam.get("userArn") or None,
        "accountId": iam.get("accountId") or None,
        "accessKey": iam.get("accessKey") or None,
        "sourceIp": context["http"]["sourceIp"],
        "status": status,
        "outcome": outcome(status),
    }
    record.update({key: value for key, value in details.items() if key != "client"})
    return record


def emit(event: Mapping[str, Any], status: int, details: Mapping[str, Any]) -> None:
    # A record made and handled directly: ``logger.info`` would also look up its caller's frame, which
    # no audit line shows (a tenth of a memory-tier vend's logging).
    if logger.isEnabledFor(logging.INFO):
        extra = {"audit": audit_event(event, status, details)}
        logger.handle(logger.makeRecord(logger.name, logging.INFO, __file__, 0, "audit", (), None, extra=extra))


def authorizer_iam(event: Mapping[str, Any]) -> Mapping[str, Any]:
    """``requestContext.authorizer.iam``: API Gateway's IAM authorizer context ({} without one; a key
    may be there and null)."""
    authorizer = event["requestContext"].get("authorizer") or {}
    return authorizer.get("iam") or {}
