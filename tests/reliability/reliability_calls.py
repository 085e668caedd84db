"""The local API over HTTP as the suite calls it: every call signed as the principal its route is for,
timed, and kept (``Api.answers``) for the leak scan; and repeating a call until it is answered."""

from __future__ import annotations

import http.client
import json
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import requests
from reliability_support import CONSUMER_ARN, TOKEN_ROUTE
from requests.auth import AuthBase

from zus_local.local_principals import ADMIN_USER, CONSUMER_USER
from zus_local.sigv4 import ExecuteApiAuth, signed_headers

_CLIENT_ROUTE = re.compile(r"^/app-clients/([^/?]+)$")


@dataclass
class Answer:
    method: str
    path: str
    status: int  # 0: no answer (see ``error``)
    headers: Mapping[str, str]
    body: bytes
    started: float  # time.monotonic()
    ended: float
    error: str = ""
    # wall-clock time the answer arrived: a token's time left is judged as of then, however late the
    # scenario checks it
    received_at: float = field(default_factory=time.time)

    @property
    def latency(self) -> float:
        return self.ended - self.started

    @property
    def content_type(self) -> str:
        return str(self.headers.get("content-type", "")).split(";", 1)[0].strip().lower()

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def kind(self) -> str:
        """The answer's kind for the table: its status, or why there was none."""
        return str(self.status) if self.status else (self.error or "no answer")


class _Headers(dict[str, str]):
    """Case-insensitive lookups over lower-cased keys."""

    def __init__(self, items: Iterable[tuple[str, str]]) -> None:
        super().__init__((key.lower(), value) for key, value in items)

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key.lower(), default)


class RouteSigner(AuthBase):
    """Signs each call as the principal its route is for: the token route as the local consumer, every
    other route as the local admin (both from the stack's credentials file)."""

    def __init__(self, credentials_file: str | Path) -> None:
        self.admin = ExecuteApiAuth.from_profile(credentials_file, ADMIN_USER)
        self.consumer = ExecuteApiAuth.from_profile(credentials_file, CONSUMER_USER)

    def signer_for(self, path: str) -> ExecuteApiAuth:
        return self.consumer if TOKEN_ROUTE.match(path) else self.admin

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        return self.signer_for(urlsplit(request.url or "").path)(request)


class Api:
    """The local API over HTTP, every call signed (``RouteSigner``); one keep-alive session per thread;
    every call timed."""

    def __init__(self, base: str, credentials_file: str | Path, client_timeout: float = 60.0) -> None:
        self.base = base.rstrip("/")
        self.client_timeout = client_timeout
        self.signer = RouteSigner(credentials_file)
        self._local = threading.local()
        self.answers: list[Answer] = []  # every answer, for the leak scan
        self.deleted: set[str] = set()  # every name a DELETE answered 204 for, for the integrity check
        self._lock = threading.Lock()

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            session.auth = self.signer
        return session

    def call(self, method: str, path: str, **options: Any) -> Answer:
        started = time.monotonic()
        try:
            response = self._session().request(method, self.base + path, timeout=self.client_timeout, **options)
        except requests.Timeout:
            answer = Answer(method, path, 0, {}, b"", started, time.monotonic(), "client timeout")
        except requests.ConnectionError:
            answer = Answer(method, path, 0, {}, b"", started, time.monotonic(), "connection failed")
        else:
            answer = Answer(
                method,
                path,
                response.status_code,
                _Headers(response.headers.items()),
                response.content,
                started,
                time.monotonic(),
            )
        self._keep(answer)
        return answer

    def _keep(self, answer: Answer) -> None:
        deleted = _CLIENT_ROUTE.match(answer.path) if answer.method == "DELETE" and answer.status == 204 else None
        with self._lock:
            self.answers.append(answer)
            if deleted:
                self.deleted.add(unquote(deleted.group(1)))

    def raw(self, method: str, target: str, headers: Mapping[str, str] | None = None, body: bytes = b"") -> Answer:
        """A request whose target goes on the wire exactly as given (no normalisation of ``..`` or ``%``),
        signed over that very target."""
        split = urlsplit(self.base)
        connection = http.client.HTTPConnection(split.hostname or "127.0.0.1", split.port, timeout=self.client_timeout)
        signer = self.signer.signer_for(urlsplit(target).path)
        sent = {**(headers or {}), **signed_headers(signer, method, self.base + target, headers or {}, body)}
        started = time.monotonic()
        try:
            connection.putrequest(method, target, skip_accept_encoding=True)
            for name, value in sent.items():
                connection.putheader(name, value)
            if body or method in ("POST", "PUT", "PATCH"):
                connection.putheader("Content-Length", str(len(body)))
            connection.endheaders(body or None)
            response = connection.getresponse()
            answer = Answer(
                method,
                target,
                response.status,
                _Headers(response.getheaders()),
                response.read(),
                started,
                time.monotonic(),
            )
        except TimeoutError:
            answer = Answer(method, target, 0, {}, b"", started, time.monotonic(), "client timeout")
        except (ConnectionError, http.client.HTTPException) as exc:
            answer = Answer(method, target, 0, {}, b"", started, time.monotonic(), type(exc).__name__)
        finally:
            connection.close()
        self._keep(answer)
        return answer

    # --- the routes ---

    def create(self, name: str, role: str | None = None) -> Answer:
        """A create whose consumer is the local consumer (``vend`` signs as it)."""
        body: dict[str, Any] = {"name": name, "consumers": [CONSUMER_ARN]}
        if role is not None:
            body["roleName"] = role
        return self.call("POST", "/app-clients", json=body)

    def vend(self, name: str, min_ttl: int | None = None, refused: str | None = None) -> Answer:
        """``refused``: the fingerprint of a token Zus refused (``fingerprint``)."""
        params = {} if min_ttl is None else {"minTtl": str(min_ttl)}
        if refused is not None:
            params["refused"] = refused
        return self.call("GET", f"/app-clients/{quote(name, safe='')}/token", params=params)

    def get(self, name: str) -> Answer:
        return self.call("GET", f"/app-clients/{quote(name, safe='')}")

    def delete(self, name: str) -> Answer:
        return self.call("DELETE", f"/app-clients/{quote(name, safe='')}")

    def rotate(self, name: str) -> Answer:
        return self.call("POST", f"/app-clients/{quote(name, safe='')}/rotations")


def retry_after(answer: Answer) -> float:
    raw = answer.headers.get("retry-after")
    try:
        return float(raw or "")
    except (TypeError, ValueError):
        return 1.0


def until_answered(call: Callable[[], Answer], ok: Iterable[int], deadline_seconds: float, cap: float = 1.0) -> Answer:
    """Repeat ``call`` (honouring Retry-After, at most ``cap`` s apart) until its status is in ``ok``."""
    wanted = set(ok)
    deadline = time.monotonic() + deadline_seconds
    while True:
        answer = call()
        if answer.status in wanted or time.monotonic() > deadline:
            return answer
        time.sleep(min(cap, retry_after(answer)) if answer.status in (429, 503) else 0.2)
