"""The service's answer contract, checked on every answer a scenario gets: the statuses it may answer,
problem+json for errors, Retry-After on 429/503, within the function's timeout, and a token route's
200 carrying a valid token of the client."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable

from reliability_calls import Answer
from reliability_support import AUDIENCE, ROOT

from zus_local.cfn_yaml import load_template

PROBLEM_JSON = "application/problem+json"
# What the local API and this process add to a function's own time.
SLACK_SECONDS = 0.0


def function_timeouts() -> dict[str, float]:
    """Each API function's timeout, from template.yaml: the bound no answer may exceed."""
    resources = load_template(ROOT / "template.yaml")["Resources"]
    return {
        "token": float(resources["TokenVendingFunction"]["Properties"]["Timeout"]),
        "provisioning": float(resources["ProvisioningFunction"]["Properties"]["Timeout"]),
    }


TIMEOUTS = function_timeouts()


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
