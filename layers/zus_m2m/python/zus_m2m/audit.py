"""The audit trail: one structured line per API call, written by the HTTP edge (``api.resolver``) after
the call was answered, whatever route answered it and however.

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

from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2

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


def audit_event(event: APIGatewayProxyEventV2, status: int, details: Mapping[str, Any]) -> dict[str, Any]:
    """The audit event of one answered call; ``details`` are what the route added (``client``, a
    ``problem`` kind, ``tokenExpiresAt``)."""
    context = event.request_context
    iam = context.authorizer.iam
    epoch_ms = context.time_epoch or int(datetime.datetime.now(datetime.UTC).timestamp() * 1000)
    when = datetime.datetime.fromtimestamp(epoch_ms / 1000, datetime.UTC)
    client = details.get("client") or (event.path_parameters or {}).get("name")
    record: dict[str, Any] = {
        "time": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "requestId": context.request_id,
        "action": context.route_key,
        "client": str(client)[:_MAX_CLIENT] if client else None,
        "caller": iam.user_arn or None,
        "accountId": iam.account_id or None,
        "accessKey": iam.access_key or None,
        "sourceIp": context.http.source_ip,
        "status": status,
        "outcome": outcome(status),
    }
    record.update({key: value for key, value in details.items() if key != "client"})
    return record


def emit(event: APIGatewayProxyEventV2, status: int, details: Mapping[str, Any]) -> None:
    logger.info("audit", extra={"audit": audit_event(event, status, details)})
