"""zus_local.template_model: routes, schedules and environments read from template.yaml, intrinsics
(zus_local.intrinsics) resolved as CloudFormation would for the local stack. No sockets, no AWS."""

from __future__ import annotations

from pathlib import Path

import pytest

from zus_local.cfn_yaml import loads
from zus_local.event_sources import QueueSubscription, Route, parse_rate
from zus_local.intrinsics import Resolver
from zus_local.stand_ins import ResolveContext, TemplateError
from zus_local.template_model import TemplateModel, load_model

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
KMS_ARN = "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-4000-8000-000000000000"
ADMIN = "arn:aws:iam::123456789012:user/zus-m2m-local-admin"


def local_context(**overrides: object) -> ResolveContext:
    values: dict[str, object] = {
        "stack_name": "zus-m2m-local",
        "refs": {"Table": "zus-m2m-local"},
        "attributes": {"KmsKey.Arn": KMS_ARN},
    }
    values.update(overrides)
    return ResolveContext(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def model() -> TemplateModel:
    return load_model(TEMPLATE, local_context(parameters={"AdminPrincipals": ADMIN}))


# --- template.yaml itself ------------------------------------------------------------------------------


def test_every_http_api_event_is_a_route(model: TemplateModel) -> None:
    assert {route.route_key: route.function for route in model.routes} == {
        "GET /app-clients/{name}/token": "TokenVendingFunction",
        "POST /app-clients": "ProvisioningFunction",
        "GET /app-clients": "ProvisioningFunction",
        "GET /app-clients-drift": "ProvisioningFunction",
        "GET /app-clients/{name}": "ProvisioningFunction",
        "PATCH /app-clients/{name}": "ProvisioningFunction",
        "DELETE /app-clients/{name}": "ProvisioningFunction",
        "POST /app-clients/{name}/rotations": "ProvisioningFunction",
    }
    assert model.ignored_events == ()


def test_requests_match_the_most_specific_route(model: TemplateModel) -> None:
    token = model.match("GET", "/app-clients/billing-service/token")
    assert token is not None
    assert token[0].function == "TokenVendingFunction"
    assert token[1] == {"name": "billing-service"}
    one = model.match("GET", "/app-clients/billing-service")
    assert one is not None
    assert (one[0].route_key, one[1]) == ("GET /app-clients/{name}", {"name": "billing-service"})
    assert model.match("PUT", "/app-clients") is None
    assert model.match("GET", "/app-clients/a/b/token") is None
    assert model.match("GET", "/nothing") is None


def test_schedules_come_with_their_input_and_interval(model: TemplateModel) -> None:
    schedules = {schedule.name: schedule for schedule in model.schedules}
    assert set(schedules) == {
        "zus-m2m-local-pre-refresh",
        "zus-m2m-local-rotation-repair",
        "zus-m2m-local-rotation-sweep",
    }
    pre_refresh = schedules["zus-m2m-local-pre-refresh"]
    assert (pre_refresh.function, pre_refresh.interval_seconds, pre_refresh.input) == (
        "ScheduledFunction",
        60.0,
        {"job": "pre-refresh"},
    )
    sweep = schedules["zus-m2m-local-rotation-sweep"]
    assert (sweep.interval_seconds, sweep.input) == (300.0, {"job": "rotation-sweep"})
    repair = schedules["zus-m2m-local-rotation-repair"]
    assert (repair.interval_seconds, repair.input) == (120.0, {"job": "rotation-repair"})


def test_queues_and_the_function_each_feeds_come_with_what_redelivery_depends_on(model: TemplateModel) -> None:
    work, dead_letters = model.queues["WorkQueue"], model.queues["WorkDeadLetterQueue"]
    assert (work.name, work.visibility_timeout, work.dead_letter_queue, work.max_receive_count) == (
        "zus-m2m-local-work",
        360,
        "WorkDeadLetterQueue",
        3,
    )
    assert work.arn == "arn:aws:sqs:us-east-1:123456789012:zus-m2m-local-work"
    assert (dead_letters.name, dead_letters.dead_letter_queue) == ("zus-m2m-local-work-dlq", None)
    assert model.subscriptions == (
        QueueSubscription(
            function="WorkerFunction",
            event="WorkQueue",
            queue="WorkQueue",
            batch_size=10,
            maximum_concurrency=4,
            report_batch_item_failures=True,
        ),
    )
    assert model.functions["ScheduledFunction"].environment["WORK_QUEUE_URL"] == (
        "https://sqs.us-east-1.amazonaws.com/123456789012/zus-m2m-local-work"
    )


def test_an_sqs_event_of_a_queue_the_template_does_not_have_is_refused(tmp_path: Path) -> None:
    template = tmp_path / "template.yaml"
    (tmp_path / "fn").mkdir()
    (tmp_path / "fn" / "app.py").write_text("def lambda_handler(event, context):\n    return None\n")
    template.write_text(
        """
Resources:
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      Runtime: python3.13
      Handler: app.lambda_handler
      CodeUri: fn/
      Events:
        Elsewhere:
          Type: SQS
          Properties:
            Queue: arn:aws:sqs:us-east-1:123456789012:someone-elses
"""
    )
    with pytest.raises(TemplateError, match="polls this template's queues only"):
        load_model(template, local_context())


def test_functions_get_globals_and_their_own_environment_resolved(model: TemplateModel) -> None:
    provisioning = model.functions["ProvisioningFunction"]
    env = provisioning.environment
    assert env["TABLE_NAME"] == "zus-m2m-local"
    assert env["STAGE"] == "sandbox"
    assert env["KMS_KEY_ID"] == KMS_ARN
    assert env["ADMIN_SECRET_NAME"] == "zus-m2m/zus-m2m-local/sandbox/zus-m2m-admin"
    assert env["ZUS_API_BASE_URL"] == "https://api.sandbox.zusapi.com"
    assert env["ZUS_AUTH_BASE_URL"] == "https://auth.sandbox.zusapi.com"
    assert env["ZUS_AUDIENCE"] == "https://api.sandbox.zusapi.com"
    assert env["TOKEN_BUDGET_PER_HOUR"] == "100"
    assert env["ADMIN_PRINCIPALS"] == ADMIN
    assert env["ALLOWED_ZUS_ROLES"] == "Builder Admin,Care Team User"
    assert env["ROTATION_FUNCTION_ARN"] == (
        "arn:aws:lambda:us-east-1:123456789012:function:zus-m2m-local-RotationFunction"
    )
    # Globals set ROTATION_FUNCTION_ARN empty; only the functions that configure rotation override it.
    assert model.functions["TokenVendingFunction"].environment["ROTATION_FUNCTION_ARN"] == ""
    assert model.functions["RotationFunction"].environment["ROTATION_FUNCTION_ARN"] == ""
    assert model.functions["ScheduledFunction"].environment["ROTATION_FUNCTION_ARN"] == env["ROTATION_FUNCTION_ARN"]
    assert all(isinstance(value, str) for spec in model.functions.values() for value in spec.environment.values())


def test_every_setting_the_service_reads_is_set_by_the_template(model: TemplateModel) -> None:
    from zus_m2m.settings import ENVIRONMENT_VARIABLES, Settings

    for spec in model.functions.values():
        assert set(ENVIRONMENT_VARIABLES) <= set(spec.environment), spec.logical_id
        Settings.from_env(spec.environment)  # valid as resolved


def test_function_code_limits_and_names(model: TemplateModel) -> None:
    vend = model.functions["TokenVendingFunction"]
    assert vend.module_path == ROOT / "functions" / "token_vending" / "app.py"
    assert vend.handler_name == "lambda_handler"
    assert (vend.timeout_seconds, vend.memory_mb) == (10.0, 512)
    assert vend.name == "zus-m2m-local-TokenVendingFunction"
    assert vend.log_group == "/aws/lambda/zus-m2m-local/token-vending"
    assert model.functions["RotationFunction"].timeout_seconds == 120.0
    assert model.rotation_functions == ("RotationFunction",)
    assert model.tables == ("Table",)
    assert model.kms_keys == ("KmsKey",)
    rotation = model.functions["RotationFunction"]
    assert model.function_by_arn(rotation.arn) is rotation
    assert model.function_by_arn(rotation.arn + ":live") is rotation


def test_parameter_overrides_flow_through_conditions_and_mappings() -> None:
    model = load_model(
        TEMPLATE,
        local_context(
            parameters={
                "Stage": "dev",
                "ZusEnvironment": "production",
                "AdminSecretName": "ops/zus-admin",
                "AdminPrincipals": f"{ADMIN}, arn:aws:iam::111122223333:root",
            },
            region="eu-west-1",
            account_id="111122223333",
            stack_name="other",
        ),
    )
    env = model.functions["ProvisioningFunction"].environment
    assert env["STAGE"] == "dev"
    assert env["ADMIN_SECRET_NAME"] == "ops/zus-admin"
    assert env["ZUS_API_BASE_URL"] == "https://api.zusapi.com"
    assert env["ZUS_AUTH_BASE_URL"] == "https://auth.zusapi.com"
    assert env["ROTATION_FUNCTION_ARN"] == "arn:aws:lambda:eu-west-1:111122223333:function:other-RotationFunction"
    assert env["ADMIN_PRINCIPALS"] == f"{ADMIN},arn:aws:iam::111122223333:root"
    assert {schedule.name for schedule in model.schedules} == {
        "other-pre-refresh",
        "other-rotation-repair",
        "other-rotation-sweep",
    }


def test_bad_parameters_are_refused_by_name() -> None:
    with pytest.raises(TemplateError, match="AdminPrincipals"):
        load_model(TEMPLATE, local_context())
    with pytest.raises(TemplateError, match="Nope"):
        load_model(TEMPLATE, local_context(parameters={"Nope": "1"}))
    with pytest.raises(TemplateError, match="ZusEnvironment"):
        load_model(TEMPLATE, local_context(parameters={"ZusEnvironment": "staging"}))
    with pytest.raises(TemplateError, match="Stage"):
        load_model(TEMPLATE, local_context(parameters={"Stage": "Not Valid"}))


# --- rates ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "seconds"),
    [
        ("rate(1 minute)", 60),
        ("rate(5 minutes)", 300),
        ("rate(1 hour)", 3600),
        ("rate(2 hours)", 7200),
        ("rate(1 day)", 86400),
        ("rate(3 days)", 259200),
    ],
)
def test_rates(expression: str, seconds: float) -> None:
    assert parse_rate(expression) == seconds


