"""The zus-m2m API's routes as methods: what the CLI and ``TokenProvider`` call.

Each method sends one request through a ``Transport`` and returns the answer's JSON, or raises the
typed error its problem document describes. Nothing is retried here; ``TokenProvider`` does that for
the token route.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import botocore.session

from zus_m2m_client.errors import ZusM2MApiError, error_from_response
from zus_m2m_client.transport import HttpResponse, SigV4Transport, Transport

_CLIENT_NAME = re.compile(r"(?!\.{1,2}$)[a-z0-9._-]{1,64}")
MAX_MIN_TTL = 3000  # the token route's upper bound for minTtl
MAX_PAGE_SIZE = 100  # GET /app-clients?limit=


def validate_client_name(name: str) -> str:
    """A managed client's name: 1-64 characters of ``a-z0-9._-`` (lower case; not ``.`` or ``..``)."""
    if not isinstance(name, str) or not _CLIENT_NAME.fullmatch(name):
        raise ValueError(f"a client name is 1-64 characters of a-z0-9._- (lower case; not '.' or '..'), not {name!r}")
    return name


def fingerprint(access_token: str) -> str:
    """What names a token without revealing it: the first 16 hex characters of its SHA-256."""
    return hashlib.sha256(access_token.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class AccessToken:
    """A Zus access token as the token route answered it. Its repr shows the fingerprint, never the token."""

    access_token: str = field(repr=False)
    token_type: str
    expires_in: int  # seconds left when the API answered
    expires_at: int  # seconds since the Unix epoch, by the API's clock

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.access_token)

    def __repr__(self) -> str:
        return (
            f"AccessToken(fingerprint={self.fingerprint!r}, token_type={self.token_type!r}, "
            f"expires_in={self.expires_in!r}, expires_at={self.expires_at!r})"
        )


class ZusM2MApi:
    """The zus-m2m API of one deployment, every request signed with SigV4 (or sent through ``transport``)."""

    def __init__(
        self,
        api_url: str,
        *,
        session: botocore.session.Session | None = None,
        region: str | None = None,
        transport: Transport | None = None,
    ) -> None:
        self.transport: Transport = (
            transport if transport is not None else SigV4Transport(api_url, session=session, region=region)
        )
        self.api_url = api_url

    def __repr__(self) -> str:
        return f"ZusM2MApi(api_url={self.api_url!r})"

    def create_client(
        self, name: str, *, role_name: str | None = None, consumers: Sequence[str] | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"name": validate_client_name(name)}
        if role_name is not None:
            body["roleName"] = role_name
        if consumers:
            body["consumers"] = list(consumers)
        return self._object(self._call("POST", "/app-clients", body=body))

    def list_clients(self, *, limit: int | None = None, page_size: int | None = None) -> list[dict[str, Any]]:
        """Every managed client (at most ``limit``), read ``page_size`` at a time (default: the API's page)."""
        if limit is not None and limit < 0:
            raise ValueError("limit is a number of clients >= 0")
        return list(itertools.islice(self.iter_clients(page_size=page_size), limit))

    def iter_clients(self, *, page_size: int | None = None) -> Iterator[dict[str, Any]]:
        """Every managed client, a page at a time: the next page is asked for when this one is used up."""
        next_token: str | None = None
        while True:
            clients, next_token = self.list_page(page_size=page_size, next_token=next_token)
            yield from clients
            if next_token is None:
                return

    def list_page(
        self, *, page_size: int | None = None, next_token: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of clients and the ``nextToken`` of the next (None on the last)."""
        query: dict[str, str] = {}
        if page_size is not None:
            if not 1 <= page_size <= MAX_PAGE_SIZE:
                raise ValueError(f"page_size is 1 to {MAX_PAGE_SIZE}")
            query["limit"] = str(page_size)
        if next_token is not None:
            query["nextToken"] = next_token
        answer = self._object(self._call("GET", "/app-clients", query=query))
        clients = answer.get("appClients")
        following = answer.get("nextToken")
        if not isinstance(clients, list) or not isinstance(following, str | None):
            raise _unexpected(200, "GET /app-clients answered without an appClients list and a nextToken")
        return clients, following or None

    def drift(self) -> dict[str, Any]:
        """The app clients at Zus the deployment does not manage, and its clients missing at Zus."""
        return self._object(self._call("GET", "/app-clients-drift"))

    def get_client(self, name: str) -> dict[str, Any]:
        return self._object(self._call("GET", _client_path(name)))

    def set_consumers(self, name: str, consumers: Sequence[str]) -> dict[str, Any]:
        """Replace the IAM principals (ARNs) allowed to get the client's tokens."""
        return self._object(self._call("PATCH", _client_path(name), body={"consumers": list(consumers)}))

    def delete_client(self, name: str) -> None:
        self._call("DELETE", _client_path(name))

    def start_rotation(self, name: str) -> dict[str, Any]:
        return self._object(self._call("POST", _client_path(name) + "/rotations"))

    def token(self, name: str, *, min_ttl: int | None = None, refused: str | None = None) -> AccessToken:
        """A token with at least ``min_ttl`` seconds left; ``refused`` names (by fingerprint) one Zus refused."""
        query: dict[str, str] = {}
        if min_ttl is not None:
            query["minTtl"] = str(min_ttl)
        if refused is not None:
            query["refused"] = refused
        document = self._object(self._call("GET", _client_path(name) + "/token", query=query))
        try:
            token = AccessToken(
                access_token=_typed(document, "access_token", str),
                token_type=_typed(document, "token_type", str),
                expires_in=_typed(document, "expires_in", int),
                expires_at=_typed(document, "expires_at", int),
            )
        except (KeyError, TypeError):
            raise _unexpected(200, "the token route answered without access_token, token_type and expiry") from None
        if not token.access_token:
            raise _unexpected(200, "the token route answered an empty access_token")
        return token

    def _call(
        self, method: str, path: str, *, query: dict[str, str] | None = None, body: object = None
    ) -> HttpResponse:
        response = self.transport.request(method, path, query=query, body=body)
        if response.status >= 400:
            raise error_from_response(response.status, response.headers, response.body, now=time.time())
        return response

    @staticmethod
    def _object(response: HttpResponse) -> dict[str, Any]:
        try:
            document = json.loads(response.body)
        except (ValueError, UnicodeDecodeError):
            document = None
        if not isinstance(document, dict):
            raise _unexpected(response.status, f"the API answered {response.status} without a JSON object")
        return document


def _client_path(name: str) -> str:
    return f"/app-clients/{validate_client_name(name)}"


def _typed(document: dict[str, Any], key: str, kind: type[Any]) -> Any:
    value = document[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise TypeError(key)
    return value


def _unexpected(status: int, detail: str) -> ZusM2MApiError:
    return ZusM2MApiError(detail, status=status, title="Unexpected Answer")
