"""How the token endpoint words its refusals, in each dialect the emulator speaks.

* ``auth0`` (the default): what an Auth0 tenant answers on ``POST /oauth/token``, and Zus's auth
  server is one. A wrong secret or an unknown client is 401 ``access_denied`` "Unauthorized"; a grant
  type the client may not use is 403 ``unauthorized_client``; an audience it may not use is 403
  ``access_denied``; past the client's hourly quota it is 429 ``too_many_requests`` without
  ``Retry-After``; every answer carries ``x-ratelimit-limit``, ``x-ratelimit-remaining`` and
  ``x-ratelimit-reset`` (epoch seconds); and the tenant-wide limit is a 500 ``access_denied`` "Global
  limit has been reached".
* ``rfc6749``: RFC 6749's words: 401 ``invalid_client``, 400 ``unsupported_grant_type``, 403
  ``access_denied``, 429 ``too_many_requests`` with ``Retry-After``, and no rate-limit headers.
"""

from __future__ import annotations

import math

from .config import AUTH0
from .tokens import OAuthError

GLOBAL_LIMIT_DESCRIPTION = "Global limit has been reached"


def bad_credentials(dialect: str) -> OAuthError:
    """A wrong secret, an unknown client id, or malformed client authentication."""
    if dialect == AUTH0:
        return OAuthError(401, "access_denied", "Unauthorized")
    return OAuthError(401, "invalid_client", "Unknown client or wrong client credentials")


def grant_not_allowed(dialect: str) -> OAuthError:
    if dialect == AUTH0:
        return OAuthError(403, "unauthorized_client", "Grant type not allowed for the client.")
    return OAuthError(400, "unsupported_grant_type", "Grant type not allowed; only client_credentials is supported")


def audience_denied(dialect: str) -> OAuthError:
    if dialect == AUTH0:
        return OAuthError(403, "access_denied", "Client is not authorized to access the requested audience.")
    return OAuthError(403, "access_denied", "Service not found for the requested audience")


def throttled(dialect: str, wait: int, description: str) -> OAuthError:
    """Past the client's hourly quota; ``wait``: seconds until a request leaves the window. Auth0 says
    when in ``x-ratelimit-reset`` (added with the other rate-limit headers), RFC 6749 in Retry-After."""
    if dialect == AUTH0:
        return OAuthError(429, "too_many_requests", description)
    return OAuthError(429, "too_many_requests", description, retry_after=wait)


def global_limit() -> OAuthError:
    """Auth0's tenant-wide limit: a 500, though it is throttling, not a server fault."""
    return OAuthError(500, "access_denied", GLOBAL_LIMIT_DESCRIPTION)


def rate_limit_headers(dialect: str, limit: int, remaining: int, reset_at: float) -> dict[str, str]:
    """Auth0's headers on every token answer: the quota, what is left of it, and when it resets."""
    if dialect != AUTH0:
        return {}
    return {
        "x-ratelimit-limit": str(limit),
        "x-ratelimit-remaining": str(max(0, remaining)),
        "x-ratelimit-reset": str(math.ceil(reset_at)),
    }
