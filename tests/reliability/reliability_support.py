"""The reliability suite's harness: HTTP calls with their latency, the service's answer contract, the
integrity of what the service owns (records, secrets, Zus clients), and the results table.

Two profiles: the fast one runs in ``make test``; ``ZUS_M2M_SOAK=1`` (``make soak``) runs every
scenario longer and wider. Scenario code asks ``profile(fast, soak)`` for its sizes.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import json
import os
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, unquote, urlsplit

import boto3
import requests
from botocore.config import Config
from requests.auth import AuthBase

from zus_local.cfn_yaml import load_template
from zus_local.local_principals import ADMIN_USER, CONSUMER_USER, user_arn
from zus_local.sigv4 import ExecuteApiAuth, signed_headers
from zus_m2m.aws.client_records import DynamoClientRecords
from zus_m2m.aws.table import TableKeys
from zus_m2m.values import ClientRecord

ROOT = Path(__file__).resolve().parents[2]
SOAK = os.environ.get("ZUS_M2M_SOAK", "") not in ("", "0")
TABLE_FILE = os.environ.get("ZUS_M2M_RELIABILITY_TABLE", "")
AUDIENCE = "https://api.sandbox.zusapi.com"
ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET = "local-admin", "local-admin-secret"
ADMIN_CLIENT_NAME = "zus-m2m-admin"  # the bootstrap admin's record name (its secret: zus-m2m/<stage>/zus-m2m-admin)
PROBLEM_JSON = "application/problem+json"
TOKEN_ROUTE = re.compile(r"^/app-clients/[^/?]+/token")
_CLIENT_ROUTE = re.compile(r"^/app-clients/([^/?]+)$")
# The local stack's consumer (make dev's IAM user in moto), the consumer of every client the suite makes.
CONSUMER_ARN = user_arn("123456789012", CONSUMER_USER)
# What the local API and this process add to a function's own time.
SLACK_SECONDS = 0.0

T = TypeVar("T")
R = TypeVar("R")


def profile(fast: T, soak: T) -> T:
    return soak if SOAK else fast


def function_timeouts() -> dict[str, float]:
    """Each API function's timeout, from template.yaml: the bound no answer may exceed."""
    resources = load_template(ROOT / "template.yaml")["Resources"]
    return {
        "token": float(resources["TokenVendingFunction"]["Properties"]["Timeout"]),
        "provisioning": float(resources["ProvisioningFunction"]["Properties"]["Timeout"]),
    }


TIMEOUTS = function_timeouts()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# --- calls -----------------------------------------------------------------------------------------


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

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
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


def fingerprint(access_token: str) -> str:
    """How a caller names a token Zus refused: the first 16 hex characters of its SHA-256."""
    return hashlib.sha256(access_token.encode()).hexdigest()[:16]


def parallel(function: Callable[[T], R], items: Sequence[T], workers: int) -> list[R]:
    """``function`` over ``items`` on ``workers`` threads, results in the items' order."""
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(items)))) as pool:
        return list(pool.map(function, items))


def retry_after(answer: Answer) -> float:
    raw = answer.headers.get("retry-after")
    try:
        return float(raw)
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


# --- the contract of every answer -------------------------------------------------------------------


