"""The API's Lambda handlers (provisioning and token vending), loaded like the runtime loads them, invoked
with API Gateway (HTTP API payload 2.0) events from events/, against moto server and the Zus emulator."""

from __future__ import annotations

import base64
import copy
import io
import json
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pytest
import requests
from fakes import RECORD_FIELDS
from integration_support import Aws, LoadFunction

from zus_emulator import EmulatorServer
from zus_local.lambda_context import LocalLambdaContext
from zus_local.secrets_manager_rotation import find_started_rotations
from zus_m2m.aws.page_tokens import KmsPageTokens
from zus_m2m.aws.table import client_key
from zus_m2m.values import fingerprint

if TYPE_CHECKING:
    from integration_support import Deployment

ROOT = Path(__file__).resolve().parents[2]
NAME = "billing-service"
CONSUMER_ROLE = "arn:aws:iam::123456789012:role/billing-service"
# A caller who is not one of the stack's admins (the events' caller, platform-admin, is).
NOT_AN_ADMIN = "arn:aws:sts::123456789012:assumed-role/billing-service/task-1"


def event(name: str, **changes: Any) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((ROOT / "events" / f"{name}.json").read_text())
    loaded.update(changes)
    return loaded


def create_event(
    body: Any = None, content_type: str | None = "application/json", raw: str | None = None
) -> dict[str, Any]:
    created = event("apigw_create_client")
    created["body"] = raw if raw is not None else json.dumps(body)
    created["headers"] = {k: v for k, v in created["headers"].items() if k not in ("content-type", "content-length")}
    if content_type is not None:
        created["headers"]["content-type"] = content_type
    return created


def signed_by(request: dict[str, Any], user_arn: str) -> dict[str, Any]:
    """``request`` as API Gateway hands it over when ``user_arn`` signed it."""
    changed = copy.deepcopy(request)
    changed["requestContext"]["authorizer"]["iam"]["userArn"] = user_arn
    return changed


class AuditLines(logging.Handler):
    """The audit events the handlers log (``zus_m2m.audit``), in order."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.events: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.events.append(record.audit)  # type: ignore[attr-defined]


@pytest.fixture
def audited() -> Iterator[AuditLines]:
    lines = AuditLines()
    logging.getLogger("zus_m2m.audit").addHandler(lines)
    try:
        yield lines
    finally:
        logging.getLogger("zus_m2m.audit").removeHandler(lines)


def for_name(template: str, name: str) -> dict[str, Any]:
    """An event of ``template`` (a route with {name}) for another client name."""
    changed = copy.deepcopy(event(template))
    path = changed["rawPath"].replace(NAME, name)
    changed["rawPath"] = path
    changed["pathParameters"] = {"name": name}
    changed["requestContext"]["http"]["path"] = path
    return changed


class Api:
    """One container of an API function: the module loaded afresh, as a cold start does."""

    def __init__(self, module: ModuleType, function_name: str = "provisioning") -> None:
        self.module = module
        self.function_name = function_name

    def __call__(self, request: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
        response = self.module.lambda_handler(request, LocalLambdaContext(function_name=self.function_name))
        body = response.get("body") or ""
        parsed = json.loads(body) if body else None
        return response["statusCode"], {k.lower(): v for k, v in response.get("headers", {}).items()}, parsed


@pytest.fixture
def environment(deployment: Deployment, monkeypatch: pytest.MonkeyPatch) -> Deployment:
    """The provisioning function's environment, pointed at moto and the emulator; the admin's secret stored."""
    for key, value in {**deployment.lambda_environment(), "POWERTOOLS_LOG_LEVEL": "DEBUG"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("ROTATION_FUNCTION_ARN", raising=False)
    return deployment


@pytest.fixture
def new_container(environment: Deployment, load_function: LoadFunction) -> Callable[[], Api]:
    """Loads the provisioning function afresh, as a new container's cold start does."""
    return lambda: Api(load_function("provisioning", {}))


@pytest.fixture
def api(new_container: Callable[[], Api]) -> Iterator[Api]:
    yield new_container()
    # Each load adds the handler's log configuration to the zus_m2m loggers; drop it between tests.
    for name in [n for n in logging.root.manager.loggerDict if n.startswith("zus_m2m")]:
        logging.getLogger(name).handlers.clear()


@pytest.fixture
def token_api(environment: Deployment, load_function: LoadFunction, api: Api) -> Api:
    """A container of the token vending function (after the provisioning one, whose log set-up it shares)."""
    return Api(load_function("token_vending", {}), "token-vending")


def emulator(zus: EmulatorServer, route: str, **body: Any) -> None:
    requests.post(f"{zus.url}/_emulator/{route}", json=body, timeout=5).raise_for_status()


def app_clients_at_zus(zus: EmulatorServer) -> int:
    return int(requests.get(f"{zus.url}/_emulator/stats", timeout=5).json()["appClients"])


