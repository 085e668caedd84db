"""The HTTP edge: the create and PATCH bodies, the caller, problem+json errors, the audit line of every
call, and a resolver that several threads may drive at once."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.event_handler import Response

from zus_m2m import api, errors
from zus_m2m.access import AccessPolicy, Caller
from zus_m2m.admin_values import CreateRequest, RotationRequest
from zus_m2m.api import parse_consumers_update, parse_create_request

ROLE = "arn:aws:iam::123456789012:role/billing-service"
ROOT_ARN = "arn:aws:iam::123456789012:root"

EVENT = Path(__file__).resolve().parents[2] / "events" / "apigw_get_token.json"


def event_for(name: str, query: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads(EVENT.read_text())
    event["rawPath"] = event["requestContext"]["http"]["path"] = f"/items/{name}"
    event["routeKey"] = event["requestContext"]["routeKey"] = "GET /items/{name}"
    event["pathParameters"] = {"name": name}
    event["rawQueryString"] = f"q={query}"
    event["queryStringParameters"] = {"q": query}
    return event


def test_a_service_error_becomes_problem_json_with_retry_after() -> None:
    app = api.resolver()

    @app.get("/items/<name>")
    def item(name: str) -> Response[str]:
        raise errors.Throttled(f"budget spent for {name}", retry_after=12.3)

    answer = app.resolve(event_for("a", "x"), None)

    assert answer["statusCode"] == 429
    assert answer["headers"]["Content-Type"] == "application/problem+json"
    assert answer["headers"]["Retry-After"] == "13"
    assert json.loads(answer["body"]) == {
        "type": "urn:zus-m2m:problem:throttled",
        "title": "Too Many Requests",
        "status": 429,
        "detail": "budget spent for a",
    }


def test_an_unexpected_error_is_500_problem_json_without_a_trace() -> None:
    app = api.resolver()

    @app.get("/items/<name>")
    def item(name: str) -> Response[str]:
        raise RuntimeError("internal detail that must not leak")

    answer = app.resolve(event_for("a", "x"), None)

    assert answer["statusCode"] == 500
    assert "internal detail" not in answer["body"]
    assert "Traceback" not in answer["body"]


# --- the create body --------------------------------------------------------------------------


def test_a_valid_body_parses_with_the_default_role() -> None:
    assert parse_create_request('{"name": "billing.v2_x-1"}', "application/json") == CreateRequest(
        "billing.v2_x-1", "Builder Admin"
    )
    assert parse_create_request('{"name": "a", "roleName": "Care Team User"}', None).role_name == "Care Team User"


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        ('{"name": "a"}', "text/plain", "Content-Type"),
        ("", "application/json", "JSON object"),
        (None, "application/json", "JSON object"),
        ("{not json", "application/json", "not valid JSON"),
        ('["a"]', "application/json", "JSON object"),
        ("{}", "application/json", "name is required"),
        ('{"roleName": "Builder Admin"}', "application/json", "name is required"),
        ('{"name": "a", "role": "x"}', "application/json", "unknown field(s): role"),
        ('{"name": 7}', "application/json", "name must be"),
        ('{"name": ""}', "application/json", "name must be"),
        ('{"name": "has space"}', "application/json", "name must be"),
        ('{"name": "' + "x" * 65 + '"}', "application/json", "name must be"),
        ('{"name": "a", "roleName": 3}', "application/json", "roleName"),
        ('{"name": "a", "roleName": ""}', "application/json", "roleName"),
        ('{"name": "a", "consumers": "' + ROLE + '"}', "application/json", "consumers must be a list"),
        ('{"name": "a", "consumers": [1]}', "application/json", "consumers[0] must be a string"),
        ('{"name": "a", "consumers": ["' + ROLE + '", "*"]}', "application/json", "consumers[1]: '*'"),
    ],
)
def test_a_bad_body_is_400_naming_the_problem(body: str | None, content_type: str, expected: str) -> None:
    with pytest.raises(errors.InvalidRequest) as caught:
        parse_create_request(body, content_type)

    assert caught.value.http_status == 400
    assert expected in caught.value.detail


# --- strict input: keys given twice, the rotation body ------------------------------------------


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ('{"name": "a", "name": "b"}', "'name'"),
        ('{"name": "a", "roleName": {"x": 1, "x": 2}}', "'x'"),  # at any depth
        ('[{"k": 1}, {"k": 1, "k": 2}]', "'k'"),
    ],
)
def test_a_key_given_twice_is_refused_naming_it(body: str, key: str) -> None:
    with pytest.raises(errors.InvalidRequest, match=f"the body has the key {key} more than once"):
        api.read_json(body, "application/json")


def test_consumers_of_a_create_are_checked_sorted_and_deduplicated() -> None:
    body = json.dumps({"name": "a", "consumers": [ROOT_ARN, ROLE, ROLE]})

    assert parse_create_request(body, "application/json").consumers == (ROLE, ROOT_ARN)
    assert parse_create_request('{"name": "a", "consumers": []}', None).consumers == ()
    assert parse_create_request('{"name": "a"}', None).consumers is None


# --- the PATCH body ---------------------------------------------------------------------------


def test_a_consumers_update_is_the_whole_new_list() -> None:
    assert parse_consumers_update(json.dumps({"consumers": [ROLE]}), "application/json") == (ROLE,)
    assert parse_consumers_update('{"consumers": []}', None) == ()


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (None, False),
        ("", False),
        ("  ", False),
        ("{}", False),
        ('{"repair": false}', False),
        ('{"repair": true}', True),
    ],
)
def test_a_rotation_body_is_nothing_or_repair(body: str | None, expected: bool) -> None:
    assert api.parse_rotation_request(body, "application/json") == RotationRequest(repair=expected)


def query_event(**query: str) -> Any:
    from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2

    event = json.loads(EVENT.read_text())
    event["queryStringParameters"] = query or None
    return APIGatewayProxyEventV2(event)


def test_a_query_parameter_the_route_does_not_take_is_named() -> None:
    assert api.query_parameters(query_event(minTtl="5"), ("minTtl",)) == {"minTtl": "5"}
    assert api.query_parameters(query_event()) == {}
    with pytest.raises(errors.InvalidRequest, match="unknown query parameter 'minttl'; it takes minTtl"):
        api.query_parameters(query_event(minttl="5"), ("minTtl",))
    with pytest.raises(errors.InvalidRequest, match="unknown query parameter 'a', 'b'; this route takes none"):
        api.query_parameters(query_event(b="1", a="2"))
    with pytest.raises(errors.InvalidRequest, match="'" + "x" * 64 + "'"):
        api.query_parameters(query_event(**{"x" * 1000: "1"}))


def test_a_page_request_reads_limit_and_next_token() -> None:
    assert api.parse_page_request(query_event()) == api.PageRequest(50, None)
    assert api.parse_page_request(query_event(limit="100", nextToken="abc")) == api.PageRequest(100, "abc")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("{}", "consumers is required"),
        ('{"consumers": [], "name": "x"}', "unknown field(s): name"),
        ('{"consumers": null}', "consumers must be a list"),
        (
            '{"consumers": ["arn:aws:sts::123456789012:assumed-role/billing/s"]}',
            "name the role (arn:aws:iam::<account>:role/<name>), not one of its sessions",
        ),
        ("[]", "JSON object with consumers"),
    ],
)
def test_a_bad_consumers_update_is_400_naming_the_problem(body: str, expected: str) -> None:
    with pytest.raises(errors.InvalidRequest) as caught:
        parse_consumers_update(body, "application/json")

    assert expected in caught.value.detail


# --- the caller, admins only, and the audit line -----------------------------------------------------------


def test_the_caller_is_api_gateways_iam_authorizer_context() -> None:
    event: dict[str, Any] = json.loads(EVENT.read_text())
    app = api.resolver()
    seen: list[Caller] = []

    @app.get("/app-clients/<name>/token")
    def token(name: str) -> Response[str]:
        seen.append(api.caller_of(app.current_event))
        return api.json_response(200, {})

    app.resolve(event, None)
    del event["requestContext"]["authorizer"]
    app.resolve(event, None)

    assert seen == [
        Caller(
            arn="arn:aws:sts::123456789012:assumed-role/billing-service/billing-service",
            account_id="123456789012",
            access_key="ASIAEXAMPLEKEY000000",
            source_ip="203.0.113.10",
        ),
        Caller(arn="", source_ip="203.0.113.10"),
    ]


def test_admin_only_refuses_a_non_admin_before_the_route_runs() -> None:
    app = api.resolver()
    app.use(middlewares=[api.admin_only(AccessPolicy.of(["arn:aws:iam::123456789012:role/platform-admin"]))])
    ran: list[str] = []

    @app.get("/items/<name>")
    def item(name: str) -> Response[str]:
        ran.append(name)
        return api.json_response(200, {})

    answer = app.resolve(event_for("a", "x"), None)

    assert answer["statusCode"] == 403
    assert json.loads(answer["body"])["type"] == "urn:zus-m2m:problem:forbidden"
    assert ran == []


def audit_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [record.audit for record in caplog.records if record.name == "zus_m2m.audit"]  # type: ignore[attr-defined]


def test_every_call_writes_one_audit_line_with_the_token_expiry_and_never_the_token(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = api.resolver()

    @app.get("/items/<name>")
    def item(name: str) -> Response[str]:
        app.audit_detail(tokenExpiresAt=1795784400)
        return api.json_response(200, {"access_token": "eyJ-the-token"})

    with caplog.at_level(logging.INFO, logger="zus_m2m.audit"):
        app.resolve(event_for("billing-service", "x"), None)

    [line] = audit_lines(caplog)
    assert line == {
        "time": "2026-11-27T12:00:00.000Z",
        "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
        "action": "GET /items/{name}",
        "client": "billing-service",
        "caller": "arn:aws:sts::123456789012:assumed-role/billing-service/billing-service",
        "accountId": "123456789012",
        "accessKey": "ASIAEXAMPLEKEY000000",
        "sourceIp": "203.0.113.10",
        "status": 200,
        "outcome": "allowed",
        "tokenExpiresAt": 1795784400,
    }
    assert "eyJ" not in json.dumps(line)


@pytest.mark.parametrize(
    ("error", "status", "outcome", "kind"),
    [
        (errors.Forbidden("no"), 403, "denied", "forbidden"),
        (errors.ResourceNotFound("no"), 404, "rejected", "resource-not-found"),
        (errors.StoreUnavailable("down"), 503, "failed", "store-unavailable"),
    ],
)
def test_a_refused_call_is_audited_with_its_outcome_and_problem(
    caplog: pytest.LogCaptureFixture, error: errors.ZusM2MError, status: int, outcome: str, kind: str
) -> None:
    app = api.resolver()

    @app.get("/items/<name>")
    def item(name: str) -> Response[str]:
        raise error

    with caplog.at_level(logging.INFO, logger="zus_m2m.audit"):
        app.resolve(event_for("billing-service", "x"), None)

    [line] = audit_lines(caplog)
    assert (line["status"], line["outcome"], line["problem"], line["client"]) == (
        status,
        outcome,
        kind,
        "billing-service",
    )


def test_a_call_no_route_answers_is_audited_too(caplog: pytest.LogCaptureFixture) -> None:
    app = api.resolver()

    with caplog.at_level(logging.INFO, logger="zus_m2m.audit"):
        app.resolve(event_for("x", "y"), None)

    [line] = audit_lines(caplog)
    assert (line["status"], line["outcome"], line["problem"]) == (404, "rejected", "no-route")