_JWT = re.compile(rb"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


def shown(body: bytes, limit: int = 300) -> str:
    """A body for a failure message, with any access token masked: test output never carries one."""
    return repr(_JWT.sub(b"<token>", body)[:limit])


def violations(answer: Answer, allowed: Iterable[int], timeout: float) -> list[str]:
    """How ``answer`` breaks the service's contract: an unexpected status (a 500 among them), an
    error that is not problem+json, a 429/503 without Retry-After, or an answer slower than the
    function's timeout."""
    found: list[str] = []
    where = f"{answer.method} {answer.path}"
    if answer.status == 0:
        return [f"{where}: no answer ({answer.error}) after {answer.latency:.1f} s"]
    if answer.status not in set(allowed):
        found.append(f"{where}: unexpected {answer.status}: {shown(answer.body)}")
    if answer.status >= 400:
        found.extend(f"{where}: {problem}" for problem in problem_document_issues(answer))
    if answer.status in (429, 503):
        raw = str(answer.headers.get("retry-after") or "")
        if not raw.isdigit() or int(raw) < 1:
            found.append(f"{where}: {answer.status} without a usable Retry-After ({raw!r})")
    if answer.latency > timeout + SLACK_SECONDS:
        found.append(f"{where}: answered after {answer.latency:.1f} s, past the function's {timeout:.0f} s timeout")
    return found


def problem_document_issues(answer: Answer) -> list[str]:
    if answer.headers.get("x-amzn-errortype"):
        return gateway_answer_issues(answer)
    if answer.content_type != PROBLEM_JSON:
        return [f"{answer.status} with Content-Type {answer.headers.get('content-type')!r}, not {PROBLEM_JSON}"]
    try:
        body = answer.json()
    except ValueError:
        return [f"{answer.status}: the problem document is not JSON"]
    if not isinstance(body, dict):
        return [f"{answer.status}: the problem document is not an object"]
    issues = [
        f"{answer.status}: the problem document has no {key}" for key in ("type", "title", "detail") if key not in body
    ]
    if body.get("status") != answer.status:
        issues.append(f"{answer.status}: the problem document says status {body.get('status')!r}")
    return issues


def gateway_answer_issues(answer: Answer) -> list[str]:
    """API Gateway's own refusals (no route: 404; its IAM authorizer: 403) are JSON with a message."""
    try:
        body = answer.json()
    except ValueError:
        return [f"{answer.status}: API Gateway's answer is not JSON"]
    if answer.status not in (403, 404) or not isinstance(body, dict) or not ({"message", "Message"} & set(body)):
        return [f"{answer.status}: not an answer API Gateway gives: {shown(answer.body)}"]
    return []


def token_issues(answer: Answer, client_id: str, min_ttl: float = 60.0) -> list[str]:
    """A 200 from the token route must carry a token of this client with ``min_ttl`` seconds left."""
    body = answer.json()
    token = body.get("access_token", "")
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, AttributeError):
        return [f"{answer.path}: the access_token is not a JWT"]
    issues = []
    if claims.get("sub") != f"{client_id}@clients":
        issues.append(f"{answer.path}: a token of {claims.get('sub')!r}, not {client_id}@clients")
    if claims.get("aud") != AUDIENCE:
        issues.append(f"{answer.path}: a token for audience {claims.get('aud')!r}")
    if float(claims.get("exp", 0)) < answer.received_at + min_ttl - 5:
        issues.append(f"{answer.path}: a token with less than {min_ttl:.0f} s left")
    if answer.headers.get("cache-control") != "no-store":
        issues.append(f"{answer.path}: a token without Cache-Control: no-store")
    return issues


# --- the emulator and moto, seen from outside ---------------------------------------------------------


class Emulator:
    def __init__(self, url: str) -> None:
        self.url = url
        self._admin_token = ""
        self._admin_until = 0.0

    def fault(self, **spec: Any) -> None:
        requests.post(f"{self.url}/_emulator/faults", json=spec, timeout=5).raise_for_status()

    def clear_faults(self) -> None:
        self.fault()

    @contextlib.contextmanager
    def faulted(self, **spec: Any) -> Iterator[None]:
        self.fault(**spec)
        try:
            yield
        finally:
            self.clear_faults()

    def config(self, **values: Any) -> None:
        requests.post(f"{self.url}/_emulator/config", json=values, timeout=5).raise_for_status()

    @contextlib.contextmanager
    def speaking(self, dialect: str) -> Iterator[None]:
        """The token endpoint in ``dialect`` (auth0, rfc6749) for the block, then in Auth0's, the default."""
        self.config(dialect=dialect)
        try:
            yield
        finally:
            self.config(dialect="auth0")

    def stats(self) -> dict[str, Any]:
        response = requests.get(f"{self.url}/_emulator/stats", timeout=5)
        response.raise_for_status()
        return dict(response.json())

    def token(self, client_id: str, client_secret: str) -> requests.Response:
        body = {
            "client_id": client_id,
            "client_secret": client_secret,
            "audience": AUDIENCE,
            "grant_type": "client_credentials",
        }
        return requests.post(f"{self.url}/oauth/token", json=body, timeout=10)

    def admin_token(self) -> str:
        """The bootstrap admin's token for this suite's own reads, kept for its lifetime (its hourly
        allowance is shared with the service)."""
        if time.time() > self._admin_until:
            response = self.token(ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET)
            response.raise_for_status()
            self._admin_token = response.json()["access_token"]
            self._admin_until = time.time() + response.json()["expires_in"] - 120
        return self._admin_token

    def faults_fired(self) -> int:
        """How many requests an injected fault has hit since the emulator started (every kind, path)."""
        fired = self.stats().get("faultsFired", {})
        return sum(count for paths in fired.values() for count in paths.values())

    def app_clients(self) -> list[dict[str, Any]]:
        """Every app client at Zus (id, clientId, name, updatedAt: when its secret last changed)."""
        found: list[dict[str, Any]] = []
        url: str | None = f"{self.url}/auth/app-clients?page[size]=100"
        headers = {"Authorization": f"Bearer {self.admin_token()}", "Accept": "application/vnd.api+json"}
        while url:
            response = requests.get(url, headers=headers, timeout=10)
            response.raise_for_status()
            document = response.json()
            found.extend(
                {
                    "id": item["id"],
                    "clientId": item["attributes"]["clientId"],
                    "name": item["attributes"]["name"],
                    "updatedAt": item["attributes"]["updatedAt"],
                }
                for item in document["data"]
            )
            url = (document.get("links") or {}).get("next")
        return found