def assert_problem(status: int, headers: dict[str, str], body: Any, expected: int) -> None:
    assert status == expected, body
    assert headers["content-type"] == "application/problem+json"
    assert body["status"] == expected
    assert body["type"].startswith("urn:zus-m2m:problem:")
    assert body["title"]
    assert body["detail"]


# --- the routes, through the events of events/ -------------------------------------------------


def test_create_answers_201_then_the_same_request_200_with_the_same_record(
    api: Api, zus: EmulatorServer, new_container: Callable[[], Api]
) -> None:
    status, headers, created = api(event("apigw_create_client"))

    assert status == 201, created
    assert headers["content-type"] == "application/json"
    assert headers["location"] == "/app-clients/billing-service"
    assert headers["cache-control"] == "no-store"
    assert set(created) == RECORD_FIELDS
    assert created["consumers"] == [CONSUMER_ROLE]
    assert created["name"] == NAME
    assert created["roleName"] == "Builder Admin"

    again_status, _, again = new_container()(event("apigw_create_client"))

    assert again_status == 200
    assert again == created
    assert app_clients_at_zus(zus) == 2


def test_list_get_rotate_and_delete(api: Api, aws: Aws) -> None:
    _, _, created = api(event("apigw_create_client"))

    status, _, listed = api(event("apigw_list_clients"))
    assert status == 200
    assert [c["name"] for c in listed["appClients"]] == [NAME, "zus-m2m-admin"]
    assert listed["appClients"][0] == created  # the records; a client's details are GET /app-clients/{name}
    assert listed["appClients"][1]["clientId"] == "local-admin"
    assert listed["nextToken"] is None

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


def test_patch_replaces_the_consumers_and_answers_the_record(api: Api) -> None:
    _, _, created = api(event("apigw_create_client"))

    status, headers, updated = api(event("apigw_update_client"))

    assert status == 200, updated
    assert headers["cache-control"] == "no-store"
    assert updated == {
        **created,
        "consumers": [CONSUMER_ROLE, "arn:aws:iam::123456789012:role/reporting-service"],
    }
    _, _, shown = api(event("apigw_get_client"))
    assert shown["consumers"] == updated["consumers"]


def test_patch_refuses_a_bad_list_naming_the_entry_and_changes_nothing(api: Api) -> None:
    api(event("apigw_create_client"))
    request = event("apigw_update_client", body=json.dumps({"consumers": [CONSUMER_ROLE, "arn:aws:iam::*:root"]}))

    status, headers, body = api(request)

    assert_problem(status, headers, body, 400)
    assert "consumers[1]: 'arn:aws:iam::*:root'" in body["detail"]
    assert api(event("apigw_get_client"))[2]["consumers"] == [CONSUMER_ROLE]
    assert_problem(*api(for_name("apigw_update_client", "nobody")), 404)
    assert_problem(*api(for_name("apigw_update_client", "zus-m2m-admin")), 409)


@pytest.mark.parametrize("name", ["ZUS-M2M-ADMIN", "Billing-Service"])
def test_a_name_in_another_case_is_400_nothing_made_and_the_one_kind_of_bad_request(
    api: Api, zus: EmulatorServer, name: str
) -> None:
    """Names are lower case: the protected admin's name (or a client's) cannot be had again in capitals."""
    api(event("apigw_create_client"))  # billing-service
    before = requests.get(f"{zus.url}/_emulator/stats", timeout=5).json()["appClients"]

    status, headers, body = api(create_event({"name": name, "consumers": [CONSUMER_ROLE]}))

    assert_problem(status, headers, body, 400)
    assert body["type"] == "urn:zus-m2m:problem:invalid-request"
    assert body["detail"].endswith(f"(names are lower case: {name.lower()!r})")
    assert requests.get(f"{zus.url}/_emulator/stats", timeout=5).json()["appClients"] == before
    for template in ("apigw_get_client", "apigw_update_client", "apigw_delete_client"):
        assert api(for_name(template, name))[0] == 400


@pytest.mark.parametrize("route", ["apigw_create_client", "apigw_update_client"])
def test_a_consumer_of_another_account_is_a_400_that_says_why_and_changes_nothing(api: Api, route: str) -> None:
    if route == "apigw_update_client":
        api(event("apigw_create_client"))
    other = "arn:aws:iam::444455556666:role/billing-service"
    body: dict[str, Any] = {"consumers": [CONSUMER_ROLE, other]}
    if route == "apigw_create_client":
        body["name"] = "billing-service"

    status, headers, problem = api(event(route, body=json.dumps(body)))

    assert_problem(status, headers, problem, 400)
    assert problem["detail"] == (
        f"consumers[1]: {other!r} is in account 444455556666, not this stack's (123456789012): an HTTP API has "
        "no resource policy, so a principal of another account can never call it; list a role of this account "
        "that the other account's service assumes (docs/security.md)"
    )
    shown = api(event("apigw_get_client"))
    if route == "apigw_update_client":
        assert shown[2]["consumers"] == [CONSUMER_ROLE]
    else:
        assert shown[0] == 404