@pytest.mark.parametrize("expression", ["cron(0 12 * * ? *)", "at(2030-01-01T00:00:00)"])
def test_cron_and_one_time_schedules_are_refused_clearly(expression: str) -> None:
    with pytest.raises(TemplateError, match=r"rate\(N minute"):
        parse_rate(expression)


def test_unreadable_rates_are_refused() -> None:
    with pytest.raises(TemplateError):
        parse_rate("rate(0 minutes)")
    with pytest.raises(TemplateError):
        parse_rate("every minute")


# --- intrinsics and routes on a synthetic template --------------------------------------------------------

SYNTHETIC = """
Parameters:
  Stage: {Type: String, Default: dev}
  Names: {Type: CommaDelimitedList, Default: "a,b,c"}
Mappings:
  Sizes:
    dev: {Memory: 256}
Conditions:
  IsDev: !Equals [!Ref Stage, dev]
  IsProd: !Not [!Condition IsDev]
  Either: !Or [!Condition IsDev, !Condition IsProd]
  Both: !And [!Condition IsDev, !Condition IsProd]
Resources:
  Queue:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: !Sub "${AWS::StackName}-q"
  Role:
    Type: AWS::IAM::Role
  KmsKey:
    Type: AWS::KMS::Key
"""


def resolver(**overrides: object) -> Resolver:
    return Resolver(loads(SYNTHETIC), local_context(**overrides))


