"""Errors every layer of zus-m2m speaks.

Adapters (the Zus HTTP client, the boto3 stores) translate their libraries' exceptions into these
once, with ``raise ... from exc``; domain logic and handlers only ever see these. Each class states
the HTTP status and problem title the service API answers with, on its ``class`` line (Python
refuses a subclass that does not), so the edge maps an error to a response by reading two
attributes instead of walking an isinstance chain. No message ever carries a secret or a token:
callers build messages from operation names, statuses and error codes only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from zus_m2m.values import ZusQuota


class ZusM2MError(Exception):
    """Base of every error the service raises on purpose."""

    http_status: ClassVar[int]
    title: ClassVar[str]
    retry_after: float | None = None

    def __init_subclass__(cls, *, http_status: int, title: str, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.http_status = http_status
        cls.title = title

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


# --- the service's own errors, raised by domain logic -------------------------------------------


class InvalidRequest(ZusM2MError, http_status=400, title="Bad Request"):
    """The caller's input is malformed."""


class UnprocessableRequest(ZusM2MError, http_status=422, title="Unprocessable Content"):
    """The input is well formed but cannot be acted on, e.g. a role Zus does not know."""


class Forbidden(ZusM2MError, http_status=403, title="Forbidden"):
    """The caller is not an admin of the stack, or not a consumer of the client it asks a token of."""


class ResourceNotFound(ZusM2MError, http_status=404, title="Not Found"):
    pass


class ResourceConflict(ZusM2MError, http_status=409, title="Conflict"):
    pass


class Throttled(ZusM2MError, http_status=429, title="Too Many Requests"):
    """The service refuses to spend more of a client's token budget right now."""

    def __init__(self, detail: str, retry_after: float) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class TemporarilyUnavailable(ZusM2MError, http_status=503, title="Service Unavailable"):
    """A dependency failed in a way a later retry may not."""

    retry_after: float

    def __init__(self, detail: str, retry_after: float = 5.0) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class ConfigurationError(ZusM2MError, http_status=503, title="Service Unavailable"):
    """The deployment is missing or has a malformed setting (or the bootstrap admin's secret)."""


class StoreUnavailable(TemporarilyUnavailable, http_status=503, title="Service Unavailable"):
    """DynamoDB or Secrets Manager failed; raised by the AWS adapters."""


class AdminForbidden(TemporarilyUnavailable, http_status=503, title="Service Unavailable"):
    """Zus refused an admin call with 403: the bootstrap admin client lacks the Builder Admin role."""


class UnknownRole(UnprocessableRequest, http_status=422, title="Unprocessable Content"):
    """The role name does not exist at Zus; the message lists the roles that do."""

    def __init__(self, name: str, available: list[str]) -> None:
        listed = ", ".join(sorted(available)) or "none"
        super().__init__(f"Zus has no role named {name!r}; roles that exist: {listed}")
        self.name = name
        self.available = available


# --- errors of the Zus API, raised by the Zus client ----------------------------------------------
#
# The token endpoint's refusals mean one of four things, whatever dialect Zus's auth server speaks
# (Auth0's or RFC 6749's; ``zus_m2m.zus.client`` holds the one table): refused credentials
# (``ZusCredentialsRefused``), throttled (``ZusRateLimited``), forbidden (``ZusForbidden``), or
# unavailable (``ZusUnavailable``). Only refused credentials say anything about a secret.


class ZusError(TemporarilyUnavailable, http_status=503, title="Service Unavailable"):
    """Zus answered with an error, or did not answer: the caller can only retry later. ``quota`` is
    what Zus said of the client's hourly token quota, when it said anything."""

    def __init__(
        self,
        operation: str,
        status: int | None,
        reason: str,
        retry_after: float = 5.0,
        *,
        quota: ZusQuota | None = None,
    ) -> None:
        where = f"HTTP {status}" if status is not None else "no response"
        super().__init__(f"Zus {operation} failed ({where}): {reason}", retry_after)
        self.operation = operation
        self.status = status
        self.reason = reason
        self.quota = quota


class ZusCredentialsRefused(ZusError, http_status=503, title="Service Unavailable"):
    """The token endpoint refused the client id or secret: 401 ``invalid_client`` (RFC 6749) or 401
    ``access_denied`` (Auth0). The secret is not, not yet (a rotated secret still propagating), or no
    longer valid."""


class ZusUnauthorized(ZusError, http_status=503, title="Service Unavailable"):
    """401 on an API call: the bearer token was refused."""


class ZusForbidden(ZusError, http_status=503, title="Service Unavailable"):
    """403: the credentials are valid but may not do this: an admin call without the Builder Admin role,
    or a token request for a grant type or an audience the client may not use. A configuration error,
    never a reason to rotate a secret."""


class ZusNotFound(ZusError, http_status=503, title="Service Unavailable"):
    """404 from Zus: a dependency's answer, not a resource of this service."""


class ZusConflict(ZusError, http_status=503, title="Service Unavailable"):
    """409 from Zus."""


class ZusBadRequest(ZusError, http_status=503, title="Service Unavailable"):
    """400 or 422 from Zus: the request we built was refused; a bug or a contract change."""


class ZusRateLimited(ZusError, http_status=429, title="Too Many Requests"):
    """Zus throttled us: a 429, or Auth0's tenant-wide limit (a 500 ``access_denied`` "Global limit has
    been reached"). ``retry_after``: the seconds Zus asked us to wait. Never refused credentials."""


class ZusUnavailable(ZusError, http_status=503, title="Service Unavailable"):
    """5xx, a timeout or a connection failure after the client's bounded retries."""