def test_drift_lists_app_clients_at_zus_not_managed_here_and_managed_ones_missing_there(
    api: Api, environment: Deployment
) -> None:
    _, _, managed = api(event("apigw_create_client"))
    _, _, gone = api(event("apigw_create_client", body=json.dumps({"name": "reporting-service"})))
    drift_event = event("apigw_list_clients", rawPath="/app-clients-drift", routeKey="GET /app-clients-drift")
    drift_event["requestContext"]["routeKey"] = "GET /app-clients-drift"
    drift_event["requestContext"]["http"]["path"] = "/app-clients-drift"
    assert api(drift_event)[2] == {"unmanagedAtZus": [], "missingAtZus": []}  # the bootstrap admin is managed too

    # Behind the stack's back, with a Builder Admin token: a client made at Zus, a managed one deleted there
    zus, bearer = environment.zus_client, environment.admin_token
    role = zus.find_role("Builder Admin", bearer)
    made = zus.create_app_client("made-at-zus", role.id, bearer).app_client
    zus.delete_app_client(gone["appClientId"], bearer)

    status, _, drift = api(drift_event)

    assert status == 200
    assert drift == {
        "unmanagedAtZus": [
            {"appClientId": made.id, "clientId": made.client_id, "name": "made-at-zus", "roleId": role.id}
        ],
        "missingAtZus": [
            {"name": "reporting-service", "appClientId": gone["appClientId"], "clientId": gone["clientId"]}
        ],
    }
    assert managed["appClientId"] not in json.dumps(drift)


def secret_versions(aws: Aws, secret_arn: str) -> list[tuple[str, list[str]]]:
    """A secret's versions and their stages (moto reports the time of the listing as each CreatedDate)."""
    listed = aws.secretsmanager.list_secret_version_ids(SecretId=secret_arn)["Versions"]
    return sorted((version["VersionId"], sorted(version["VersionStages"])) for version in listed)


def test_a_caller_who_is_not_an_admin_is_refused_on_every_admin_route_and_nothing_changes(
    api: Api, aws: Aws, zus: EmulatorServer, audited: AuditLines
) -> None:
    _, _, created = api(event("apigw_create_client"))
    versions = secret_versions(aws, created["secretArn"])
    audited.events.clear()
    routes = [
        create_event({"name": "another-client"}),
        event("apigw_create_client"),
        event("apigw_list_clients"),
        event("apigw_get_client"),
        event("apigw_update_client"),
        event("apigw_start_rotation"),
        event("apigw_delete_client"),
        for_name("apigw_start_rotation", "zus-m2m-admin"),
    ]

    for request in routes:
        status, headers, body = api(signed_by(request, NOT_AN_ADMIN))
        assert_problem(status, headers, body, 403)
        assert body["detail"] == f"{NOT_AN_ADMIN} is not an admin of this zus-m2m stack"

    # nothing half-changed: the record, the secret and the Zus clients as they were
    assert app_clients_at_zus(zus) == 2
    assert secret_versions(aws, created["secretArn"]) == versions
    assert api(event("apigw_get_client"))[2]["consumers"] == [CONSUMER_ROLE]
    assert [line["outcome"] for line in audited.events][: len(routes)] == ["denied"] * len(routes)


def test_a_second_rotation_within_the_minimum_gap_is_429_with_retry_after(api: Api, aws: Aws) -> None:
    api(event("apigw_create_client"))
    assert api(event("apigw_start_rotation"))[0] == 202
    # moto without a rotation function finishes the rotation at once: the next one is not "in progress"
    versions = secret_versions(aws, "zus-m2m/test/billing-service")

    status, headers, body = api(event("apigw_start_rotation"))

    assert_problem(status, headers, body, 429)
    assert 290 <= int(headers["retry-after"]) <= 300
    assert "requested less than 300 s ago" in body["detail"]
    assert secret_versions(aws, "zus-m2m/test/billing-service") == versions