def test_sub_join_select_split_and_pseudo_parameters() -> None:
    r = resolver(stack_name="s1")
    assert r.resolve({"Fn::Sub": "${AWS::Region}/${AWS::AccountId}/${AWS::StackName}/${Stage}"}) == (
        "us-east-1/123456789012/s1/dev"
    )
    assert r.resolve({"Fn::Sub": ["${X}-${!Literal}", {"X": {"Ref": "Stage"}}]}) == "dev-${Literal}"
    assert r.resolve({"Fn::Sub": "${Queue.Arn}"}) == "arn:aws:sqs:us-east-1:123456789012:s1-q"
    assert r.resolve({"Fn::Join": ["-", ["a", {"Ref": "Stage"}]]}) == "a-dev"
    assert r.resolve({"Fn::Select": [1, {"Ref": "Names"}]}) == "b"
    assert r.resolve({"Fn::Split": [",", "x,y"]}) == ["x", "y"]
    assert r.resolve({"Fn::FindInMap": ["Sizes", {"Ref": "Stage"}, "Memory"]}) == 256
    assert r.resolve({"Ref": "Queue"}) == "https://sqs.us-east-1.amazonaws.com/123456789012/s1-q"
    assert r.resolve({"Fn::GetAtt": ["Role", "Arn"]}) == "arn:aws:iam::123456789012:role/s1-Role"
    assert r.resolve({"Fn::GetAtt": ["KmsKey", "Arn"]}) == KMS_ARN  # pinned by the context
    assert r.resolve({"A": {"Ref": "AWS::NoValue"}, "B": 1}) == {"B": 1}


