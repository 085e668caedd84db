"""The Zus HTTP client: every Zus call the service makes (the token grant, the role lookup, and the app
client calls of the guide's steps 1-4 and after), with timeouts, bounded retries and typed errors.

Retries come from urllib3's ``Retry`` mounted on the session: connection failures are retried for
every call (the request never reached Zus), while read timeouts and 502/503/504 are retried only for
GET and DELETE. A create, a rotate-secret or a token request is never retried blindly: the caller
decides, because each one changes state at Zus or spends the client's hourly token allowance.

The token endpoint's refusals are classified by meaning, in one table for both dialects Zus's auth
server may speak (Auth0's and RFC 6749's): refused credentials, throttled, forbidden, unavailable
(``_OAUTH_MEANINGS``). How long to wait comes from ``Retry-After``, else (throttled) from Auth0's
``x-ratelimit-reset``, else a default; what Zus says of the client's hourly quota
(``x-ratelimit-remaining``) travels with the token or the error.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator, Mapping
from typing import Any, Final, NamedTuple

import requests
from requests.adapters import HTTPAdapter
from urllib3 import exceptions as urllib3_exceptions
from urllib3.exceptions import InvalidHeader
from urllib3.util.retry import Retry

from zus_m2m import deadline, errors
from zus_m2m.admin_values import AppClient, AppClientSecret, Role
from zus_m2m.ports import Clock
from zus_m2m.values import AccessToken, ZusQuota
from zus_m2m.zus.endpoints import (
    APP_CLIENT_PATH,
    APP_CLIENTS_PATH,
    ROLES_PATH,
    ROTATE_SECRET_PATH,
    ZusEndpoints,
)

JSON_API: Final = "application/vnd.api+json"
DEFAULT_TIMEOUT: Final = (3.05, 10.0)  # (connect, read) seconds
_MAX_PAGES: Final = 100
# A Zus call given less than this would almost surely time out: better not to start it.
_MIN_ATTEMPT_SECONDS: Final = 0.5

# Waits, in seconds: without any word from Zus, and the longest any answer can ask for (its quota is
# per rolling hour; a reset further out is a malformed header, not a reason to stop for longer).
DEFAULT_THROTTLE_WAIT: Final = 60.0
DEFAULT_RETRY_WAIT: Final = 5.0
MAX_WAIT: Final = 3600.0


class _Meaning(NamedTuple):
    status: int
    error: str | None  # the OAuth ``error`` code; None: any
    meaning: type[errors.ZusError]
    # A phrase the ``error_description`` must hold (case-insensitive); the description itself is never
    # kept or logged: it may echo what was sent.
    phrase: str = ""


# What the token endpoint's OAuth error documents mean, whichever dialect Zus's auth server speaks.
_OAUTH_MEANINGS: Final[tuple[_Meaning, ...]] = (
    _Meaning(401, "invalid_client", errors.ZusCredentialsRefused),  # RFC 6749 5.2
    _Meaning(401, "access_denied", errors.ZusCredentialsRefused),  # Auth0: a wrong secret or an unknown client
    _Meaning(403, "unauthorized_client", errors.ZusForbidden),  # Auth0: a grant type the client may not use
    _Meaning(403, "access_denied", errors.ZusForbidden),  # an audience the client may not use
    _Meaning(429, None, errors.ZusRateLimited),  # too_many_requests: the client's hourly quota
    _Meaning(500, "access_denied", errors.ZusRateLimited, "global limit"),  # Auth0: the tenant-wide limit
)

# Every other error answer (the API's JSON:API errors among them), by status; 5xx: ZusUnavailable.
_ERRORS_BY_STATUS: Final[Mapping[int, type[errors.ZusError]]] = {
    400: errors.ZusBadRequest,
    401: errors.ZusUnauthorized,
    403: errors.ZusForbidden,
    404: errors.ZusNotFound,
    409: errors.ZusConflict,
    422: errors.ZusBadRequest,
    429: errors.ZusRateLimited,
}


def default_retry() -> Retry:
    return Retry(
        total=4,
        connect=3,
        read=2,
        status=2,
        allowed_methods=frozenset({"GET", "HEAD", "DELETE"}),
        status_forcelist=(502, 503, 504),
        backoff_factor=0.2,
        backoff_jitter=0.2,
        backoff_max=2.0,
        # A long Retry-After would outlive the Lambda; the caller decides what to do with it.
        respect_retry_after_header=False,
        raise_on_status=False,
    )


def build_session(retry: Retry | None = None, pool_size: int = 32) -> requests.Session:
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry or default_retry(), pool_maxsize=pool_size)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers["User-Agent"] = "zus-m2m"
    return session


class ZusClient:
    """Talks to one Zus environment. Admin calls take a Builder Admin bearer token per call."""

    def __init__(
        self,
        endpoints: ZusEndpoints,
        session: requests.Session | None = None,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        clock: Clock = time.time,
    ) -> None:
        self.endpoints = endpoints
        self._session = session or build_session()
        self._timeout = timeout
        self._clock = clock

    # --- OAuth -------------------------------------------------------------------------------

    def request_token(self, client_id: str, client_secret: str) -> AccessToken:
        """The client-credentials grant, with the JSON body exactly as the guide's curl shows."""
        body = {
            "client_id": client_id,
            "client_secret": client_secret,
            "audience": self.endpoints.audience,
            "grant_type": "client_credentials",
        }
        response = self._send("token request", "POST", self.endpoints.token_url, json=body)
        document = _document("token request", response)
        try:
            return AccessToken(
                access_token=str(document["access_token"]),
                expires_in=int(document["expires_in"]),
                token_type=str(document.get("token_type", "Bearer")),
                quota=_quota(response),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise errors.ZusError("token request", 200, "the response has no usable access_token") from exc

    # --- roles ---------------------------------------------------------------------------------

    def find_role(self, name: str, bearer: str) -> Role:
        """Step 1 of the guide. ``data`` may be one object (as the guide shows) or a one-element array."""
        url = self.endpoints.api(ROLES_PATH)
        document = self._call("role lookup", "GET", url, bearer=bearer, params={"filter[name]": name})
        matches = [role for role in _resources(document) if role["attributes"].get("name") == name]
        if len(matches) == 1:
            return Role(id=str(matches[0]["id"]), name=name)
        every_role = self._call("role listing", "GET", url, bearer=bearer)
        raise errors.UnknownRole(name, [str(r["attributes"].get("name")) for r in _resources(every_role)])

    # --- app clients ---------------------------------------------------------------------------

    def create_app_client(self, name: str, role_id: str, bearer: str) -> AppClientSecret:
        """Step 2 of the guide. Never retried here: a blind retry could create a second client."""
        body = {
            "data": {
                "type": "auth/app-clients",
                "attributes": {"type": "machine_to_machine", "name": name, "userType": "builder"},
                "relationships": {"auth/roles": {"data": {"type": "auth/roles", "id": role_id}}},
            }
        }
        url = self.endpoints.api(APP_CLIENTS_PATH)
        document = self._call("create app client", "POST", url, bearer, json=body)
        return _with_secret("create app client", document)

    def get_app_client(self, app_client_id: str, bearer: str) -> AppClient:
        """Step 4 of the guide: any valid bearer may read an app client."""
        url = self.endpoints.api(APP_CLIENT_PATH, app_client_id=app_client_id)
        return _app_client(self._call("get app client", "GET", url, bearer)["data"])

    def list_app_clients(self, bearer: str) -> list[AppClient]:
        """Every app client, following JSON:API ``links.next`` pages on the same API host only."""
        found: list[AppClient] = []
        url: str | None = self.endpoints.api(APP_CLIENTS_PATH)
        for _ in range(_MAX_PAGES):
            if url is None:
                return found
            document = self._call("list app clients", "GET", url, bearer)
            found.extend(_app_client(resource) for resource in _resources(document))
            url = _next_page(document, self.endpoints.api_base)
        raise errors.ZusError("list app clients", 200, f"more than {_MAX_PAGES} pages")

    def delete_app_client(self, app_client_id: str, bearer: str) -> None:
        url = self.endpoints.api(APP_CLIENT_PATH, app_client_id=app_client_id)
        self._call("delete app client", "DELETE", url, bearer)

    def rotate_secret(self, app_client_id: str, bearer: str) -> AppClientSecret:
        """A new secret, shown once. Never retried here: a second rotation would lose the first secret."""
        url = self.endpoints.api(ROTATE_SECRET_PATH, app_client_id=app_client_id)
        return _with_secret("rotate secret", self._call("rotate secret", "POST", url, bearer))

    # --- transport -----------------------------------------------------------------------------

    def _timeout_within_deadline(self, operation: str, method: str) -> tuple[float, float]:
        """The configured timeouts, shortened so that every attempt fits in the invocation's time left."""
        left = deadline.time_left()
        connect, read = self._timeout
        if math.isinf(left):
            return self._timeout
        adapter = self._session.get_adapter(self.endpoints.api_base)
        retry = getattr(adapter, "max_retries", None)
        per_attempt = left / _attempts(retry if isinstance(retry, Retry) else None, method)
        if per_attempt < _MIN_ATTEMPT_SECONDS:
            raise errors.ZusUnavailable(operation, None, "too little time left in this invocation", retry_after=1.0)
        return (min(connect, per_attempt), min(read, per_attempt))

    def _call(
        self, operation: str, method: str, url: str, bearer: str | None = None, **request: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        """The JSON document a call answers with; ``request``: ``_send``'s ``json`` or ``params``."""
        return _document(operation, self._send(operation, method, url, bearer, **request))

    def _send(
        self,
        operation: str,
        method: str,
        url: str,
        bearer: str | None = None,
        *,
        json: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> requests.Response:
        """The answer of a call that succeeded (2xx/3xx); an error answer raises its ZusError."""
        headers = {"Accept": "application/json"} if bearer is None else {"Accept": JSON_API}
        if bearer is not None:
            headers["Authorization"] = f"Bearer {bearer}"
            if json is not None:
                headers["Content-Type"] = JSON_API
        timeout = self._timeout_within_deadline(operation, method)
        try:
            response = self._session.request(method, url, headers=headers, json=json, params=params, timeout=timeout)
        except requests.RequestException as exc:
            raise errors.ZusUnavailable(operation, None, _transport_failure(exc)) from exc
        if response.status_code >= 400:
            raise _error_for(operation, response, self._clock())
        return response


def _document(operation: str, response: requests.Response) -> dict[str, Any]:
    if response.status_code == 204 or not response.content:
        return {}
    try:
        document = response.json()
    except ValueError as exc:
        raise errors.ZusError(operation, response.status_code, "the response is not JSON") from exc
    if not isinstance(document, dict):
        raise errors.ZusError(operation, response.status_code, "the response is not a JSON object")
    return document


def _attempts(retry: Retry | None, method: str) -> int:
    """How many times urllib3 may send a request that times out reading its answer."""
    if retry is None or not retry.read or method not in (retry.allowed_methods or ()):
        return 1
    return 1 + int(retry.read)


def _transport_failure(exc: requests.RequestException) -> str:
    # After urllib3's retries run out, a read timeout arrives wrapped in a ConnectionError.
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    timed_out = isinstance(exc, requests.Timeout) or isinstance(reason, urllib3_exceptions.TimeoutError)
    return "timed out" if timed_out else "connection failed"


def _error_for(operation: str, response: requests.Response, now: float) -> errors.ZusError:
    status = response.status_code
    body = _json_or_none(response)
    code, description = _oauth_error(body)
    meaning = next(
        (
            rule
            for rule in _OAUTH_MEANINGS
            if code is not None
            and rule.status == status
            and rule.error in (None, code)
            and rule.phrase.lower() in description.lower()
        ),
        None,
    )
    if meaning is not None:
        error_class = meaning.meaning
        reason = f"{code} ({meaning.phrase})" if meaning.phrase else str(code)
    else:
        error_class = _ERRORS_BY_STATUS.get(status, errors.ZusUnavailable if status >= 500 else errors.ZusError)
        reason = code if code is not None else _reason(body, response)
    quota = _quota(response)
    wait = _wait(response, throttled=issubclass(error_class, errors.ZusRateLimited), quota=quota, now=now)
    return error_class(operation, status, reason, wait, quota=quota)


def _json_or_none(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _oauth_error(body: Any) -> tuple[str | None, str]:
    """An OAuth error document's ``error`` code and ``error_description`` (None, "" for other bodies)."""
    if not isinstance(body, dict) or not isinstance(body.get("error"), str):
        return None, ""
    description = body.get("error_description")
    return str(body["error"]), description if isinstance(description, str) else ""


def _reason(body: Any, response: requests.Response) -> str:
    """JSON:API titles and pointers, or the HTTP reason; never a description that might echo input."""
    if isinstance(body, dict) and isinstance(body.get("errors"), list):
        parts = []
        for error in body["errors"]:
            if isinstance(error, dict):
                pointer = (error.get("source") or {}).get("pointer")
                parts.append(f"{error.get('title', 'error')}" + (f" at {pointer}" if pointer else ""))
        return "; ".join(parts) or response.reason or "error"
    return response.reason or "error"


def _wait(response: requests.Response, *, throttled: bool, quota: ZusQuota | None, now: float) -> float:
    """Seconds to wait before asking again: ``Retry-After``; else, when throttled, until Auth0's
    ``x-ratelimit-reset``; else a default. At least 1 s, at most an hour."""
    wait = DEFAULT_THROTTLE_WAIT if throttled else DEFAULT_RETRY_WAIT
    header = response.headers.get("Retry-After")
    parsed: float | None = None
    if header:
        with contextlib.suppress(InvalidHeader):  # a malformed header falls back to what follows
            parsed = float(Retry().parse_retry_after(header))
    if parsed is not None:
        wait = parsed
    elif throttled and quota is not None:
        wait = quota.reset_at - now
    return min(MAX_WAIT, max(1.0, wait))


def _quota(response: requests.Response) -> ZusQuota | None:
    """Auth0's ``x-ratelimit-remaining`` and ``x-ratelimit-reset`` (epoch seconds), when both parse."""
    try:
        remaining = int(response.headers["x-ratelimit-remaining"])
        reset_at = float(response.headers["x-ratelimit-reset"])
    except (KeyError, ValueError):
        return None
    return ZusQuota(remaining=remaining, reset_at=reset_at) if math.isfinite(reset_at) else None


def _resources(document: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    data = document.get("data")
    items = data if isinstance(data, list) else [data] if isinstance(data, dict) else []
    for item in items:
        if isinstance(item, dict) and isinstance(item.get("attributes"), dict):
            yield item


def _next_page(document: Mapping[str, Any], api_base: str) -> str | None:
    links = document.get("links")
    next_url = links.get("next") if isinstance(links, dict) else None
    if not isinstance(next_url, str) or not next_url:
        return None
    if next_url.startswith("/"):
        return api_base + next_url
    # Never send the bearer token to another host, whatever a response says.
    return next_url if next_url.startswith(api_base + "/") else None


def _app_client(resource: Mapping[str, Any]) -> AppClient:
    attributes = resource.get("attributes") or {}
    role = ((resource.get("relationships") or {}).get("auth/roles") or {}).get("data") or {}
    return AppClient(
        id=str(resource["id"]),
        client_id=str(attributes["clientId"]),
        name=str(attributes.get("name", "")),
        role_id=str(role["id"]) if isinstance(role, dict) and role.get("id") else None,
        created_at=attributes.get("createdAt"),
        updated_at=attributes.get("updatedAt"),
    )


def _with_secret(operation: str, document: Mapping[str, Any]) -> AppClientSecret:
    try:
        resource = document["data"]
        secret = resource["attributes"]["clientSecret"]
        return AppClientSecret(app_client=_app_client(resource), client_secret=str(secret))
    except (KeyError, TypeError) as exc:
        raise errors.ZusError(operation, 200, "the response carries no clientSecret") from exc
