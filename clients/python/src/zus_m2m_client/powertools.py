"""``ZusTokenProvider``: Zus access tokens through Powertools' Parameters utility, for Lambda authors who
fetch every parameter and secret that way (``pip install 'zus-m2m-client[powertools]'``).

    tokens = ZusTokenProvider("https://abc123.execute-api.us-east-1.amazonaws.com")
    token = tokens.get("billing-service", max_age=60)  # the access token, a str

A ``BaseProvider`` whose parameter name is the managed client's name. Under Powertools' own cache
(``max_age``, default ``POWERTOOLS_PARAMETERS_MAX_AGE`` or 300 s) sits one ``TokenProvider`` per client,
so a value that outlives ``max_age`` is taken from the process's token (refreshed ahead, single flight,
Retry-After) and not from the network. A cached value never outlives its token: it is kept for
``max_age`` seconds or until the token has ``min_ttl`` seconds left, whichever comes first.
``force_fetch=True`` skips both caches: the client's ``TokenProvider`` asks zus-m2m's token route once more
(it answers its cached token unless it was refused) and holds the answer. When Zus refuses a token,
``report_refused(name, token)`` drops it from both caches and the next fetch names it, as ``ZusAuth`` does.
Failures raise Powertools' ``GetParameterError``, the ``ZusM2MError`` (typed, safe to log) as its
``__cause__``.

Powertools is imported by this module only: the rest of the package does not need it.
"""

from __future__ import annotations

import os
import threading
from datetime import datetime, timedelta
from typing import Any

import botocore.session

try:
    from aws_lambda_powertools.shared import constants
    from aws_lambda_powertools.shared.functions import resolve_max_age
    from aws_lambda_powertools.utilities.parameters.base import BaseProvider, ExpirableValue
    from aws_lambda_powertools.utilities.parameters.constants import DEFAULT_MAX_AGE_SECS
    from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError
except ImportError as missing:
    raise ImportError(
        "zus_m2m_client.powertools needs Powertools for AWS Lambda: pip install 'zus-m2m-client[powertools]'"
    ) from missing

from zus_m2m_client.api import AccessToken, validate_client_name
from zus_m2m_client.errors import ConfigurationError, ZusM2MError
from zus_m2m_client.tokens import DEFAULT_REFRESH_MARGIN, TokenProvider

API_URL_ENV = "ZUS_M2M_API_URL"


class ZusTokenProvider(BaseProvider):
    """Zus access tokens by managed client name from the zus-m2m API at ``api_url``; the other options
    are ``TokenProvider``'s, for every client's provider."""

    def __init__(
        self,
        api_url: str,
        *,
        session: botocore.session.Session | None = None,
        region: str | None = None,
        min_ttl: float = 60.0,
        refresh_margin: float = DEFAULT_REFRESH_MARGIN,
        max_wait: float = 20.0,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # Powertools leaves it unannotated
        self.api_url = api_url
        self._options: dict[str, Any] = {
            "session": session,
            "region": region,
            "min_ttl": min_ttl,
            "refresh_margin": refresh_margin,
            "max_wait": max_wait,
        }
        self._providers: dict[str, TokenProvider] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ZusTokenProvider(api_url={self.api_url!r})"

    def token_provider(self, name: str) -> TokenProvider:
        """The process's ``TokenProvider`` of client ``name`` (made on first use)."""
        with self._lock:
            provider = self._providers.get(name)
            if provider is None:
                provider = TokenProvider(self.api_url, validate_client_name(name), **self._options)
                self._providers[name] = provider
            return provider

    def get(  # type: ignore[override]  # a token has no transform and takes no SDK options
        self, name: str, max_age: int | None = None, force_fetch: bool = False
    ) -> str:
        """Client ``name``'s access token: from the cache while younger than ``max_age`` and its token
        has ``min_ttl`` seconds left; else from the client's ``TokenProvider``; with ``force_fetch``,
        from the token route."""
        max_age = resolve_max_age(env=os.getenv(constants.PARAMETERS_MAX_AGE_ENV, DEFAULT_MAX_AGE_SECS), choice=max_age)
        key = self._build_cache_key(name=name)
        if not force_fetch and self.has_not_expired_in_cache(key):
            return str(self.fetch_from_cache(key))
        try:
            token = self._fetch(name, force=force_fetch)
        except (ZusM2MError, ValueError) as exc:
            raise GetParameterError(str(exc)) from exc
        if max_age > 0:
            good_for = token.expires_in - self.token_provider(name).min_ttl
            until = datetime.now() + timedelta(seconds=min(max_age, max(0, good_for)))
            self.store[key] = ExpirableValue(token.access_token, until)
        return token.access_token

    def report_refused(self, name: str, access_token: str) -> None:
        """Zus refused ``access_token`` of client ``name``: drop it, and have the next fetch name it."""
        key = self._build_cache_key(name=name)
        cached = self.store.get(key)
        if cached is not None and cached.value == access_token:
            del self.store[key]
        self.token_provider(name).report_refused(access_token)

    def _fetch(self, name: str, *, force: bool) -> AccessToken:
        return self.token_provider(name).get_token(fresh=force)

    def _get(self, name: str, **sdk_options: Any) -> str:
        return self._fetch(name, force=False).access_token

    def _get_multiple(self, path: str, **sdk_options: Any) -> dict[str, str]:
        raise NotImplementedError("tokens are fetched one client at a time: get(name)")


_DEFAULT: dict[str, ZusTokenProvider] = {}
_DEFAULT_LOCK = threading.Lock()


def get_token(name: str, max_age: int | None = None, force_fetch: bool = False) -> str:
    """``get_parameter``'s counterpart: client ``name``'s access token from the zus-m2m API named by
    ``ZUS_M2M_API_URL``, through one ``ZusTokenProvider`` per process (default credentials)."""
    api_url = os.environ.get(API_URL_ENV, "")
    if not api_url:
        raise GetParameterError(f"{API_URL_ENV} is not set: the zus-m2m API's URL") from ConfigurationError(API_URL_ENV)
    with _DEFAULT_LOCK:
        provider = _DEFAULT.get(api_url)
        if provider is None:
            provider = _DEFAULT[api_url] = ZusTokenProvider(api_url)
    return provider.get(name, max_age=max_age, force_fetch=force_fetch)