def test_conditions() -> None:
    r = resolver()
    assert (r.condition("IsDev"), r.condition("IsProd"), r.condition("Either"), r.condition("Both")) == (
        True,
        False,
        True,
        False,
    )
    assert r.resolve({"Fn::If": ["IsProd", "p", "d"]}) == "d"
    with pytest.raises(TemplateError, match="unknown condition"):
        r.condition("Missing")


def test_unknown_references_and_unsupported_functions_are_refused() -> None:
    r = resolver()
    with pytest.raises(TemplateError, match="Missing"):
        r.resolve({"Ref": "Missing"})
    with pytest.raises(TemplateError, match="Fn::ImportValue"):
        r.resolve({"Fn::ImportValue": "other-stack-export"})


@pytest.mark.parametrize(
    ("method", "path", "expected", "parameters"),
    [
        ("GET", "/items/special", "GET /items/special", {}),
        ("GET", "/items/42", "GET /items/{id}", {"id": "42"}),
        ("DELETE", "/items/42", "ANY /items/{id}", {"id": "42"}),
        ("GET", "/files/a/b/c", "ANY /files/{proxy+}", {"proxy": "a/b/c"}),
        ("PATCH", "/anything/else", "$default", {}),
    ],
)
def test_route_selection_prefers_literal_then_parameter_then_greedy(
    method: str, path: str, expected: str, parameters: dict[str, str]
) -> None:
    routes = (
        Route("ANY", "$default", "F", "Default"),
        Route("ANY", "/files/{proxy+}", "F", "Files"),
        Route("ANY", "/items/{id}", "F", "AnyItem"),
        Route("GET", "/items/{id}", "F", "GetItem"),
        Route("GET", "/items/special", "F", "Special"),
    )
    model = TemplateModel({}, routes, (), (), (), ())
    found = model.match(method, path)
    assert found is not None
    assert (found[0].route_key, found[1]) == (expected, parameters)


def test_function_templates_the_local_stack_cannot_run_are_refused(tmp_path: Path) -> None:
    (tmp_path / "fn").mkdir()
    (tmp_path / "fn" / "app.py").write_text("def handler(event, context):\n    return event\n")
    base = """
Resources:
  F:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: fn/
      Handler: app.handler
      Runtime: {runtime}
      Events:
        Tick:
          Type: ScheduleV2
          Properties:
            ScheduleExpression: "{expression}"
"""
    (tmp_path / "template.yaml").write_text(base.format(runtime="nodejs20.x", expression="rate(1 minute)"))
    with pytest.raises(TemplateError, match="Python functions only"):
        load_model(tmp_path / "template.yaml")
    (tmp_path / "template.yaml").write_text(base.format(runtime="python3.13", expression="cron(0 * * * ? *)"))
    with pytest.raises(TemplateError, match=r"F\.Tick"):
        load_model(tmp_path / "template.yaml")
    (tmp_path / "template.yaml").write_text(base.format(runtime="python3.13", expression="rate(2 minutes)"))
    [schedule] = load_model(tmp_path / "template.yaml").schedules
    assert (schedule.name, schedule.interval_seconds, schedule.input) == ("FTick", 120.0, {})