class Aws:
    """moto, as the suite reads it (never through the service)."""

    def __init__(self, endpoint: str, table: str, stage: str = "sandbox") -> None:
        config = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=2, read_timeout=10)
        options = {
            "endpoint_url": endpoint,
            "region_name": "us-east-1",
            "aws_access_key_id": "local",
            "aws_secret_access_key": "local",
            "config": config,
        }
        self.endpoint = endpoint
        self.table = table
        self.stage = stage
        self.dynamodb = boto3.client("dynamodb", **options)
        self.secretsmanager = boto3.client("secretsmanager", **options)
        self.records = DynamoClientRecords(self.dynamodb, table, TableKeys("zus-m2m-admin"))

    def secret_id(self, name: str) -> str:
        # zus-m2m/<stack name>/<stage>/<name>; the local stack names its table after the stack.
        return f"zus-m2m/{self.table}/{self.stage}/{name}"

    def active_records(self) -> list[ClientRecord]:
        found: list[ClientRecord] = []
        token: str | None = None
        while True:
            page, token = self.records.list_page(100, token)
            found.extend(page)
            if token is None:
                return found

    def forget_token(self, name: str) -> None:
        """Delete the client's cached token item (its lease and block too): the next vend goes to Zus."""
        self.dynamodb.delete_item(TableName=self.table, Key={"pk": {"S": f"client#{name}"}, "sk": {"S": "token"}})

    def replaceable_on_report(self, name: str) -> None:
        """The client's cached token as if Zus minted it 11 s ago and no report replaced one for a minute:
        the service replaces a reported token only then (issue 22). No token item: nothing to change."""
        with contextlib.suppress(self.dynamodb.exceptions.ConditionalCheckFailedException):
            self.dynamodb.update_item(
                TableName=self.table,
                Key={"pk": {"S": f"client#{name}"}, "sk": {"S": "token"}},
                UpdateExpression="SET tokenLifetime = tokenLifetime + :older REMOVE refusedReplacedAt",
                ConditionExpression="attribute_exists(accessToken) AND attribute_exists(tokenLifetime)",
                ExpressionAttributeValues={":older": {"N": "11"}},
            )

    def token_item(self, name: str) -> dict[str, Any] | None:
        key = {"pk": {"S": f"client#{name}"}, "sk": {"S": "token"}}
        return self.dynamodb.get_item(TableName=self.table, Key=key, ConsistentRead=True).get("Item")

    def managed_secrets(self) -> dict[str, bool]:
        """Every client secret moto holds under this stage's prefix (the bootstrap admin's aside), by
        client name: whether it is scheduled for deletion."""
        prefix = self.secret_id("")
        found: dict[str, bool] = {}
        for page in self.secretsmanager.get_paginator("list_secrets").paginate(IncludePlannedDeletion=True):
            for secret in page["SecretList"]:
                name = secret["Name"].removeprefix(prefix)
                if secret["Name"].startswith(prefix) and name != ADMIN_CLIENT_NAME:
                    found[name] = "DeletedDate" in secret
        return found

    def current_secret(self, name: str) -> tuple[str, dict[str, Any]] | None:
        """AWSCURRENT's version id and value."""
        try:
            value = self.secretsmanager.get_secret_value(SecretId=self.secret_id(name), VersionStage="AWSCURRENT")
        except (
            self.secretsmanager.exceptions.ResourceNotFoundException,
            self.secretsmanager.exceptions.InvalidRequestException,  # scheduled for deletion
        ):
            return None
        return value["VersionId"], dict(json.loads(value["SecretString"]))

    def current_credentials(self, name: str) -> dict[str, Any] | None:
        try:
            value = self.secretsmanager.get_secret_value(SecretId=self.secret_id(name), VersionStage="AWSCURRENT")
        except self.secretsmanager.exceptions.ResourceNotFoundException:
            return None
        return dict(json.loads(value["SecretString"]))

    def version_count(self, name: str) -> int:
        versions = self.secretsmanager.list_secret_version_ids(SecretId=self.secret_id(name), IncludeDeprecated=True)
        return len(versions["Versions"])

    def every_secret_value(self) -> set[str]:
        """Every clientSecret of every version of every secret moto holds (deleted ones included)."""
        values: set[str] = set()
        paginator = self.secretsmanager.get_paginator("list_secrets")
        for page in paginator.paginate(IncludePlannedDeletion=True):
            for secret in page["SecretList"]:
                arn = secret["ARN"]
                versions = self.secretsmanager.list_secret_version_ids(SecretId=arn, IncludeDeprecated=True)
                for version in versions["Versions"]:
                    try:
                        value = self.secretsmanager.get_secret_value(SecretId=arn, VersionId=version["VersionId"])
                    except self.secretsmanager.exceptions.InvalidRequestException:
                        continue  # scheduled for deletion: sample before deleting (every_secret_value again)
                    except self.secretsmanager.exceptions.ResourceNotFoundException:
                        continue  # a rotation's value-less AWSPENDING version
                    secret_value = json.loads(value.get("SecretString") or "{}").get("clientSecret")
                    if secret_value:
                        values.add(str(secret_value))
        return values

    def cached_tokens(self) -> set[str]:
        tokens: set[str] = set()
        paginator = self.dynamodb.get_paginator("scan")
        for page in paginator.paginate(TableName=self.table):
            for item in page["Items"]:
                if "accessToken" in item:
                    tokens.add(item["accessToken"]["S"])
        return tokens