def test_every_call_is_one_audit_line_naming_caller_action_client_and_outcome(api: Api, audited: AuditLines) -> None:
    api(event("apigw_create_client"))
    api(signed_by(event("apigw_delete_client"), NOT_AN_ADMIN))

    created, denied = audited.events

    assert created == {
        "time": "2026-11-27T12:00:00.000Z",
        "requestId": "d1c5e3a2-7b61-11e6-9a41-93e8deadbe01",
        "action": "POST /app-clients",
        "client": NAME,
        "caller": "arn:aws:sts::123456789012:assumed-role/platform-admin/platform-admin",
        "accountId": "123456789012",
        "accessKey": "ASIAEXAMPLEKEY000000",
        "sourceIp": "203.0.113.10",
        "status": 201,
        "outcome": "allowed",
    }
    assert (denied["action"], denied["client"], denied["caller"]) == ("DELETE /app-clients/{name}", NAME, NOT_AN_ADMIN)
    assert (denied["status"], denied["outcome"], denied["problem"]) == (403, "denied", "forbidden")


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
def test_invalid_requests_are_400_problems_naming_the_field(
    api: Api, zus: EmulatorServer, request_event: dict[str, Any], field: str
) -> None:
    status, headers, body = api(request_event)

    assert_problem(status, headers, body, 400)
    assert field in body["detail"]
    assert app_clients_at_zus(zus) == 1


def test_an_unknown_role_is_a_422_problem_naming_it_and_the_roles(api: Api, zus: EmulatorServer) -> None:
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


def test_deleting_the_bootstrap_admin_is_a_409_problem(api: Api, zus: EmulatorServer) -> None:
    assert_problem(*api(for_name("apigw_delete_client", "zus-m2m-admin")), 409)
    assert app_clients_at_zus(zus) == 1


# --- dependencies failing ----------------------------------------------------------------------


def test_zus_faults_during_create_are_503_with_retry_after_then_the_retry_is_201(api: Api, zus: EmulatorServer) -> None:
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
    api: Api, zus: EmulatorServer, environment: Deployment
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


