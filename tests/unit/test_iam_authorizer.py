"""zus_local.iam_authorizer's evaluation of identity policies, the way the local API decides whether a
signer may invoke a route (execute-api:Invoke on the route's ARN)."""

from __future__ import annotations

import datetime
import json

import pytest

from zus_local.apigw import HttpRequest
from zus_local.iam_authorizer import SIGNATURE_MISMATCH, EnvironmentSigner, IamAuthorizer, Refused, Signer, evaluate
from zus_local.sigv4 import ExecuteApiAuth, signed_headers

TOKEN_ROUTE = "arn:aws:execute-api:us-east-1:123456789012:local/$default/GET/app-clients/billing/token"
ADMIN_ROUTE = "arn:aws:execute-api:us-east-1:123456789012:local/$default/DELETE/app-clients/billing"


def policy(*statements: dict[str, object]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def allow(resource: object, action: object = "execute-api:Invoke", **extra: object) -> dict[str, object]:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


@pytest.mark.parametrize(
    ("documents", "resource", "decision"),
    [
        (
            [policy(allow("arn:aws:execute-api:us-east-1:123456789012:local/*/GET/app-clients/*/token"))],
            TOKEN_ROUTE,
            "allowed",
        ),
        (
            [policy(allow("arn:aws:execute-api:us-east-1:123456789012:local/*/GET/app-clients/*/token"))],
            ADMIN_ROUTE,
            "not-allowed",
        ),
        ([policy(allow("arn:aws:execute-api:us-east-1:123456789012:local/*/*/app-clients*"))], ADMIN_ROUTE, "allowed"),
        (
            [policy(allow("arn:aws:execute-api:us-east-1:123456789012:local/*/GET/app-clients/billin?/token"))],
            TOKEN_ROUTE,
            "allowed",
        ),
        (
            [policy(allow("arn:aws:execute-api:us-east-1:123456789012:local/*/GET/app-clients/other/token"))],
            TOKEN_ROUTE,
            "not-allowed",
        ),
        ([policy(allow("arn:aws:execute-api:eu-west-1:123456789012:local/*"))], TOKEN_ROUTE, "not-allowed"),
        ([policy(allow("*", action="EXECUTE-API:*"))], TOKEN_ROUTE, "allowed"),
        ([policy(allow("*", action="s3:*"))], TOKEN_ROUTE, "not-allowed"),
        ([policy({"Effect": "Allow", "NotAction": "s3:*", "Resource": "*"})], TOKEN_ROUTE, "allowed"),
        ([policy({"Effect": "Allow", "Action": "*", "NotResource": TOKEN_ROUTE})], TOKEN_ROUTE, "not-allowed"),
        (
            [policy(allow("*"), {"Effect": "Deny", "Action": "execute-api:Invoke", "Resource": TOKEN_ROUTE})],
            TOKEN_ROUTE,
            "denied",
        ),
        ([policy(allow("*")), policy({"Effect": "Deny", "Action": "*", "Resource": "*"})], TOKEN_ROUTE, "denied"),
        ([policy(allow("*", Condition={"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}))], TOKEN_ROUTE, "not-allowed"),
        (
            [policy(allow("*"), {"Effect": "Deny", "Action": "*", "Resource": "*", "Condition": {"Bool": {"x": "y"}}})],
            TOKEN_ROUTE,
            "denied",
        ),
        (
            [policy(allow("arn:aws:execute-api:us-east-1:123456789012:local/$default/GET/app-clients/billing/token"))],
            TOKEN_ROUTE,
            "allowed",
        ),
        ([policy(allow("arn:aws:execute-api:us-east-1:123456789012:local/.default/*"))], TOKEN_ROUTE, "not-allowed"),
        (["not json", policy()], TOKEN_ROUTE, "not-allowed"),
        ([], TOKEN_ROUTE, "not-allowed"),
    ],
)
def test_identity_policies_decide_execute_api_invoke(documents: list[str], resource: str, decision: str) -> None:
    assert evaluate(documents, "execute-api:Invoke", resource) == decision


# --- a session token must be signed ----------------------------------------------------------------------

# A real account's credentials, as the local API in front of it checks them: no policy to evaluate here.
SESSION = Signer(
    "ASIATESTKEY",
    "secret-of-the-session",
    "arn:aws:iam::123456789012:role/billing",
    "AROA1",
    "123456789012",
    evaluate_policies=False,
)
SESSION_TOKEN = "the-session-token"
NOW = datetime.datetime(2026, 12, 7, 1, 0, tzinfo=datetime.UTC)


def session_request(sign_token: bool) -> HttpRequest:
    """A GET of the token route signed with the session's keys; its token signed, or only sent beside."""
    auth = ExecuteApiAuth(
        SESSION.access_key,
        SESSION.secret_key,
        SESSION_TOKEN if sign_token else None,
        region="us-east-1",
        clock=lambda: NOW,
    )
    target = "/app-clients/billing/token"
    headers = signed_headers(auth, "GET", f"http://127.0.0.1:3000{target}", {}, b"")
    headers["X-Amz-Security-Token"] = SESSION_TOKEN
    return HttpRequest("GET", target, [("Host", "127.0.0.1:3000"), *headers.items()], b"", "127.0.0.1")


def test_a_session_token_sent_but_not_signed_is_refused_as_api_gateway_refuses_it() -> None:
    authorizer = IamAuthorizer(
        EnvironmentSigner(SESSION, SESSION_TOKEN), region="us-east-1", account_id="123456789012", clock=lambda: NOW
    )
    signed = session_request(sign_token=True)
    assert "x-amz-security-token" in dict(signed.headers)["Authorization"]
    assert authorizer.authorize(signed, signed.target).user_arn == SESSION.arn

    with pytest.raises(Refused) as refused:
        authorizer.authorize(session_request(sign_token=False), signed.target)

    assert refused.value.response.status == 403
    assert json.loads(refused.value.response.body) == {"message": SIGNATURE_MISMATCH}