# --- what the service owns, checked -------------------------------------------------------------------


@dataclass
class Integrity:
    """Lost or damaged data, one line per problem; a line names clients and ids, never a secret."""

    problems: list[str] = field(default_factory=list)

    @property
    def lost(self) -> int:
        return len(self.problems)


# A rotated secret may propagate at Zus for up to 30 s (either secret accepted meanwhile): a check of a
# client whose secret changed more recently than this is never taken from memory.
_SETTLED_SECONDS = 35.0


class SystemCheck:
    """The whole system's integrity, whatever the scenarios did:

    * every app client at Zus (the bootstrap admin aside) belongs to exactly one active record: the one
      of its name that names its id (a second client of a name, or one no record names, is an orphan);
    * every active record names a client Zus has, and its AWSCURRENT secret holds that client and gets a
      token at Zus;
    * every client secret belongs to an active record or is scheduled for deletion (no orphan secret);
    * every deleted client (``deleted``: a DELETE the suite saw answer 204, and every secret scheduled
      for deletion) is gone at Zus, has no record, its secret is scheduled for deletion and its token
      item is purged; unless the name was provisioned again since (then it is active, checked as such).

    A token request per active client at every check would spend Zus's hourly allowance of each client
    (200) within a long session: a client whose AWSCURRENT version and Zus's secret are both unchanged
    since a check that got a token, and whose Zus secret changed more than ``_SETTLED_SECONDS`` ago, is
    taken as checked (``thorough`` asks Zus for every client, as the session's last check does)."""

    def __init__(self, emulator: Emulator, aws: Aws) -> None:
        self.emulator = emulator
        self.aws = aws
        self._accepted: set[tuple[str, str, int]] = set()  # (app client id, AWSCURRENT version, updatedAt)

    def run(self, deleted: Iterable[str] = (), *, thorough: bool = False) -> Integrity:
        result = Integrity()
        zus = [client for client in self.emulator.app_clients() if client["clientId"] != ADMIN_CLIENT_ID]
        active = {record.name: record for record in self.aws.active_records()}
        secrets = self.aws.managed_secrets()
        result.problems += self._orphans_at_zus(zus, active)
        result.problems += self._active_clients_broken(zus, active, thorough=thorough)
        result.problems += [
            f"{name}: a secret no active record owns, not scheduled for deletion (orphan)"
            for name, scheduled in sorted(secrets.items())
            if name not in active and not scheduled
        ]
        gone = (set(deleted) | {name for name, scheduled in secrets.items() if scheduled}) - set(active)
        result.problems += self._deleted_remains(gone, zus, secrets)
        return result

    @staticmethod
    def _orphans_at_zus(zus: list[dict[str, Any]], active: dict[str, Any]) -> list[str]:
        owners = {record.app_client_id: record.name for record in active.values()}
        problems = []
        for client in zus:
            owner = owners.get(client["id"])
            if owner is None:
                problems.append(f"Zus client {client['id']} ({client['name']}): no active record owns it (orphan)")
            elif owner != client["name"]:
                problems.append(f"Zus client {client['id']} ({client['name']}): owned by the record of {owner}")
        return problems

    def _active_clients_broken(self, zus: list[dict[str, Any]], active: dict[str, Any], *, thorough: bool) -> list[str]:
        at_zus = {client["id"]: client for client in zus}
        now = time.time()
        problems = []
        for name, record in sorted(active.items()):
            client = at_zus.get(record.app_client_id)
            if client is None:
                problems.append(f"{name}: the record's Zus client {record.app_client_id} is gone (lost)")
                continue
            current = self.aws.current_secret(name)
            if current is None or current[1].get("appClientId") != record.app_client_id:
                problems.append(f"{name}: AWSCURRENT does not hold the record's Zus client")
                continue
            version, credentials = current
            key = (record.app_client_id, version, int(client["updatedAt"]))
            if not thorough and key in self._accepted and now - key[2] > _SETTLED_SECONDS:
                continue
            response = self.emulator.token(credentials["clientId"], credentials["clientSecret"])
            if response.status_code == 200:
                self._accepted.add(key)
            else:
                problems.append(f"{name}: Zus refuses AWSCURRENT's secret ({response.status_code})")
        return problems

    def _deleted_remains(self, gone: set[str], zus: list[dict[str, Any]], secrets: dict[str, bool]) -> list[str]:
        names_at_zus = {client["name"] for client in zus}
        problems = []
        for name in sorted(gone):
            if name in names_at_zus:
                problems.append(f"{name}: deleted, but Zus still has a client of that name")
            if self.aws.records.get(name) is not None:
                problems.append(f"{name}: deleted, but its record remains")
            if secrets.get(name) is False:
                problems.append(f"{name}: deleted, but its secret is not scheduled for deletion")
            if self.aws.token_item(name) is not None:
                problems.append(f"{name}: deleted, but its token item remains")
        return problems


