"""The token endpoint's parts: its errors, the hourly request log behind the 200-per-hour limit, and
the signed JWTs it issues and the API checks as bearer tokens."""

from __future__ import annotations

import math
import secrets
import uuid
from collections import deque
from dataclasses import dataclass

import jwt

from .config import is_number

WINDOW_SECONDS = 3600.0
GRANT_TYPE = "client_credentials"
# Auth0 names a client-credentials token's subject "<client id>@clients".
SUBJECT_SUFFIX = "@clients"
SECRET_GENERATION_CLAIM = "https://zus-emulator.local/secret_generation"


class OAuthError(Exception):
    """An error of the token endpoint: ``{"error": code, "error_description": description}``."""

    def __init__(self, status: int, code: str, description: str, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.code = code
        self.description = description
        self.retry_after = retry_after
        self.headers: dict[str, str] = {}


class BearerError(Exception):
    """A bearer token that is missing, malformed, badly signed, expired or names a deleted client."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@dataclass(frozen=True)
class TokenRequest:
    grant_type: str | None
    client_id: str | None
    client_secret: str | None
    audience: str | None


class RequestLog:
    """Token requests per client id in a sliding hour: one made at ``t`` counts while ``now - t < 3600``."""

    def __init__(self) -> None:
        self._times: dict[str, deque[float]] = {}

    def _window(self, client_id: str, now: float) -> deque[float]:
        window = self._times.setdefault(client_id, deque())
        while window and now - window[0] >= WINDOW_SECONDS:
            window.popleft()
        return window

    def count(self, client_id: str, now: float) -> int:
        return len(self._window(client_id, now))

    def record(self, client_id: str, now: float) -> None:
        self._window(client_id, now).append(now)

    def oldest(self, client_id: str, now: float) -> float | None:
        window = self._window(client_id, now)
        return window[0] if window else None

    def seconds_until_one_expires(self, client_id: str, now: float) -> int:
        window = self._window(client_id, now)
        return max(1, math.ceil(window[0] + WINDOW_SECONDS - now)) if window else 1

    def counts(self, now: float) -> dict[str, int]:
        """The client ids with requests in the last hour, and how many."""
        counts = {client_id: self.count(client_id, now) for client_id in list(self._times)}
        return {client_id: n for client_id, n in counts.items() if n}

    def forget(self, client_id: str) -> None:
        self._times.pop(client_id, None)

    def clear(self) -> None:
        self._times.clear()


class TokenSigner:
    """HS256 access tokens under a key made at start, with Auth0's client-credentials claims."""

    def __init__(self, audience: str) -> None:
        self.audience = audience
        self._key = secrets.token_bytes(32)

    def sign(self, *, issuer: str, client_id: str, issued_at: int, lifetime_seconds: int, generation: int = 1) -> str:
        claims = {
            "iss": issuer,
            "sub": client_id + SUBJECT_SUFFIX,
            "aud": self.audience,
            "iat": issued_at,
            "exp": issued_at + lifetime_seconds,
            "gty": "client-credentials",
            "azp": client_id,
            "jti": str(uuid.uuid4()),
            # A namespaced custom claim, as Auth0 allows: which of the client's secrets minted the token.
            SECRET_GENERATION_CLAIM: generation,
        }
        return jwt.encode(claims, self._key, algorithm="HS256")

    def verify(self, token: str) -> tuple[str, float]:
        """The client id and expiry of a token this signer issued; BearerError otherwise. The expiry
        is the caller's to check, against its own clock."""
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=["HS256"],
                audience=self.audience,
                options={
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                    "require": ["sub", "aud", "exp", "iat", "jti"],
                },
            )
        except jwt.InvalidTokenError as exc:
            raise BearerError(f"Invalid access token ({type(exc).__name__})") from None
        expires, subject = claims["exp"], claims["sub"]
        if not is_number(expires) or not isinstance(subject, str) or not subject.endswith(SUBJECT_SUFFIX):
            raise BearerError("Invalid access token (claims)")
        return subject.removesuffix(SUBJECT_SUFFIX), float(expires)
