"""Errors every layer of zus-m2m speaks.

Adapters (the Zus HTTP client, the boto3 stores) translate their libraries' exceptions into these
once, with ``raise ... from exc``; domain logic and handlers only ever see these. Each class carries
the HTTP status and problem title the service API answers with, so the edge maps an error to a
response by reading two attributes instead of walking an isinstance chain. No message ever carries a
secret or a token: callers build messages from operation names, statuses and error codes only.
"""

from __future__ import annotations


class ZusM2MError(Exception):
    """Base of every error the service raises on purpose."""

    http_status = 503
    title = "Service Unavailable"
    retry_after: float | None = None

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


# --- the service's own errors, raised by domain logic -------------------------------------------


class InvalidRequest(ZusM2MError):
    """The caller's input is malformed (400)."""

    http_status = 400
    title = "Bad Request"


class UnprocessableRequest(ZusM2MError):
    """The input is well formed but cannot be acted on (422), e.g. a role Zus does not know."""

    http_status = 422
    title = "Unprocessable Content"


class ResourceNotFound(ZusM2MError):
    http_status = 404
    title = "Not Found"


class ResourceConflict(ZusM2MError):
    http_status = 409
    title = "Conflict"


class Throttled(ZusM2MError):
    """The service refuses to spend more of a client's token budget right now (429)."""

    http_status = 429
    title = "Too Many Requests"

    def __init__(self, detail: str, retry_after: float) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class TemporarilyUnavailable(ZusM2MError):
    """A dependency failed in a way a later retry may not (503)."""

    retry_after: float

    def __init__(self, detail: str, retry_after: float = 5.0) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class ConfigurationError(ZusM2MError):
    """The deployment is missing or has a malformed setting; raised at start-up."""


class StoreUnavailable(TemporarilyUnavailable):
    """DynamoDB or Secrets Manager failed; raised by the AWS adapters."""


# --- errors of the Zus API, raised by the Zus client ----------------------------------------------


class ZusError(TemporarilyUnavailable):
    """Zus answered with an error, or did not answer. Surfaces as 503 unless a subclass says otherwise."""

    def __init__(
        self,
        operation: str,
        status: int | None,
        reason: str,
        retry_after: float = 5.0,
    ) -> None:
        where = f"HTTP {status}" if status is not None else "no response"
        super().__init__(f"Zus {operation} failed ({where}): {reason}", retry_after)
        self.operation = operation
        self.status = status
        self.reason = reason


class ZusInvalidClient(ZusError):
    """401 ``invalid_client`` from the token endpoint: the client id or secret is not (or no longer) valid."""


class ZusUnauthorized(ZusError):
    """401 on an API call: the bearer token was refused."""


class ZusForbidden(ZusError):
    """403: the credentials are valid but lack the role (e.g. a Care Team User on an admin call)."""


class ZusNotFound(ZusError):
    """404 from Zus."""


class ZusConflict(ZusError):
    """409 from Zus."""


class ZusBadRequest(ZusError):
    """400 or 422 from Zus: the request we built was refused; a bug or a contract change."""


class ZusRateLimited(ZusError):
    """429 from Zus; ``retry_after`` is what Zus asked for, in seconds."""

    http_status = 429
    title = "Too Many Requests"


class ZusUnavailable(ZusError):
    """5xx, a timeout or a connection failure after the client's bounded retries."""


class UnknownRole(UnprocessableRequest):
    """The role name does not exist at Zus; the message lists the roles that do."""

    def __init__(self, name: str, available: list[str]) -> None:
        listed = ", ".join(sorted(available)) or "none"
        super().__init__(f"Zus has no role named {name!r}; roles that exist: {listed}")
        self.name = name
        self.available = available
