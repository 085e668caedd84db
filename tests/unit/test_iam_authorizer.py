"""zus_local.iam_authorizer's evaluation of identity policies, the way the local API decides whether a
signer may invoke a route (execute-api:Invoke on the route's ARN)."""

from __future__ import annotations

import json

import pytest

from zus_local.iam_authorizer import evaluate

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