# --- leaks ------------------------------------------------------------------------------------------------


def signing_secrets(credentials_file: str | Path) -> set[str]:
    """The secret keys of the local admin and consumer, which no output may carry either."""
    signer = RouteSigner(credentials_file)
    return {signer.admin.credentials.secret_key, signer.consumer.credentials.secret_key}


def scan_for_leaks(lines: Sequence[str], answers: Sequence[Answer], secrets: set[str], tokens: set[str]) -> list[str]:
    """Where a secret appears in ``lines`` or ``answers`` (status, headers, body), or a token anywhere
    but the body of a token route's 200; a JWT's signature alone counts as the token. Findings name
    the place, never the value."""
    secret_needles = {value for value in secrets if value}
    token_needles = {value for value in tokens if value}
    token_needles |= {value.rsplit(".", 1)[1] for value in token_needles if value.count(".") == 2}
    found: list[str] = []

    def look(text: str, needles: set[str], what: str, where: str) -> None:
        if any(needle in text for needle in needles):
            found.append(f"{what} in {where}")

    for number, line in enumerate(lines, 1):
        look(line, secret_needles, "a client secret", f"output line {number}")
        look(line, token_needles, "an access token", f"output line {number}")
    for answer in answers:
        head = f"{answer.status}\n" + "\n".join(f"{key}: {value}" for key, value in answer.headers.items())
        body = answer.body.decode("utf-8", "replace")
        where = f"the answer to {answer.method} {answer.path} ({answer.status})"
        look(head + body, secret_needles, "a client secret", where)
        token_body_allowed = TOKEN_ROUTE.match(answer.path) is not None and answer.status == 200
        look(head if token_body_allowed else head + body, token_needles, "an access token", where)
    return found