def test_no_response_or_log_line_carries_a_secret_or_a_token(
    api: Api, aws: Aws, capsys: pytest.CaptureFixture[str]
) -> None:
    logged = EverythingLogged()
    watched = [logging.getLogger(), logging.getLogger("zus-m2m-provisioning")] + [
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


# --- a stuck rotation, repaired on request ------------------------------------------------------------


@pytest.fixture
def api_with_rotation(
    environment: Deployment, load_function: LoadFunction, rotation_function_arn: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Api]:
    monkeypatch.setenv("ROTATION_FUNCTION_ARN", rotation_function_arn)
    # These tests start a rotation, repair it, then start the next at once (within the default gap).
    monkeypatch.setenv("ROTATION_REQUEST_MIN_GAP_SECONDS", "0")
    yield Api(load_function("provisioning", {}))
    for name in [n for n in logging.root.manager.loggerDict if n.startswith("zus_m2m")]:
        logging.getLogger(name).handlers.clear()


def rotations_event(body: str | None, content_type: str | None = "application/json") -> dict[str, Any]:
    request = event("apigw_start_rotation")
    request["body"] = body
    if content_type is not None:
        request["headers"] = {**request["headers"], "content-type": content_type}
    return request


def stuck_rotation(api: Api, environment: Deployment) -> tuple[str, str, dict[str, Any]]:
    """A client whose rotation's createSecret stored the new secret, then stopped moving: its secret's
    ARN, the rotation's version, and the 409 a plain rotation request now gets."""
    api(event("apigw_create_client"))
    assert api(event("apigw_start_rotation"))[0] == 202
    [(arn, version)] = find_started_rotations(environment.aws.secretsmanager)
    environment.steps().run("createSecret", arn, version)
    status, headers, refused = api(rotations_event(None))
    assert_problem(status, headers, refused, 409)
    return arn, version, refused


def test_an_admin_forces_the_repair_of_a_stuck_rotation(api_with_rotation: Api, environment: Deployment) -> None:
    # Given a rotation whose createSecret stored the new secret, then stopped moving
    api = api_with_rotation
    arn, version, refused = stuck_rotation(api, environment)

    # A plain request is refused, and says how to repair
    assert '"repair": true' in refused["detail"]

    # When an admin asks for the repair
    status, _, repaired = api(rotations_event('{"repair": true}'))

    # Then it is done at once: the new secret worked at Zus, so the rotation was rolled forward
    assert status == 202, repaired
    assert repaired["rotation"] == "rolled-forward"
    versions = environment.aws.secretsmanager.describe_secret(SecretId=arn)["VersionIdsToStages"]
    assert versions[version] == ["AWSCURRENT"]
    assert api(rotations_event("{}"))[0] == 202  # and the next rotation can start


@pytest.fixture
def api_with_the_default_gap(
    environment: Deployment, load_function: LoadFunction, rotation_function_arn: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Api]:
    """The provisioning function with the stack's default gap between rotation requests (5 minutes)."""
    monkeypatch.setenv("ROTATION_FUNCTION_ARN", rotation_function_arn)
    monkeypatch.delenv("ROTATION_REQUEST_MIN_GAP_SECONDS", raising=False)
    yield Api(load_function("provisioning", {}))
    for name in [n for n in logging.root.manager.loggerDict if n.startswith("zus_m2m")]:
        logging.getLogger(name).handlers.clear()


def test_the_advised_repair_works_at_once_and_has_its_own_guard(
    api_with_the_default_gap: Api, environment: Deployment
) -> None:
    """A rotation requested, stuck after createSecret: the 409's advice (repair) is followed at once, within
    the 5-minute gap between rotation requests; a second repair right after is 429, and so is a new
    rotation (its gap still runs)."""
    api = api_with_the_default_gap
    arn, version, refused = stuck_rotation(api, environment)
    assert '{"repair": true} to repair it now (one repair at a time, at most one every 30 s)' in refused["detail"]

    status, _, repaired = api(rotations_event('{"repair": true}'))

    assert (status, repaired.get("rotation")) == (202, "rolled-forward"), repaired
    versions = environment.aws.secretsmanager.describe_secret(SecretId=arn)["VersionIdsToStages"]
    assert versions[version] == ["AWSCURRENT"]
    # a new rotation: still within the gap of the one requested above
    status, headers, throttled = api(rotations_event("{}"))
    assert_problem(status, headers, throttled, 429)
    assert 290 <= int(headers["retry-after"]) <= 300


def test_a_storm_of_repairs_is_one_repair(api_with_the_default_gap: Api, environment: Deployment) -> None:
    api = api_with_the_default_gap
    api(event("apigw_create_client"))
    assert api(event("apigw_start_rotation"))[0] == 202
    [(arn, version)] = find_started_rotations(environment.aws.secretsmanager)
    environment.steps().run("createSecret", arn, version)
    environment.aws.dynamodb.update_item(  # a repair in flight (another container's), its lease still running
        TableName=environment.aws.table_name,
        Key={"pk": {"S": f"client#{NAME}"}, "sk": {"S": "record"}},
        UpdateExpression="SET lastRepairRequestedAt = :long_ago, repairInFlightUntil = :later",
        ExpressionAttributeValues={":long_ago": {"N": "1"}, ":later": {"N": str(time.time() + 45)}},
    )

    status, headers, body = api(rotations_event('{"repair": true}'))

    assert_problem(status, headers, body, 429)
    assert "in flight or was requested less than 30 s ago" in body["detail"]
    assert 40 <= int(headers["retry-after"]) <= 45
    stages = environment.aws.secretsmanager.describe_secret(SecretId=arn)["VersionIdsToStages"]
    assert stages[version] == ["AWSPENDING"]  # nothing repaired


# --- strict input: query strings and bodies ---------------------------------------------------


def with_query(request: dict[str, Any], **query: str) -> dict[str, Any]:
    changed = copy.deepcopy(request)
    changed["queryStringParameters"] = query
    changed["rawQueryString"] = "&".join(f"{key}={value}" for key, value in query.items())
    return changed


@pytest.mark.parametrize(
    "template",
    [
        "apigw_create_client",
        "apigw_list_clients",
        "apigw_get_client",
        "apigw_delete_client",
        "apigw_start_rotation",
        "apigw_get_token",
    ],
)
def test_every_route_refuses_a_query_parameter_it_does_not_take_naming_it(
    api: Api, zus: EmulatorServer, load_function: LoadFunction, template: str
) -> None:
    function = Api(load_function("token_vending", {})) if template == "apigw_get_token" else api
    api(event("apigw_create_client"))
    clients = app_clients_at_zus(zus)

    status, headers, body = function(with_query(event(template), minttl="5000"))

    assert_problem(status, headers, body, 400)
    assert "unknown query parameter 'minttl'" in body["detail"]
    assert app_clients_at_zus(zus) == clients  # nothing was done
    assert api(event("apigw_get_client"))[0] == 200


@pytest.mark.parametrize(
    ("request_event", "key"),
    [
        (create_event(raw='{"name": "billing-service", "name": "other"}'), "'name'"),
        (
            create_event(raw='{"name": "billing-service", "roleName": "Builder Admin", "roleName": "Care Team User"}'),
            "'roleName'",
        ),
        (rotations_event('{"repair": true, "repair": false}'), "'repair'"),
    ],
)
def test_a_json_key_given_twice_is_a_400_naming_it(
    api: Api, zus: EmulatorServer, request_event: dict[str, Any], key: str
) -> None:
    status, headers, body = api(request_event)

    assert_problem(status, headers, body, 400)
    assert f"the body has the key {key} more than once" in body["detail"]
    assert app_clients_at_zus(zus) == 1


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        ('{"repair": 1}', "application/json", "repair must be true or false"),
        ('{"repair": "yes"}', "application/json", "repair must be true or false"),
        ('{"force": true}', "application/json", "unknown field(s): force"),
        ("[]", "application/json", '{"repair": true}'),
        ("true", "application/json", '{"repair": true}'),
        ("{not json", "application/json", "not valid JSON"),
        ('{"repair": true}', "text/plain", "Content-Type"),
    ],
)
def test_a_rotation_body_other_than_nothing_or_repair_is_400(
    api: Api, aws: Aws, body: str, content_type: str, expected: str
) -> None:
    api(event("apigw_create_client"))

    status, headers, problem = api(rotations_event(body, content_type))

    assert_problem(status, headers, problem, 400)
    assert expected in problem["detail"]
    versions = aws.secretsmanager.describe_secret(SecretId="zus-m2m/test/billing-service")["VersionIdsToStages"]
    assert [stages for stages in versions.values() if "AWSPENDING" in stages] == []  # no rotation started


