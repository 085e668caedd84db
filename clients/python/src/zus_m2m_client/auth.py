"""``ZusAuth``: requests authentication with a Zus bearer token from a ``TokenProvider``.

On a 401 it reports the refused token, takes the next one and sends a copy of the request once more
(the way requests' own digest auth answers its challenge); the retried answer is returned whatever it
is, so a request is sent at most twice. When the provider has no next token to give (it is backing off
because Zus keeps refusing fresh ones), the 401 is returned as it is, and the next request raises the
provider's ``TokenRefusedError`` without being sent.
"""

from __future__ import annotations

import functools
import logging
from typing import Any, Protocol

from requests import PreparedRequest, Response
from requests.auth import AuthBase
from requests.cookies import RequestsCookieJar, extract_cookies_to_jar

from zus_m2m_client.api import AccessToken, fingerprint
from zus_m2m_client.errors import ZusM2MError

logger = logging.getLogger(__name__)


class TokenSource(Protocol):
    def get_token(self) -> AccessToken: ...

    def report_refused(self, access_token: str) -> None: ...


class ZusAuth(AuthBase):
    """``requests.get(url, auth=ZusAuth(provider))``: ``Authorization: Bearer <token>`` on every request."""

    def __init__(self, provider: TokenSource) -> None:
        self.provider = provider

    def __repr__(self) -> str:
        return f"ZusAuth({self.provider!r})"

    def __call__(self, request: PreparedRequest) -> PreparedRequest:
        request.headers["Authorization"] = _bearer(self.provider.get_token().access_token)
        tell = getattr(request.body, "tell", None)
        request.hooks["response"].append(
            functools.partial(self._retry_once_if_refused, body_position=tell() if tell else None)
        )
        return request

    def _retry_once_if_refused(self, response: Response, *, body_position: int | None, **send_options: Any) -> Response:
        if response.status_code != 401:
            return response
        sent = response.request
        refused = _token_in(sent.headers.get("Authorization"))
        if refused is None:
            return response
        self.provider.report_refused(refused)
        try:
            fresh = self.provider.get_token()
        except ZusM2MError as exc:
            logger.warning(
                "Zus refused token %s and no other one was vended (%s); not retrying", fingerprint(refused), exc
            )
            return response
        if fresh.access_token == refused:
            logger.warning("Zus refused token %s and no other one was vended; not retrying", fingerprint(refused))
            return response
        body: object = sent.body  # requests also sends files and other readable bodies
        if not isinstance(body, bytes | str | None):
            seek = getattr(body, "seek", None)
            if seek is None or body_position is None:
                logger.warning("Zus refused token %s; the request's body cannot be sent again", fingerprint(refused))
                return response
            seek(body_position)
        response.content  # noqa: B018 - read it so the connection goes back to the pool for the retry
        response.close()
        retry = sent.copy()
        jar = getattr(retry, "_cookies", None)  # as requests' HTTPDigestAuth does: keep the cookies the 401 set
        if isinstance(jar, RequestsCookieJar):
            extract_cookies_to_jar(jar, sent, response.raw)  # type: ignore[no-untyped-call]
            retry.prepare_cookies(jar)
        retry.headers["Authorization"] = _bearer(fresh.access_token)
        logger.info(
            "Zus refused token %s; sending the request once more with %s", fingerprint(refused), fresh.fingerprint
        )
        answer = response.connection.send(retry, **send_options)
        answer.history.append(response)
        answer.request = retry
        return answer


def _bearer(access_token: str) -> str:
    return f"Bearer {access_token}"


def _token_in(authorization: str | bytes | None) -> str | None:
    if not isinstance(authorization, str):
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()
