"""The provisioning Lambda handler, loaded like the runtime loads it, invoked with API Gateway (HTTP API
payload 2.0) events from events/, against moto server and the Zus emulator."""

from __future__ import annotations

import base64
import copy
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pytest
import requests

from zus_local.lambda_context import LocalLambdaContext

if TYPE_CHECKING:
    from conftest import Deployment

ROOT = Path(__file__).resolve().parents[2]
NAME = "billing-service"


def event(name: str, **changes: Any) -> dict[str, Any]:
    loaded = json.loads((ROOT / "events" / f"{name}.json").read_text())
    loaded.update(changes)
    return loaded


def create_event(body: Any = None, content_type: str | None = "application/json", raw: str | None = None) -> dict:
    created = event("apigw_create_client")
    created["body"] = raw if raw is not None else json.dumps(body)
    created["headers"] = {k: v for k, v in created["headers"].items() if k not in ("content-type", "content-length")}
    if content_type is not None:
        created["headers"]["content-type"] = content_type
    return created


def for_name(template: str, name: str) -> dict[str, Any]:
    """An event of ``template`` (a route with {name}) for another client name."""
    changed = copy.deepcopy(event(template))
    path = changed["rawPath"].replace(NAME, name)
    changed["rawPath"] = path
    changed["pathParameters"] = {"name": name}
    changed["requestContext"]["http"]["path"] = path
    return changed