@pytest.mark.parametrize(
    ("body", "content_type"),
    [(None, None), ("", "application/json"), ("{}", None), ('{"repair": false}', "application/json")],
)
def test_a_rotation_starts_with_no_body_an_empty_object_or_repair_false(
    api_with_rotation: Api, body: str | None, content_type: str | None
) -> None:
    api_with_rotation(event("apigw_create_client"))

    status, _, started = api_with_rotation(rotations_event(body, content_type))

    assert status == 202, started
    assert started["rotation"] == "started"


def seed_records(environment: Deployment, names: list[str]) -> None:
    """Active records as provisioning leaves them, each with a cached token item beside it (what a scan
    of the table reads past)."""
    from zus_m2m.aws.client_records import DynamoClientRecords
    from zus_m2m.aws.table import TableKeys
    from zus_m2m.aws.token_table import DynamoTokenTable
    from zus_m2m.values import CachedToken, ClientRecord

    keys = TableKeys("zus-m2m-admin")
    records = DynamoClientRecords(environment.aws.dynamodb, environment.aws.table_name, keys)
    tokens = DynamoTokenTable(environment.aws.dynamodb, environment.aws.table_name, keys)
    for index, name in enumerate(names):
        assert records.claim(name, "Builder Admin", (), "seed", 0.0, 1.0, previous_owner=None)
        record = ClientRecord(name, f"app-{index}", f"client-{index}", "role", "Builder Admin", f"arn:{name}", index)
        assert records.complete(record, "seed")
        tokens.put_token(name, CachedToken("not-a-token", "Bearer", 4_000_000_000, f"app-{index}"), None)


def test_the_list_comes_in_pages_of_records_with_an_opaque_next_token(api: Api, environment: Deployment) -> None:
    names = [f"client-{index:02d}" for index in range(11)]
    seed_records(environment, names)

    pages: list[list[str]] = []
    token: str | None = None
    while True:
        query = {"limit": "4", **({"nextToken": token} if token else {})}
        status, _, page = api(with_query(event("apigw_list_clients"), **query))
        assert status == 200, page
        pages.append([record["name"] for record in page["appClients"]])
        token = page["nextToken"]
        if token is None:
            break

    listed = [name for page in pages for name in page]
    assert sorted(listed) == sorted([*names, "zus-m2m-admin"])  # each once
    assert "zus-m2m-admin" in pages[0]
    assert all(len(page) <= 4 for page in pages[1:])
    assert len(pages) >= 3
    status, _, default = api(event("apigw_list_clients"))
    assert len(default["appClients"]) == 12  # 50 by default
    assert default["nextToken"] is None


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"limit": "0"}, "limit must be an integer between 1 and 100"),
        ({"limit": "101"}, "limit must be an integer between 1 and 100"),
        ({"limit": "ten"}, "limit must be an integer between 1 and 100"),
        ({"nextToken": "not-a-token"}, "nextToken was not issued by this service"),
        ({"nextToken": "eyJway"}, "nextToken was not issued by this service"),  # cut short
        ({"nextToken": "eyJwayI6IHsiUyI6IDF9LCAic2siOiB7IlMiOiAicmVjb3JkIn19"}, "nextToken was not"),  # pk a number
        ({"nextToken": ""}, "nextToken must be the nextToken of a previous page"),
        ({"limit": "5", "Limit": "6"}, "unknown query parameter 'Limit'"),
    ],
)
def test_bad_or_tampered_page_parameters_are_400(
    api: Api, environment: Deployment, query: dict[str, str], expected: str
) -> None:
    seed_records(environment, ["a", "b", "c"])
    status, _, page = api(with_query(event("apigw_list_clients"), limit="1"))
    assert page["nextToken"]

    status, headers, body = api(with_query(event("apigw_list_clients"), **query))

    assert_problem(status, headers, body, 400)
    assert expected in body["detail"]


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def test_forged_or_edited_next_tokens_are_400_not_a_shifted_page(api: Api, environment: Deployment) -> None:
    """What the issue forged (a record key in base64, ``client#a``, ``admin#zus-m2m-admin``), a real
    token edited by one character, and a token sealed for another table: each a 400, none a page."""
    seed_records(environment, ["a", "b", "c"])
    _, _, page = api(with_query(event("apigw_list_clients"), limit="1"))
    real = page["nextToken"]
    flipped = real[:-10] + ("A" if real[-10] != "A" else "B") + real[-9:]  # in the sealed text
    other_table = KmsPageTokens(environment.aws.client("kms"), environment.kms_key_id, "another-table").seal("a")
    forged = [
        _b64('{"pk":{"S":"client#a"},"sk":{"S":"record"}}'),
        _b64("client#a"),
        _b64("admin#zus-m2m-admin"),
        "client#a",
        flipped,
        other_table,
    ]
    for token in forged:
        status, headers, body = api(with_query(event("apigw_list_clients"), nextToken=token))
        assert_problem(status, headers, body, 400)
        assert body["detail"].startswith("nextToken was not issued by this service"), body
    status, _, second = api(with_query(event("apigw_list_clients"), limit="1", nextToken=real))
    assert status == 200
    assert [record["name"] for record in second["appClients"]] == ["b"]


