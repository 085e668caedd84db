"""API Gateway's IAM authorizer (``AWS_IAM``), played by the local API before any handler runs.

Per request, in API Gateway's order and with its answers (403 and a JSON ``message``, with the
``x-amzn-ErrorType`` header it sends): no ``Authorization`` header → ``Missing Authentication Token``; a
malformed one, or one scoped to another service or region → ``IncompleteSignatureException``; an
``X-Amz-Date`` more than 5 minutes off → ``Signature expired`` / ``Signature not yet current``; an
access key IAM does not know (or a bad session token) → ``The security token included in the request is
invalid.``; a signature that does not recompute, or a session token sent but not signed → the
signature-mismatch message; and last the signer's
identity policies, which must allow ``execute-api:Invoke`` on the route's ARN
(``arn:aws:execute-api:<region>:<account>:local/$default/<METHOD>/<path>``). What passes becomes
``requestContext.authorizer.iam``.

Signers come from a ``Signers`` directory: moto's IAM (``MotoSigners``: IAM users' keys and assumed
roles' temporary keys, with their policies) or, against a real account, the environment's own
credentials (``EnvironmentSigner``; real IAM keeps secret keys to itself, so no other signer can be
checked, and its policies are not evaluated). Policies are evaluated here (``evaluate``): ``Effect``,
``Action``/``NotAction``, ``Resource``/``NotResource`` with ``*`` and ``?``; a statement with a
``Condition`` is not evaluated locally: it never allows, and a Deny with one always denies.
"""

from __future__ import annotations

import datetime
import email.utils
import hashlib
import json
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

import requests

from zus_local.apigw import LOCAL_API_ID, HttpRequest, HttpResponse
from zus_local.sigv4 import SERVICE, parse_authorization, recompute_signature, signatures_match

ACTION = "execute-api:Invoke"
# The route of the project's moto that names an access key's signer (``zus_local.moto_app``).
SIGNER_ROUTE = "/_zus_local/iam/signer"
MAX_SKEW = datetime.timedelta(minutes=5)
_TIMESTAMP = "%Y%m%dT%H%M%SZ"

SIGNATURE_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. Check your AWS Secret "
    "Access Key and signing method. Consult the service documentation for details."
)
INVALID_TOKEN = "The security token included in the request is invalid."


@dataclass(frozen=True)
class Signer:
    """Who holds an access key, its secret key, and the identity policies that apply to it."""

    access_key: str
    secret_key: str = field(repr=False)
    arn: str
    user_id: str
    account_id: str
    policies: tuple[str, ...] = ()
    # False for a signer whose policies cannot be read (a real account's): nothing is evaluated.
    evaluate_policies: bool = True


class SignersUnavailable(Exception):
    """The directory could not be asked (moto is down) and knows nothing of the key from before."""


class Signers(Protocol):
    def find(self, access_key: str, security_token: str | None) -> Signer | None:
        """The key's signer; None for a key (or session token) IAM does not accept."""
        ...


