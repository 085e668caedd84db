"""Signature Version 4 for ``execute-api``, both ways: signing a ``requests`` call as an AWS SDK signs a
call to API Gateway (``ExecuteApiAuth``, for tests and tools), and recomputing the signature of a
request the local API received (``recompute_signature``), with botocore's own canonicalisation.

A signature covers the method, the path and query as sent, the headers the client chose to sign (their
names travel in the ``Authorization`` header), the body's SHA-256 and the credential scope
(date/region/service). Recomputing it with the signer's secret key and comparing in constant time is
what API Gateway's IAM authorizer does before it looks at any policy.
"""

from __future__ import annotations

import datetime
import hmac
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import botocore.session
from botocore.auth import SIGV4_TIMESTAMP, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.compat import HTTPHeaders
from botocore.credentials import Credentials
from requests import PreparedRequest
from requests.auth import AuthBase

SERVICE = "execute-api"
ALGORITHM = "AWS4-HMAC-SHA256"


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class _Signer(SigV4Auth):
    """botocore's SigV4 with the signed headers fixed (the verifier must sign exactly those the client
    named; the client signs only the ones it chose to add)."""

    def __init__(self, credentials: Credentials, region: str, signed: Sequence[str]) -> None:
        super().__init__(credentials, SERVICE, region)
        self._signed = [name.lower() for name in signed]

    def headers_to_sign(self, request: AWSRequest) -> HTTPHeaders:
        chosen = HTTPHeaders()
        for name in self._signed:
            for value in request.headers.get_all(name) or []:
                chosen[name] = value
        return chosen


def _signature(signer: SigV4Auth, request: AWSRequest, timestamp: str) -> str:
    request.context["timestamp"] = timestamp
    canonical = signer.canonical_request(request)
    return str(signer.signature(signer.string_to_sign(request, canonical), request))


def recompute_signature(
    *,
    secret_key: str,
    access_key: str,
    region: str,
    timestamp: str,
    method: str,
    url: str,
    headers: Iterable[tuple[str, str]],
    signed_headers: Sequence[str],
    body: bytes,
) -> str:
    """The signature a request signed with ``secret_key`` at ``timestamp`` (``YYYYMMDDTHHMMSSZ``) carries,
    over its ``signed_headers`` as received; ``url`` is the scheme and host and the target as sent."""
    request = AWSRequest(method=method, url=url, data=body)
    for name, value in headers:
        request.headers[name] = value  # appends: a repeated header keeps every value
    return _signature(_Signer(Credentials(access_key, secret_key), region, signed_headers), request, timestamp)


def signatures_match(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.encode(), given.encode())


class ExecuteApiAuth(AuthBase):
    """``requests`` authentication that signs each request for ``execute-api`` in ``region``, as an AWS
    SDK does: the host, ``X-Amz-Date``, the content type if any and, with temporary credentials, the
    session token; the body's hash. ``clock`` (for tests) gives the signing time."""

    def __init__(
        self,
        access_key: str,
        secret_key: str,
        token: str | None = None,
        *,
        region: str = "us-east-1",
        clock: Callable[[], datetime.datetime] = _now,
    ) -> None:
        self.credentials = Credentials(access_key, secret_key, token)
        self.region = region
        self.clock = clock

    @classmethod
    def from_profile(cls, credentials_file: str | Path, profile: str, region: str = "us-east-1") -> ExecuteApiAuth:
        """A profile of an AWS shared credentials file, read as the AWS CLI and the SDKs read it."""
        session = botocore.session.Session(profile=profile)
        session.set_config_variable("credentials_file", str(credentials_file))
        found = session.get_credentials()
        if found is None:
            raise LookupError(f"no credentials for profile {profile} in {credentials_file}")
        frozen = found.get_frozen_credentials()
        if not frozen.access_key or not frozen.secret_key:
            raise LookupError(f"profile {profile} in {credentials_file} lacks a key")
        return cls(frozen.access_key, frozen.secret_key, frozen.token, region=region)

    def __call__(self, request: PreparedRequest) -> PreparedRequest:
        body = _body_bytes(request)
        request.headers.update(signed_headers(self, request.method or "GET", request.url or "", request.headers, body))
        return request


def signed_headers(
    auth: ExecuteApiAuth, method: str, url: str, headers: Mapping[str, str], body: bytes
) -> dict[str, str]:
    """The headers that sign a request to ``url`` (the target exactly as it goes on the wire):
    ``X-Amz-Date``, the session token if any, and ``Authorization``."""
    credentials = auth.credentials
    timestamp = auth.clock().strftime(SIGV4_TIMESTAMP)
    added: dict[str, str] = {"X-Amz-Date": timestamp}
    if credentials.token:
        added["X-Amz-Security-Token"] = credentials.token
    content_type = next((value for name, value in headers.items() if name.lower() == "content-type"), None)
    covered = {**added, **({"Content-Type": content_type} if content_type else {})}
    signed = AWSRequest(method=method, url=url, data=body, headers=covered)
    signer = SigV4Auth(credentials, SERVICE, auth.region)
    names = signer.headers_to_sign(signed)  # these headers and host
    signature = _signature(signer, signed, timestamp)
    added["Authorization"] = (
        f"{ALGORITHM} Credential={signer.scope(signed)}, SignedHeaders={signer.signed_headers(names)}, "
        f"Signature={signature}"
    )
    return added


def _body_bytes(request: PreparedRequest) -> bytes:
    """The body to hash; a streamed (chunked) body is read and put back as one chunk."""
    body: Any = request.body
    if body is None:
        return b""
    if isinstance(body, str):
        return body.encode()
    if isinstance(body, bytes | bytearray):
        return bytes(body)
    data = b"".join(chunk.encode() if isinstance(chunk, str) else bytes(chunk) for chunk in body)
    request.body = iter([data])  # type: ignore[assignment]  # requests streams an iterable body chunked
    return data


def parse_authorization(value: str) -> Mapping[str, str] | None:
    """The ``Credential``, ``SignedHeaders`` and ``Signature`` of a SigV4 ``Authorization`` header
    (None when it is not one)."""
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        return None
    parts: dict[str, str] = {}
    for item in rest.split(","):
        key, sep, found = item.strip().partition("=")
        if sep:
            parts[key] = found
    return parts