class Api:
    """One container of the provisioning function: the module loaded afresh, as a cold start does."""

    def __init__(self, module: ModuleType) -> None:
        self.module = module

    def __call__(self, request: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
        response = self.module.lambda_handler(request, LocalLambdaContext(function_name="provisioning"))
        body = response.get("body") or ""
        parsed = json.loads(body) if body else None
        return response["statusCode"], {k.lower(): v for k, v in response.get("headers", {}).items()}, parsed


@pytest.fixture
def environment(deployment: Deployment, monkeypatch) -> Deployment:
    """The provisioning function's environment, pointed at moto and the emulator; the admin's secret stored."""
    for key, value in {**deployment.lambda_environment(), "POWERTOOLS_LOG_LEVEL": "DEBUG"}.items():
        monkeypatch.setenv(key, value)
    for variable in ("ROTATION_FUNCTION_ARN", "KMS_KEY_ID"):
        monkeypatch.delenv(variable, raising=False)
    return deployment


@pytest.fixture
def new_container(environment: Deployment, load_function) -> Callable[[], Api]:
    """Loads the provisioning function afresh, as a new container's cold start does."""
    return lambda: Api(load_function("provisioning", {}))


@pytest.fixture
def api(new_container: Callable[[], Api]) -> Iterator[Api]:
    yield new_container()
    # Each load adds the handler's log configuration to the zus_m2m loggers; drop it between tests.
    for name in [n for n in logging.root.manager.loggerDict if n.startswith("zus_m2m")]:
        logging.getLogger(name).handlers.clear()


def emulator(zus, route: str, **body: Any) -> None:
    requests.post(f"{zus.url}/_emulator/{route}", json=body, timeout=5).raise_for_status()


def app_clients_at_zus(zus) -> int:
    return int(requests.get(f"{zus.url}/_emulator/stats", timeout=5).json()["appClients"])


def assert_problem(status: int, headers: dict[str, str], body: Any, expected: int) -> None:
    assert status == expected, body
    assert headers["content-type"] == "application/problem+json"
    assert body["status"] == expected
    assert body["type"].startswith("urn:zus-m2m:problem:")
    assert body["title"]
    assert body["detail"]


# --- the routes, through the events of events/ -------------------------------------------------


def test_create_answers_201_then_the_same_request_200_with_the_same_record(api: Api, zus, new_container) -> None:
    status, headers, created = api(event("apigw_create_client"))

    assert status == 201, created
    assert headers["content-type"] == "application/json"
    assert headers["location"] == "/app-clients/billing-service"
    assert headers["cache-control"] == "no-store"
    assert set(created) == {"name", "appClientId", "clientId", "roleId", "roleName", "secretArn", "createdAt"}
    assert created["name"] == NAME
    assert created["roleName"] == "Builder Admin"

    again_status, _, again = new_container()(event("apigw_create_client"))

    assert again_status == 200
    assert again == created
    assert app_clients_at_zus(zus) == 2


def test_list_get_rotate_and_delete(api: Api, aws) -> None:
    _, _, created = api(event("apigw_create_client"))

    status, _, listed = api(event("apigw_list_clients"))
    assert status == 200
    assert [c["name"] for c in listed["appClients"]] == [NAME, "zus-m2m-admin"]
    assert {k: listed["appClients"][0][k] for k in created} == created
    assert listed["appClients"][0]["token"]["cached"] is True
    assert listed["appClients"][0]["budget"] == {"usedLastHour": 1, "limit": 100}
    assert listed["appClients"][1]["clientId"] == "local-admin"

    status, _, shown = api(event("apigw_get_client"))
    assert status == 200
    assert {k: shown[k] for k in created} == created
    assert shown["token"]["cached"] is True
    assert isinstance(shown["token"]["expiresAt"], int)
    assert set(shown["token"]) == {"cached", "expiresAt"}
    assert shown["budget"] == {"usedLastHour": 1, "limit": 100}
    assert "lastRotation" in shown
    assert isinstance(shown["nextRotation"], int)

    status, _, rotation = api(event("apigw_start_rotation"))
    assert status == 202, rotation
    assert rotation["secretArn"] == created["secretArn"]
    aws.secretsmanager.put_secret_value(
        SecretId="zus-m2m/test/billing-service",
        SecretString=json.dumps({"clientId": "x", "clientSecret": "y"}),
        VersionStages=["AWSPENDING"],
    )
    assert_problem(*api(event("apigw_start_rotation")), 409)

    status, _, body = api(event("apigw_delete_client"))
    assert status == 204
    assert body is None
    assert_problem(*api(event("apigw_delete_client")), 404)
    assert_problem(*api(event("apigw_get_client")), 404)
    description = aws.secretsmanager.describe_secret(SecretId="zus-m2m/test/billing-service")
    assert description.get("DeletedDate") is not None


def test_a_base64_encoded_body_is_read(api: Api) -> None:
    request = event("apigw_create_client")
    request["body"] = base64.b64encode(request["body"].encode()).decode()
    request["isBase64Encoded"] = True

    status, _, created = api(request)

    assert status == 201, created


# --- every validation error, as problem+json -------------------------------------------------


@pytest.mark.parametrize(
    ("request_event", "field"),
    [
        (create_event(raw="{not json"), "not valid JSON"),
        (create_event(raw=""), "JSON object"),
        (create_event(["billing-service"]), "JSON object"),
        (create_event("billing-service"), "JSON object"),
        (create_event({}), "name is required"),
        (create_event({"roleName": "Builder Admin"}), "name is required"),
        (create_event({"name": NAME, "role": "Builder Admin"}), "unknown field(s): role"),
        (create_event({"name": NAME, "secret": "x"}), "unknown field(s): secret"),
        (create_event({"name": 42}), "name must be"),
        (create_event({"name": None}), "name must be"),
        (create_event({"name": ""}), "name must be"),
        (create_event({"name": "x" * 65}), "name must be"),
        (create_event({"name": "billing service"}), "name must be"),
        (create_event({"name": "billing/service"}), "name must be"),
        (create_event({"name": NAME, "roleName": 1}), "roleName"),
        (create_event({"name": NAME, "roleName": ""}), "roleName"),
        (create_event({"name": NAME, "roleName": ["Builder Admin"]}), "roleName"),
        (create_event({"name": NAME}, content_type="text/plain"), "Content-Type"),
        (create_event({"name": NAME}, content_type="application/x-www-form-urlencoded"), "Content-Type"),
        (for_name("apigw_get_client", "bad$name"), "name must be"),
        (for_name("apigw_delete_client", "bad$name"), "name must be"),
        (for_name("apigw_start_rotation", "bad$name"), "name must be"),
    ],
)
def test_invalid_requests_are_400_problems_naming_the_field(api: Api, zus, request_event: dict, field: str) -> None:
    status, headers, body = api(request_event)

    assert_problem(status, headers, body, 400)
    assert field in body["detail"]
    assert app_clients_at_zus(zus) == 1


def test_an_unknown_role_is_a_422_problem_naming_it_and_the_roles(api: Api, zus) -> None:
    status, headers, body = api(create_event({"name": NAME, "roleName": "Janitor"}))

    assert_problem(status, headers, body, 422)
    assert "'Janitor'" in body["detail"]
    assert "Builder Admin" in body["detail"]
    assert "Care Team User" in body["detail"]
    assert app_clients_at_zus(zus) == 1


def test_unknown_names_are_404_problems(api: Api) -> None:
    for template in ("apigw_get_client", "apigw_delete_client", "apigw_start_rotation"):
        assert_problem(*api(for_name(template, "nobody")), 404)


def test_another_role_for_an_existing_name_is_a_409_problem(api: Api) -> None:
    api(event("apigw_create_client"))

    assert_problem(*api(create_event({"name": NAME, "roleName": "Care Team User"})), 409)


def test_deleting_the_bootstrap_admin_is_a_409_problem(api: Api, zus) -> None:
    assert_problem(*api(for_name("apigw_delete_client", "zus-m2m-admin")), 409)
    assert app_clients_at_zus(zus) == 1


# --- dependencies failing ----------------------------------------------------------------------


def test_zus_faults_during_create_are_503_with_retry_after_then_the_retry_is_201(api: Api, zus) -> None:
    emulator(zus, "faults", status=503, rate=1.0, paths=["/auth/app-clients"])

    status, headers, body = api(event("apigw_create_client"))

    assert_problem(status, headers, body, 503)
    assert int(headers["retry-after"]) >= 1
    emulator(zus, "faults")
    assert app_clients_at_zus(zus) == 1

    status, _, created = api(event("apigw_create_client"))

    assert status == 201, created
    assert app_clients_at_zus(zus) == 2


def test_a_care_team_user_admin_is_a_503_problem_naming_the_forbidden_call(
    api: Api, zus, environment: Deployment
) -> None:
    zus_client, admin_token = environment.zus_client, environment.admin_token
    role = zus_client.find_role("Care Team User", admin_token)
    weak = zus_client.create_app_client("weak-admin", role.id, admin_token)
    environment.store_admin(weak.app_client.id, weak.app_client.client_id, weak.client_secret, "Care Team User")

    status, headers, body = api(event("apigw_create_client"))

    assert_problem(status, headers, body, 503)
    assert body["type"] == "urn:zus-m2m:problem:admin-forbidden"
    assert "role lookup" in body["detail"]
    assert "403" in body["detail"]
    assert "retry-after" in headers
    assert weak.client_secret not in json.dumps(body)
    assert app_clients_at_zus(zus) == 2  # the admin and the weak admin; nothing new


class EverythingLogged(logging.Handler):
    """Keeps every attribute of every log record, extras included, as text."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.dumps({**record.__dict__, "message": record.getMessage()}, default=str))


def test_no_response_or_log_line_carries_a_secret_or_a_token(api: Api, aws, capsys) -> None:
    logged = EverythingLogged()
    watched = [logging.getLogger(), logging.getLogger("zus-m2m")] + [
        logging.getLogger(n) for n in list(logging.root.manager.loggerDict) if n.startswith("zus_m2m")
    ]
    for watched_logger in watched:
        watched_logger.addHandler(logged)
    try:
        responses = [api(event("apigw_create_client"))]
        stored = json.loads(
            aws.secretsmanager.get_secret_value(SecretId="zus-m2m/test/billing-service", VersionStage="AWSCURRENT")[
                "SecretString"
            ]
        )
        token = aws.dynamodb.get_item(
            TableName=aws.table_name, Key={"pk": {"S": "client#billing-service"}, "sk": {"S": "token"}}
        )["Item"]["accessToken"]["S"]
        for name in ("apigw_create_client", "apigw_list_clients", "apigw_get_client", "apigw_start_rotation"):
            responses.append(api(event(name)))
        responses.append(api(event("apigw_delete_client")))
    finally:
        for watched_logger in watched:
            watched_logger.removeHandler(logged)
    captured = capsys.readouterr()
    everything = "\n".join(logged.lines) + captured.out + captured.err + json.dumps(responses)

    assert any("create answered" in line for line in logged.lines)  # the logs were seen
    assert any("app client deleted" in line for line in logged.lines)
    for secret in ("local-admin-secret", stored["clientSecret"], token):
        assert secret not in everything
    assert "clientSecret" not in everything
