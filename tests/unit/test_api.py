"""The HTTP edge: the create body, problem+json errors, and a resolver that several threads may drive
at once."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.event_handler import Response

from zus_m2m import api, errors
from zus_m2m.api import parse_create_request
from zus_m2m.values import CreateRequest, RotationRequest

EVENT = Path(__file__).resolve().parents[2] / "events" / "apigw_get_token.json"


def event_for(name: str, query: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads(EVENT.read_text())
    event["rawPath"] = event["requestContext"]["http"]["path"] = f"/items/{name}"
    event["routeKey"] = event["requestContext"]["routeKey"] = "GET /items/{name}"
    event["pathParameters"] = {"name": name}
    event["rawQueryString"] = f"q={query}"
    event["queryStringParameters"] = {"q": query}
    return event


def test_concurrent_requests_on_one_resolver_each_see_their_own_event_and_arguments() -> None:
    # Given a route that both requests are inside at the same moment, having both been routed (their
    # route arguments stored by Powertools) before either handler is called
    app = api.resolver()
    both_routed, both_inside = threading.Barrier(2), threading.Barrier(2)

    def after_routing(resolver: Any, next_middleware: Any) -> Any:
        both_routed.wait(timeout=5)
        return next_middleware(resolver)

    @app.get("/items/<name>", middlewares=[after_routing])
    def item(name: str) -> Response[str]:
        both_inside.wait(timeout=5)
        return api.json_response(200, {"name": name, "q": app.current_event.get_query_string_value("q")})

    # When two threads resolve different requests at once
    with ThreadPoolExecutor(max_workers=2) as pool:
        answers = list(pool.map(lambda n: app.resolve(event_for(n, f"query-{n}"), None), ["a", "b"]))

    # Then each answer is built from its own request
    assert [json.loads(answer["body"]) for answer in answers] == [
        {"name": "a", "q": "query-a"},
        {"name": "b", "q": "query-b"},
    ]


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