class MotoSigners:
    """Signers from moto's IAM (``zus_local.moto_app``'s signer route). Answers are kept for
    ``max_age`` seconds, as IAM changes take a moment to reach API Gateway too, and are used past that
    while moto does not answer (a signer API Gateway knew keeps working through a moto outage)."""

    def __init__(self, endpoint: str, max_age: float = 2.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.url = endpoint.rstrip("/") + SIGNER_ROUTE
        self.max_age = max_age
        self.clock = clock
        self._known: dict[tuple[str, str | None], tuple[float, Signer | None]] = {}
        self._lock = threading.Lock()
        self._session = requests.Session()

    def find(self, access_key: str, security_token: str | None) -> Signer | None:
        key = (access_key, security_token)
        with self._lock:
            known = self._known.get(key)
        if known is not None and self.clock() - known[0] < self.max_age:
            return known[1]
        try:
            answer = self._session.post(
                self.url, json={"accessKeyId": access_key, "securityToken": security_token}, timeout=(1.0, 5.0)
            )
        except requests.RequestException as exc:
            if known is not None:
                return known[1]
            raise SignersUnavailable(f"moto did not answer ({type(exc).__name__})") from None
        if answer.status_code not in (200, 403, 404):
            raise SignersUnavailable(f"moto answered {answer.status_code}")
        found = None
        if answer.status_code == 200:
            body = answer.json()
            found = Signer(
                access_key=access_key,
                secret_key=body["secretAccessKey"],
                arn=body["arn"],
                user_id=body["userId"],
                account_id=body["accountId"],
                policies=tuple(body["policies"]),
            )
        with self._lock:
            self._known[key] = (self.clock(), found)
        return found


@dataclass(frozen=True)
class EnvironmentSigner:
    """The one signer a real account lets the local API check: the credentials it runs with."""

    signer: Signer
    security_token: str | None = None

    def find(self, access_key: str, security_token: str | None) -> Signer | None:
        if access_key == self.signer.access_key and security_token == self.security_token:
            return self.signer
        return None


# --- the refusals ---------------------------------------------------------------------------------------


class Refused(Exception):
    """API Gateway's answer instead of the integration's."""

    def __init__(self, response: HttpResponse) -> None:
        super().__init__(response.status)
        self.response = response


def gateway_answer(status: int, error_type: str, body: Mapping[str, str]) -> HttpResponse:
    headers = [("Content-Type", "application/json"), ("x-amzn-ErrorType", error_type)]
    return HttpResponse(status, headers, json.dumps(body).encode())


def _refused(error_type: str, message: str, key: str = "message") -> Refused:
    return Refused(gateway_answer(403, error_type, {key: message}))


# --- policies ---------------------------------------------------------------------------------------------


def wildcard_match(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    """IAM's string matching: ``*`` any run of characters (slashes too), ``?`` one character."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, flags=(re.IGNORECASE | re.DOTALL) if ignore_case else re.DOTALL) is not None


def _matches(patterns: Any, value: str, *, ignore_case: bool) -> bool:
    listed = patterns if isinstance(patterns, list) else [patterns]
    return any(isinstance(p, str) and wildcard_match(p, value, ignore_case=ignore_case) for p in listed)


def _applies(statement: Mapping[str, Any], action: str, resource: str) -> bool:
    if "Action" in statement:
        acted = _matches(statement["Action"], action, ignore_case=True)
    else:
        acted = "NotAction" in statement and not _matches(statement["NotAction"], action, ignore_case=True)
    if "Resource" in statement:
        on = _matches(statement["Resource"], resource, ignore_case=False)
    else:
        on = "NotResource" in statement and not _matches(statement["NotResource"], resource, ignore_case=False)
    return acted and on


def evaluate(documents: Iterable[str], action: str, resource: str) -> str:
    """``allowed``, ``denied`` (an explicit Deny) or ``not-allowed`` (nothing allows it)."""
    allowed = False
    for document in documents:
        try:
            statements = json.loads(document).get("Statement", [])
        except (ValueError, AttributeError):
            continue
        for statement in statements if isinstance(statements, list) else [statements]:
            if not isinstance(statement, dict) or not _applies(statement, action, resource):
                continue
            if statement.get("Effect") == "Deny":
                return "denied"
            if statement.get("Effect") == "Allow" and "Condition" not in statement:
                allowed = True
    return "allowed" if allowed else "not-allowed"


# --- the authorizer -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Identity:
    """``requestContext.authorizer.iam``, as API Gateway fills it for a signer."""

    access_key: str
    account_id: str
    user_arn: str
    user_id: str

    def authorizer_iam(self) -> dict[str, Any]:
        return {
            "accessKey": self.access_key,
            "accountId": self.account_id,
            "callerId": self.user_id,
            "cognitoIdentity": None,
            "principalOrgId": None,
            "userArn": self.user_arn,
            "userId": self.user_id,
        }


class IamAuthorizer:
    def __init__(
        self,
        signers: Signers,
        *,
        region: str,
        account_id: str,
        api_id: str = LOCAL_API_ID,
        clock: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
    ) -> None:
        self.signers = signers
        self.region = region
        self.account_id = account_id
        self.api_id = api_id
        self.clock = clock

    def route_arn(self, method: str, path: str) -> str:
        return (
            f"arn:aws:execute-api:{self.region}:{self.account_id}:{self.api_id}/$default/{method.upper()}"
            f"/{path.lstrip('/')}"
        )

    def authorize(self, request: HttpRequest, path: str) -> Identity:
        """The signer's identity, or ``Refused`` with API Gateway's answer."""
        headers: dict[str, list[str]] = {}
        for name, value in request.headers:
            headers.setdefault(name.lower(), []).append(value)
        authorization = (headers.get("authorization") or [""])[0]
        if not authorization:
            raise _refused("MissingAuthenticationTokenException", "Missing Authentication Token")
        parts = parse_authorization(authorization)
        missing = [name for name in ("Credential", "SignedHeaders", "Signature") if not (parts or {}).get(name)]
        if parts is None or missing:
            needed = missing or ["Credential", "SignedHeaders", "Signature"]
            message = " ".join(f"Authorization header requires '{name}' parameter." for name in needed)
            raise _refused("IncompleteSignatureException", message)
        access_key, date, region, service, terminator = (parts["Credential"].split("/") + [""] * 5)[:5]
        signed = [name.strip().lower() for name in parts["SignedHeaders"].split(";") if name.strip()]
        timestamp = self._timestamp(headers)
        self._check_scope(access_key, date, region, service, terminator, timestamp, signed, headers)
        tokens = headers.get("x-amz-security-token")
        token = tokens[0] if tokens else None
        try:
            signer = self.signers.find(access_key, token)
        except SignersUnavailable:
            raise Refused(
                gateway_answer(500, "InternalServerErrorException", {"message": "Internal Server Error"})
            ) from None
        if signer is None:
            raise _refused("UnrecognizedClientException", INVALID_TOKEN)
        # API Gateway computes the signature over the session token: one sent beside the signature,
        # unsigned, never matches (whatever the headers that were signed say).
        unsigned_token = token is not None and "x-amz-security-token" not in signed
        if unsigned_token or not self._signature_holds(request, signer, timestamp, signed, parts["Signature"], headers):
            raise _refused("InvalidSignatureException", SIGNATURE_MISMATCH)
        if signer.evaluate_policies:
            self._check_policies(signer, request.method, path)
        return Identity(access_key, signer.account_id, signer.arn, signer.user_id)

    def _timestamp(self, headers: Mapping[str, list[str]]) -> datetime.datetime:
        raw = (headers.get("x-amz-date") or [""])[0]
        when: datetime.datetime | None = None
        if raw:
            try:
                when = datetime.datetime.strptime(raw, _TIMESTAMP).replace(tzinfo=datetime.UTC)
            except ValueError:
                when = None
        elif headers.get("date"):
            try:
                when = email.utils.parsedate_to_datetime(headers["date"][0]).astimezone(datetime.UTC)
            except (TypeError, ValueError):
                when = None
        if when is None:
            raise _refused(
                "IncompleteSignatureException",
                "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
            )
        now = self.clock()
        if when < now - MAX_SKEW:
            raise _refused(
                "InvalidSignatureException",
                f"Signature expired: {when:{_TIMESTAMP}} is now earlier than {now - MAX_SKEW:{_TIMESTAMP}} "
                f"({now:{_TIMESTAMP}} - 5 min.)",
            )
        if when > now + MAX_SKEW:
            raise _refused(
                "InvalidSignatureException",
                f"Signature not yet current: {when:{_TIMESTAMP}} is still later than {now + MAX_SKEW:{_TIMESTAMP}} "
                f"({now:{_TIMESTAMP}} + 5 min.)",
            )
        return when

    def _check_scope(
        self,
        access_key: str,
        date: str,
        region: str,
        service: str,
        terminator: str,
        timestamp: datetime.datetime,
        signed: list[str],
        headers: Mapping[str, list[str]],
    ) -> None:
        problems = []
        if not access_key:
            problems.append(
                "Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term."
            )
        if service != SERVICE:
            problems.append(f"Credential should be scoped to correct service: '{SERVICE}'.")
        if region != self.region:
            problems.append(f"Credential should be scoped to a valid region, not '{region}'.")
        if terminator != "aws4_request":
            problems.append("Credential should be scoped with a valid terminator: 'aws4_request'.")
        if date != f"{timestamp:%Y%m%d}":
            problems.append(
                f"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: "
                f"'{date}' != '{timestamp:%Y%m%d}', from '{timestamp:{_TIMESTAMP}}'."
            )
        if "host" not in signed:
            problems.append("'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.")
        absent = [name for name in signed if name not in headers]
        if absent:
            problems.append(f"Signed header(s) {', '.join(absent)} are not in the request.")
        if problems:
            raise _refused("IncompleteSignatureException", " ".join(problems))

    def _signature_holds(
        self,
        request: HttpRequest,
        signer: Signer,
        timestamp: datetime.datetime,
        signed: list[str],
        signature: str,
        headers: Mapping[str, list[str]],
    ) -> bool:
        declared = headers.get("x-amz-content-sha256")
        if declared is not None and declared[0] != hashlib.sha256(request.body).hexdigest():
            return False  # an unsigned or altered payload is never accepted
        host = headers["host"][0]
        split = urlsplit(request.target)
        target = split.path + (f"?{split.query}" if split.query else "")
        expected = recompute_signature(
            secret_key=signer.secret_key,
            access_key=signer.access_key,
            region=self.region,
            timestamp=f"{timestamp:{_TIMESTAMP}}",
            method=request.method,
            url=f"http://{host}{target}",
            headers=[(name, value) for name in signed for value in headers[name]],
            signed_headers=signed,
            body=request.body,
        )
        return signatures_match(expected, signature)

    def _check_policies(self, signer: Signer, method: str, path: str) -> None:
        resource = self.route_arn(method, path)
        decision = evaluate(signer.policies, ACTION, resource)
        if decision == "allowed":
            return
        masked = resource.replace(f":{self.account_id}:", f":********{self.account_id[-4:]}:", 1)
        explicit = " with an explicit deny" if decision == "denied" else ""
        raise _refused(
            "AccessDeniedException",
            f"User: {signer.arn} is not authorized to perform: {ACTION} on resource: {masked}{explicit}",
            key="Message",
        )