# --- the token route ---------------------------------------------------------------------------------

REPORTING = "arn:aws:sts::123456789012:assumed-role/reporting-service/task-2"


def test_a_consumer_gets_the_token_and_the_audit_line_has_its_expiry_not_the_token(
    api: Api, token_api: Api, audited: AuditLines
) -> None:
    api(event("apigw_create_client"))
    audited.events.clear()

    status, headers, body = token_api(event("apigw_get_token"))

    assert status == 200, body
    assert headers["cache-control"] == "no-store"
    assert body["token_type"] == "Bearer"
    [line] = audited.events
    assert line["action"] == "GET /app-clients/{name}/token"
    assert (line["client"], line["status"], line["outcome"]) == (NAME, 200, "allowed")
    assert line["caller"] == "arn:aws:sts::123456789012:assumed-role/billing-service/billing-service"
    assert line["tokenExpiresAt"] == body["expires_at"]
    assert body["access_token"] not in json.dumps(line)


def test_a_call_writes_one_line_of_its_metrics_and_audit_event_and_package_lines_name_their_module(
    api: Api, token_api: Api, capsys: pytest.CaptureFixture[str]
) -> None:
    """Its lines as CloudWatch gets them: an API call's one line is the EMF document of its metrics with
    its audit event and Lambda's request id (not Powertools' whole line), a hit's the audit event alone
    (the template counts them by tier from it); a line of the package, in a container's second call too,
    names the module that wrote it."""
    api(event("apigw_create_client"))
    written = io.StringIO()
    # The function's two log handlers (its Logger's and the audit lines') write here, not to stdout.
    for handler in [*token_api.module.logger.handlers, *logging.getLogger("zus_m2m.audit").handlers]:
        handler.setStream(written)
    capsys.readouterr()

    status, _, body = token_api(event("apigw_get_token"))
    refused, _, _ = token_api(signed_by(event("apigw_get_token"), REPORTING))

    assert (status, refused) == (200, 403)
    assert "_aws" not in capsys.readouterr().out, "the calls' metrics were published again on a line of their own"
    output = written.getvalue()
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    audit = [line for line in lines if "audit" in line]
    assert [line["audit"]["outcome"] for line in audit] == ["allowed", "denied"]
    powertools_keys = {"location", "timestamp", "cold_start", "function_name", "function_arn", "function_memory_size"}
    for line in audit:
        assert (line["level"], line["message"]) == ("INFO", "audit")
        assert line["function_request_id"]
        assert not powertools_keys & set(line)
    served, denied = audit
    assert served["audit"]["tokenSource"] == "table"
    assert "_aws" not in served, "a hit recorded a metric"
    [metrics] = denied["_aws"]["CloudWatchMetrics"]
    assert [metric["Name"] for metric in metrics["Metrics"]] == ["TokenRefused"]
    assert denied["TokenRefused"] == [1.0]
    refusal = [line for line in lines if line.get("message") == "request refused"]
    assert [line.get("name") for line in refusal] == ["zus_m2m.edge"]
    assert body["access_token"] not in output


def test_a_caller_that_is_not_a_consumer_gets_a_403_problem_naming_neither_token_nor_secret(
    api: Api, token_api: Api, aws: Aws, audited: AuditLines
) -> None:
    api(event("apigw_create_client"))
    cached = aws.dynamodb.get_item(
        TableName=aws.table_name, Key={"pk": {"S": "client#billing-service"}, "sk": {"S": "token"}}
    )

    status, headers, body = token_api(signed_by(event("apigw_get_token"), REPORTING))

    assert_problem(status, headers, body, 403)
    assert body["detail"] == f"{REPORTING} may not get tokens of app client 'billing-service'"
    assert cached["Item"]["accessToken"]["S"] not in json.dumps(body)
    assert "eyJ" not in json.dumps(body)
    assert audited.events[-1]["outcome"] == "denied"
    # a client that does not exist answers the same to a non-admin
    status, _, unknown = token_api(for_name("apigw_get_token", "nobody"))
    assert (status, unknown["detail"]) == (
        403,
        f"{NOT_AN_ADMIN.replace('task-1', 'billing-service')} may not get tokens of app client 'nobody'",
    )


