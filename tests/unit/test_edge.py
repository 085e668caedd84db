"""The HTTP edge without a router (``zus_m2m.edge.serve``, the token vending function's): it answers
exactly as the admin functions' Powertools resolver does for the same route, errors and unknown routes
included, reads API Gateway's event as the Powertools event classes do, and audits every call."""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.event_handler import Response

from zus_m2m import api, edge, errors
from zus_m2m.access import Caller

EVENT = Path(__file__).resolve().parents[2] / "events" / "apigw_get_token.json"
PATH = "/app-clients/<name>/token"


def token_event(**changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = json.loads(EVENT.read_text())
    event.update(changes)
    return event


def at(event: dict[str, Any], method: str, path: str, stage: str = "$default") -> dict[str, Any]:
    changed = copy.deepcopy(event)
    changed["requestContext"]["http"]["method"] = method
    changed["requestContext"]["stage"] = stage
    changed["rawPath"] = path if stage == "$default" else f"/{stage}{path}"
    return changed


# What a route does, given its name: answer, or raise.
Outcome = Callable[[str], edge.Response]


def both_ways(event: dict[str, Any], outcome: Outcome) -> tuple[dict[str, Any], dict[str, Any]]:
    """``event`` answered by ``edge.serve`` and by the admin functions' resolver, the route doing the same."""
    app = api.resolver()

    @app.get(PATH)
    def routed(name: str) -> Response[str]:
        answer = outcome(name)
        return Response(
            status_code=answer["statusCode"],
            content_type=answer["headers"]["Content-Type"],
            body=answer["body"],
            headers=answer["headers"],
        )

    def served(request: Mapping[str, Any], path: Mapping[str, str], details: dict[str, Any]) -> edge.Response:
        return outcome(path["name"])

    return edge.serve(event, "GET", edge.route_pattern(PATH), served), app.resolve(copy.deepcopy(event), None)


def token(name: str) -> edge.Response:
    return edge.json_response(200, {"access_token": "t", "client": name}, headers={"X-Token-Source": "memory"})


def throttled(name: str) -> edge.Response:
    raise errors.Throttled(f"budget spent for {name}", retry_after=12.3)


def refused(name: str) -> edge.Response:
    raise errors.Forbidden("not a consumer")


def broken(name: str) -> edge.Response:
    raise RuntimeError("internal detail that must not leak")


@pytest.mark.parametrize("outcome", [token, throttled, refused, broken], ids=lambda outcome: outcome.__name__)
def test_a_route_answers_as_the_resolver_would(outcome: Outcome) -> None:
    served, resolved = both_ways(token_event(), outcome)

    assert served == resolved
    assert served["headers"]["Cache-Control"] == "no-store"


def test_the_answers_keep_their_status_headers_and_problem() -> None:
    ok, _ = both_ways(token_event(), token)
    limited, _ = both_ways(token_event(), throttled)
    failed, _ = both_ways(token_event(), broken)

    assert (ok["statusCode"], ok["headers"]["X-Token-Source"], ok["headers"]["Content-Type"]) == (
        200,
        "memory",
        "application/json",
    )
    assert limited["statusCode"] == 429
    assert limited["headers"]["Retry-After"] == "13"
    assert limited["headers"]["Content-Type"] == "application/problem+json"
    assert json.loads(limited["body"]) == {
        "type": "urn:zus-m2m:problem:throttled",
        "title": "Too Many Requests",
        "status": 429,
        "detail": "budget spent for billing-service",
    }
    assert failed["statusCode"] == 500
    assert "internal detail" not in failed["body"]


@pytest.mark.parametrize(
    ("method", "path", "stage"),
    [
        ("POST", "/app-clients/billing-service/token", "$default"),
        ("GET", "/app-clients/billing-service/tokens", "$default"),
        ("GET", "/app-clients//token", "$default"),
        ("GET", "/app-clients/a/b/token", "$default"),
        ("DELETE", "/elsewhere", "prod"),
    ],
)
def test_a_call_the_route_does_not_take_is_a_404_problem_as_the_resolvers(method: str, path: str, stage: str) -> None:
    served, resolved = both_ways(at(token_event(), method, path, stage), token)

    assert served == resolved
    assert served["statusCode"] == 404
    assert json.loads(served["body"])["detail"] == f"no route for {method} {path}"


def test_a_stage_is_not_part_of_the_path_the_route_matches() -> None:
    served, resolved = both_ways(at(token_event(), "GET", "/app-clients/billing-service/token", "prod"), token)

    assert served == resolved
    assert json.loads(served["body"])["client"] == "billing-service"


def test_query_parameters_and_the_caller_read_the_event_as_powertools_does() -> None:
    event = token_event(queryStringParameters=None)
    assert edge.query_parameters(event, ("minTtl",)) == {}
    assert edge.query_parameters(token_event(), ("minTtl", "refused")) == {"minTtl": "120"}
    with pytest.raises(errors.InvalidRequest, match="unknown query parameter 'minTtl'; this route takes none"):
        edge.query_parameters(token_event())

    assert edge.caller_of(token_event()) == Caller(
        arn="arn:aws:sts::123456789012:assumed-role/billing-service/billing-service",
        account_id="123456789012",
        access_key="ASIAEXAMPLEKEY000000",
        source_ip="203.0.113.10",
    )
    nulls = token_event()
    nulls["requestContext"]["authorizer"]["iam"] = {"userArn": None, "accountId": None, "accessKey": None}
    assert edge.caller_of(nulls) == Caller(arn="", source_ip="203.0.113.10")
    nulls["requestContext"]["authorizer"] = None
    assert edge.caller_of(nulls) == Caller(arn="", source_ip="203.0.113.10")


def test_every_call_is_audited_once_with_what_the_route_added(caplog: pytest.LogCaptureFixture) -> None:
    def vend(request: Mapping[str, Any], path: Mapping[str, str], details: dict[str, Any]) -> edge.Response:
        details["tokenExpiresAt"] = 1795784400
        return token(path["name"])

    pattern = edge.route_pattern(PATH)
    with caplog.at_level(logging.INFO, logger="zus_m2m.audit"):
        edge.serve(token_event(), "GET", pattern, vend)
        edge.serve(at(token_event(), "PUT", "/x"), "GET", pattern, vend)

    lines = [record.audit for record in caplog.records if record.name == "zus_m2m.audit"]  # type: ignore[attr-defined]
    assert [(line["status"], line.get("tokenExpiresAt"), line.get("problem")) for line in lines] == [
        (200, 1795784400, None),
        (404, None, "no-route"),
    ]
    assert lines[0]["caller"] == "arn:aws:sts::123456789012:assumed-role/billing-service/billing-service"
    assert lines[0]["client"] == "billing-service"
    assert "access_token" not in json.dumps(lines)