# --- the results table ----------------------------------------------------------------------------------


@dataclass
class Row:
    """One scenario's line. ``data_lost`` comes from the system check after each test that wrote the row
    (``integrity_checked``: how many such checks ran; a row never checked shows "unchecked");
    ``faults_fired``: how many requests the scenario's injected fault hit (None: not a fault scenario)."""

    scenario: str
    requests: int = 0
    successes: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    violations: int = 0
    data_lost: int = 0
    integrity_checked: int = 0
    faults_fired: int | None = None
    slowest: float = 0.0

    def add(self, answers: Iterable[Answer], *, bad: int = 0) -> None:
        for answer in answers:
            self.requests += 1
            if 200 <= answer.status < 300:
                self.successes += 1
            else:
                self.errors[answer.kind] += 1
            self.slowest = max(self.slowest, answer.latency)
        self.violations += bad

    def fired(self, count: int) -> None:
        self.faults_fired = (self.faults_fired or 0) + count


class Results:
    def __init__(self) -> None:
        self.rows: dict[str, Row] = {}
        self.touched: set[str] = set()  # the rows written since ``begin``: the running test's
        self.notes: list[str] = []  # lines printed under the table (what a row's cells cannot say)
        self._lock = threading.Lock()

    def row(self, scenario: str) -> Row:
        with self._lock:
            self.touched.add(scenario)
            return self.rows.setdefault(scenario, Row(scenario))

    def begin(self) -> None:
        with self._lock:
            self.touched = set()

    def written(self) -> list[Row]:
        with self._lock:
            return [self.rows[name] for name in sorted(self.touched)]

    def table(self) -> str:
        headers = (
            "scenario",
            "requests",
            "successes",
            "errors by kind",
            "violations",
            "faults fired",
            "slowest s",
            "data lost",
        )

        def fired(count: int | None) -> str:
            return "-" if count is None else str(count)

        lines = []
        for row in self.rows.values():
            errors = ", ".join(f"{kind} x{count}" for kind, count in sorted(row.errors.items())) or "-"
            lines.append(
                (
                    row.scenario,
                    str(row.requests),
                    str(row.successes),
                    errors,
                    str(row.violations),
                    fired(row.faults_fired),
                    f"{row.slowest:.2f}",
                    str(row.data_lost) if row.integrity_checked else "unchecked",
                )
            )
        total = Row("total")
        for row in self.rows.values():
            total.requests += row.requests
            total.successes += row.successes
            total.errors.update(row.errors)
            total.violations += row.violations
            total.data_lost += row.data_lost
            if row.faults_fired is not None:
                total.fired(row.faults_fired)
            total.slowest = max(total.slowest, row.slowest)
        lines.append(
            (
                "**total**",
                str(total.requests),
                str(total.successes),
                str(sum(total.errors.values())),
                str(total.violations),
                fired(total.faults_fired),
                f"{total.slowest:.2f}",
                total_data_lost(self.rows.values()),
            )
        )
        widths = [max(len(header), *(len(line[i]) for line in lines)) for i, header in enumerate(headers)]

        def render(cells: Sequence[str]) -> str:
            return "| " + " | ".join(cell.ljust(widths[i]) for i, cell in enumerate(cells)) + " |"

        out = [render(headers), "|" + "|".join("-" * (width + 2) for width in widths) + "|"]
        out.extend(render(line) for line in lines)
        out.extend(["", *self.notes] if self.notes else [])
        return "\n".join(out)


def total_data_lost(rows: Iterable[Row]) -> str:
    """The total's data lost: the sum of the checked rows, and how many rows were never checked (an
    unchecked row is no 0)."""
    rows = list(rows)
    lost = sum(row.data_lost for row in rows if row.integrity_checked)
    unchecked = sum(1 for row in rows if not row.integrity_checked)
    return f"{lost} ({unchecked} rows unchecked)" if unchecked else str(lost)


RESULTS = Results()
