"""Zus access tokens from a zus-m2m deployment, for services; and the ``zus-m2m`` CLI for operators.

provider = TokenProvider("https://abc123.execute-api.us-east-1.amazonaws.com", "billing-service")
requests.get("https://api.sandbox.zusapi.com/...", auth=ZusAuth(provider))
"""

from zus_m2m_client.api import AccessToken, ZusM2MApi, fingerprint
from zus_m2m_client.auth import ZusAuth
from zus_m2m_client.errors import (
    BadRequestError,
    ConfigurationError,
    ConflictError,
    ForbiddenError,
    NotFoundError,
    ThrottledError,
    TokenRefusedError,
    TransportError,
    UnavailableError,
    ZusM2MApiError,
    ZusM2MError,
)
from zus_m2m_client.tokens import TokenProvider
from zus_m2m_client.transport import HttpResponse, SigV4Transport, Transport

__all__ = [
    "AccessToken",
    "BadRequestError",
    "ConfigurationError",
    "ConflictError",
    "ForbiddenError",
    "HttpResponse",
    "NotFoundError",
    "SigV4Transport",
    "ThrottledError",
    "TokenProvider",
    "TokenRefusedError",
    "Transport",
    "TransportError",
    "UnavailableError",
    "ZusAuth",
    "ZusM2MApi",
    "ZusM2MApiError",
    "ZusM2MError",
    "fingerprint",
]