def token_requests_at_zus(zus: EmulatorServer) -> int:
    return sum(requests.get(f"{zus.url}/_emulator/stats", timeout=5).json()["tokenRequests"].values())


def test_a_refused_token_named_by_fingerprint_is_replaced_and_the_audit_line_names_the_fingerprint(
    api: Api, token_api: Api, zus: EmulatorServer, audited: AuditLines, environment: Deployment
) -> None:
    api(event("apigw_create_client"))
    _, _, cached = token_api(event("apigw_get_token"))
    refused = fingerprint(cached["access_token"])
    before = token_requests_at_zus(zus)
    audited.events.clear()

    # Minted a moment ago: the report is ignored, and the audit line says so
    status, _, body = token_api(with_query(event("apigw_get_token"), refused=refused))
    assert (status, body["access_token"]) == (200, cached["access_token"])
    assert token_requests_at_zus(zus) == before
    # Once the token is older than 10 s (its stored lifetime says it was minted 11 s earlier), it is replaced
    aws = environment.aws
    aws.dynamodb.update_item(
        TableName=aws.table_name,
        Key=client_key("billing-service", "token"),
        UpdateExpression="SET tokenLifetime = tokenLifetime + :older",
        ExpressionAttributeValues={":older": {"N": "11"}},
    )
    status, headers, body = token_api(with_query(event("apigw_get_token"), refused=refused))

    assert status == 200, body
    assert body["access_token"] != cached["access_token"]
    assert headers["x-token-source"] == "zus"
    assert token_requests_at_zus(zus) - before == 1
    ignored, replaced = audited.events
    assert (ignored["refusedToken"], ignored["refusedReport"], ignored["outcome"]) == (refused, "ignored", "allowed")
    assert (replaced["refusedToken"], replaced["refusedReport"], replaced["outcome"]) == (
        refused,
        "replaced",
        "allowed",
    )
    for line in audited.events:
        assert cached["access_token"] not in json.dumps(line)
        assert body["access_token"] not in json.dumps(line)


@pytest.mark.parametrize(
    "value", ["", "0123456789ABCDEF", "0123456789abcde", "0123456789abcdef0", "0123456789abcdeg", "eyJhbGciOi.x"]
)  # read before anything else: no client needed
def test_a_refused_parameter_that_is_not_a_fingerprint_is_400_naming_it(token_api: Api, value: str) -> None:
    status, headers, body = token_api(with_query(event("apigw_get_token"), refused=value))

    assert_problem(status, headers, body, 400)
    assert body["detail"].startswith("refused must be a token's fingerprint")


def test_the_bootstrap_admin_client_is_never_vended_not_even_to_an_admin(token_api: Api) -> None:
    admin = "arn:aws:sts::123456789012:assumed-role/platform-admin/platform-admin"

    status, headers, body = token_api(signed_by(for_name("apigw_get_token", "zus-m2m-admin"), admin))

    assert_problem(status, headers, body, 403)
    assert body["detail"] == "the bootstrap admin client 'zus-m2m-admin' is never vended"


def test_a_record_written_before_consumers_existed_is_refused_until_an_admin_grants_some(
    api: Api, token_api: Api, aws: Aws, environment: Deployment
) -> None:
    # Given a client provisioned by the previous version: its record item has no consumers attribute
    app_client, credentials = environment.create_zus_client(NAME)
    arn = aws.secretsmanager.create_secret(Name="zus-m2m/test/billing-service", SecretString=credentials.to_json())[
        "ARN"
    ]
    aws.dynamodb.put_item(
        TableName=aws.table_name,
        Item={
            "pk": {"S": "client#billing-service"},
            "sk": {"S": "record"},
            "name": {"S": NAME},
            "status": {"S": "active"},
            "appClientId": {"S": app_client.id},
            "clientId": {"S": app_client.client_id},
            "roleId": {"S": credentials.role_id},
            "roleName": {"S": "Builder Admin"},
            "secretArn": {"S": arn},
            "createdAt": {"N": "1795780800"},
        },
    )

    # Then nobody gets its token, admins see it with no consumers, and a PATCH grants them
    assert token_api(event("apigw_get_token"))[0] == 403
    _, _, listed = api(event("apigw_list_clients"))
    assert [client["consumers"] for client in listed["appClients"] if client["name"] == NAME] == [[]]
    assert api(event("apigw_update_client"))[0] == 200
    status, _, body = token_api(event("apigw_get_token"))
    assert status == 200, body
    # ... and the admin can rotate and delete it as any other
    assert api(event("apigw_start_rotation"))[0] == 202
    assert api(event("apigw_delete_client"))[0] == 204
