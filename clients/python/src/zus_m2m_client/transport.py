"""HTTP to the zus-m2m API: the small ``Transport`` interface the rest of the package talks to, and
``SigV4Transport``, which signs each request for API Gateway (service ``execute-api``) with botocore.

Credentials come from botocore's default chain (environment, shared profile, container and instance
roles), resolved on the first request and refreshed by botocore as they near expiry. The region is the
one given, else the one in an ``execute-api.<region>.amazonaws.com`` URL, else the botocore session's
(``AWS_DEFAULT_REGION``, the profile's), else ``AWS_REGION``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import urlencode, urlsplit

import botocore.session
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import BotoCoreError
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from zus_m2m_client.errors import ConfigurationError, TransportError

SERVICE = "execute-api"
DEFAULT_TIMEOUT = (3.05, 15.0)  # (connect, read) seconds
_EXECUTE_API_HOST = re.compile(r"\.execute-api\.([a-z]{2}(?:-[a-z]+)+-\d+)\.amazonaws\.com(?:\.cn)?$")
_SIGNING_DETAILS = ("CanonicalRequest:", "StringToSign:", "Signature:")


@dataclass(frozen=True)
class HttpResponse:
    """An answer from the API; ``headers`` keys are lower-case."""

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = field(default=b"", repr=False)


class Transport(Protocol):
    """Sends one request to the API and returns its answer, whatever the status.

    ``path`` starts with ``/``; ``body`` is sent as JSON when not None. Raises ``TransportError`` when
    no answer came back.
    """

    def request(
        self, method: str, path: str, *, query: Mapping[str, str] | None = None, body: object = None
    ) -> HttpResponse: ...


def normalize_api_url(api_url: str) -> str:
    """``http(s)://host[:port][/base-path]`` without a trailing slash; anything else is a ConfigurationError."""
    parts = urlsplit(api_url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.query or parts.fragment:
        raise ConfigurationError(
            "the API URL is http(s)://host[:port][/base-path] (a deployment's "
            "https://<api-id>.execute-api.<region>.amazonaws.com, make dev's http://127.0.0.1:3000), "
            "without user, query or fragment"
        )
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def region_from_url(api_url: str) -> str | None:
    """The region of an ``https://<id>.execute-api.<region>.amazonaws.com`` URL, else None (custom domains, local)."""
    match = _EXECUTE_API_HOST.search(urlsplit(api_url).hostname or "")
    return match.group(1) if match else None


def resolve_region(explicit: str | None, api_url: str, session_region: str | None) -> str:
    region = explicit or region_from_url(api_url) or session_region
    if not region:
        raise ConfigurationError(
            "no AWS region to sign requests for: pass region= (--region), use an "
            "execute-api.<region>.amazonaws.com URL, or set AWS_REGION or the profile's region"
        )
    return region


class SigV4Transport:
    """The API over HTTPS, each request signed with SigV4 for ``execute-api``."""

    def __init__(
        self,
        api_url: str,
        *,
        session: botocore.session.Session | None = None,
        region: str | None = None,
        timeout: float | tuple[float, float] = DEFAULT_TIMEOUT,
        http: requests.Session | None = None,
    ) -> None:
        self.api_url = normalize_api_url(api_url)
        self._botocore = session if session is not None else botocore.session.get_session()
        try:
            # botocore reads AWS_DEFAULT_REGION and the profile; AWS_REGION (Lambda, ECS, the AWS CLI v2) comes after.
            session_region = self._botocore.get_config_variable("region") or os.environ.get("AWS_REGION")
        except BotoCoreError as exc:  # e.g. a profile that does not exist
            raise ConfigurationError(str(exc)) from exc
        self.region = resolve_region(region, self.api_url, session_region)
        self._timeout = timeout
        self._http = http if http is not None else _http_session()
        self._credentials: Credentials | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SigV4Transport(api_url={self.api_url!r}, region={self.region!r})"

    def request(
        self, method: str, path: str, *, query: Mapping[str, str] | None = None, body: object = None
    ) -> HttpResponse:
        url = self.api_url + path + (f"?{urlencode(query)}" if query else "")
        data = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json, application/problem+json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        signed = AWSRequest(method=method, url=url, data=data, headers=headers)
        with _signing_details_hidden():
            SigV4Auth(self._resolved_credentials(), SERVICE, self.region).add_auth(signed)
        prepared = requests.Request(method, url, headers=dict(signed.headers.items()), data=data).prepare()
        try:
            answer = self._http.send(prepared, timeout=self._timeout, allow_redirects=False)
        except requests.RequestException as exc:
            raise TransportError(f"no answer from {self.api_url}: {type(exc).__name__}") from exc
        return HttpResponse(answer.status_code, {k.lower(): v for k, v in answer.headers.items()}, answer.content)

    def _resolved_credentials(self) -> Credentials:
        with self._lock:
            if self._credentials is None:
                try:
                    found = self._botocore.get_credentials()
                except BotoCoreError as exc:
                    raise ConfigurationError(f"AWS credentials could not be loaded: {exc}") from exc
                if found is None:
                    raise ConfigurationError(
                        "no AWS credentials found (environment, shared profile, container or instance role)"
                    )
                self._credentials = found
            return self._credentials


def _http_session() -> requests.Session:
    """A pooled session that retries only connections that never opened (the request was not sent)."""
    session = requests.Session()
    retry = Retry(total=None, connect=2, read=0, redirect=0, status=0, other=0, backoff_factor=0.2)
    adapter = HTTPAdapter(max_retries=retry, pool_maxsize=16)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


class _HideSigningDetails(logging.Filter):
    """botocore logs the canonical request (with the session token), the string to sign and the
    signature at DEBUG; while this package signs, those records are dropped."""

    def __init__(self) -> None:
        super().__init__()
        self.active = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        return not (getattr(self.active, "on", False) and str(record.msg).startswith(_SIGNING_DETAILS))


_hide_signing_details = _HideSigningDetails()
logging.getLogger("botocore.auth").addFilter(_hide_signing_details)


@contextlib.contextmanager
def _signing_details_hidden() -> Iterator[None]:
    _hide_signing_details.active.on = True
    try:
        yield
    finally:
        _hide_signing_details.active.on = False
