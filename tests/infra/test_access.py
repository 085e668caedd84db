"""The access model in the stack itself (issue 12): the token vending role has no path to the bootstrap
admin client's secret or items, on template.yaml and on the CloudFormation the SAM transform expands it
into; the route ARNs the stack's outputs, docs/security.md and the local stack's signers give match the
template's routes; refused calls are counted and alarmed; AdminPrincipals is required and checked as the
code checks it."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from infra_support import ACCOUNT, REGION, ROOT, resources_of_type, role_decision, route_arn_matches
from test_template import ROUTES

from zus_local.intrinsics import Resolver
from zus_local.local_principals import route_arns
from zus_local.stand_ins import ResolveContext
from zus_m2m import audit, errors
from zus_m2m.access import parse_principal

ADMIN = "arn:aws:iam::123456789012:role/platform-admin"
# The bootstrap admin secret where the stack looks for it: the default name, or the operator's own.
DEPLOYMENTS = {
    "default admin secret": ({"AdminPrincipals": ADMIN}, "zus-m2m/zus-m2m-local/sandbox/zus-m2m-admin"),
    "own admin secret name": ({"AdminPrincipals": ADMIN, "AdminSecretName": "ops/zus-admin"}, "ops/zus-admin"),
}
SECRET_ARN = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{{}}-AbCdEf"
TABLE_ACTIONS = ("GetItem", "UpdateItem", "Query", "PutItem", "DeleteItem", "Scan", "BatchGetItem")


@pytest.fixture(params=["template", "translated"])
def stack_template(request: pytest.FixtureRequest) -> dict[str, Any]:
    """template.yaml, and the CloudFormation `make validate` expanded it into."""
    return dict(request.getfixturevalue(request.param))


@pytest.mark.parametrize("deployment", DEPLOYMENTS)
def test_the_vending_role_cannot_read_the_bootstrap_admins_secret(
    stack_template: dict[str, Any], deployment: str
) -> None:
    parameters, admin_secret = DEPLOYMENTS[deployment]
    admin_arn = SECRET_ARN.format(admin_secret)

    for action in ("secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"):
        decision = role_decision(stack_template, "TokenVendingRole", action, admin_arn, parameters=parameters)
        assert decision != "allowed", action
    # ... while it reads every managed client's secret, and provisioning and rotation the admin's
    client_arn = SECRET_ARN.format("zus-m2m/zus-m2m-local/sandbox/billing-service")
    assert (
        role_decision(
            stack_template, "TokenVendingRole", "secretsmanager:GetSecretValue", client_arn, parameters=parameters
        )
        == "allowed"
    )
    for role in ("ProvisioningRole", "RotationRole", "ScheduledRole", "WorkerRole"):
        assert (
            role_decision(stack_template, role, "secretsmanager:GetSecretValue", admin_arn, parameters=parameters)
            == "allowed"
        ), role


def test_the_vending_role_cannot_touch_the_bootstrap_admins_items(stack_template: dict[str, Any]) -> None:
    parameters = DEPLOYMENTS["default admin secret"][0]
    table = Resolver(stack_template, ResolveContext(region=REGION, account_id=ACCOUNT, parameters=parameters)).get_att(
        "Table", "Arn"
    )
    admin = stack_template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
    admin_name = admin.get("ADMIN_CLIENT_NAME", "zus-m2m-admin")

    def decision(action: str, *partitions: str) -> str:
        context = {"dynamodb:LeadingKeys": list(partitions)}
        return role_decision(
            stack_template, "TokenVendingRole", f"dynamodb:{action}", table, parameters=parameters, context=context
        )

    for action in TABLE_ACTIONS:
        assert decision(action, f"admin#{admin_name}") != "allowed", action
        assert decision(action, f"client#{admin_name}") != "allowed", action  # the item before admin#
        assert decision(action, "client#billing-service", f"admin#{admin_name}") != "allowed", action
    assert decision("Scan") != "allowed"  # no partition: nothing to scope, so never granted
    for action in ("GetItem", "UpdateItem", "Query"):
        assert decision(action, "client#billing-service") == "allowed", action
    # provisioning, rotation and scheduled work keep the admin's token in its partition
    for role in ("ProvisioningRole", "RotationRole", "ScheduledRole", "WorkerRole"):
        context = {"dynamodb:LeadingKeys": [f"admin#{admin_name}"]}
        assert (
            role_decision(stack_template, role, "dynamodb:UpdateItem", table, parameters=parameters, context=context)
            == "allowed"
        ), role


def test_only_the_scheduled_jobs_read_the_due_index_and_only_they_and_the_worker_its_queue(
    stack_template: dict[str, Any],
) -> None:
    parameters = DEPLOYMENTS["default admin secret"][0]
    resolver = Resolver(stack_template, ResolveContext(region=REGION, account_id=ACCOUNT, parameters=parameters))
    index = f"{resolver.get_att('Table', 'Arn')}/index/due"
    queue = resolver.get_att("WorkQueue", "Arn")
    roles = ("TokenVendingRole", "ProvisioningRole", "RotationRole", "ScheduledRole", "WorkerRole")

    def decision(role: str, action: str, resource: str) -> str:
        # A query of the index names a partition of the index (a kind of work), never client#*.
        context = {"dynamodb:LeadingKeys": ["refresh"]}
        return role_decision(stack_template, role, action, resource, parameters=parameters, context=context)

    assert {role for role in roles if decision(role, "dynamodb:Query", index) == "allowed"} == {"ScheduledRole"}
    assert {role for role in roles if decision(role, "sqs:SendMessage", queue) == "allowed"} == {"ScheduledRole"}
    assert {role for role in roles if decision(role, "sqs:ReceiveMessage", queue) == "allowed"} == {"WorkerRole"}


# --- route ARNs: the outputs, docs/security.md and the local signers --------------------------------------


def _output(template: dict[str, Any], name: str) -> str:
    return str(template["Outputs"][name]["Value"]["Fn::Sub"])


def _resolved(template: dict[str, Any], name: str, api_id: str) -> str:
    return (
        _output(template, name)
        .replace("${AWS::Partition}", "aws")
        .replace("${AWS::Region}", REGION)
        .replace("${AWS::AccountId}", ACCOUNT)
        .replace("${HttpApi}", api_id)
    )


def test_the_output_route_arns_cover_exactly_the_routes_they_are_for(template: dict[str, Any]) -> None:
    api_id = "a1b2c3d4e5"
    consumer = _resolved(template, "ConsumerTokenRouteArn", api_id).replace("NAME", "billing-service")
    admin = _resolved(template, "AdminRoutesArn", api_id)
    for (method, path), function in ROUTES.items():
        for name in ("billing-service", "billing-service-2", "other"):
            concrete = path.replace("{name}", name)
            is_that_token = (method, path, name) == ("GET", "/app-clients/{name}/token", "billing-service")
            assert route_arn_matches(consumer, method, concrete, api_id) is is_that_token, (method, concrete)
            if function == "ProvisioningFunction":
                assert route_arn_matches(admin, method, concrete, api_id), (method, concrete)
    assert not route_arn_matches(consumer, "GET", "/app-clients/billing-service/token", "another-api")


def test_docs_security_gives_the_outputs_route_arns_in_its_policies(template: dict[str, Any]) -> None:
    text = (ROOT / "docs" / "security.md").read_text(encoding="utf-8")
    placeholders = {"${AWS::Region}": "<region>", "${AWS::AccountId}": "<account>", "${HttpApi}": "<api-id>"}
    for name in ("ConsumerTokenRouteArn", "AdminRoutesArn"):
        documented = _output(template, name).replace("${AWS::Partition}", "aws")
        for variable, shown in placeholders.items():
            documented = documented.replace(variable, shown)
        documented = documented.replace("/NAME/", "/<client-name>/")
        assert documented in text, f"docs/security.md does not give {name}: {documented}"
    policies = [json.loads(block) for block in re.findall(r"```json\n(.*?)```", text, flags=re.DOTALL)]
    assert any(
        statement.get("Action") == "execute-api:Invoke" for policy in policies for statement in policy["Statement"]
    )


def test_the_local_signers_policies_use_the_outputs_patterns(template: dict[str, Any]) -> None:
    admin, consumer = route_arns(REGION, ACCOUNT, "local")
    assert admin == _resolved(template, "AdminRoutesArn", "local")
    assert consumer == _resolved(template, "ConsumerTokenRouteArn", "local").replace("/NAME/", "/*/")


# --- refused calls counted and alarmed ------------------------------------------------------------------------


def test_denied_calls_of_both_api_functions_feed_one_metric_with_an_alarm(template: dict[str, Any]) -> None:
    filters = {
        name: f
        for name, f in resources_of_type(template, "AWS::Logs::MetricFilter").items()
        if f["Properties"]["MetricTransformations"][0]["MetricName"] == "DeniedCalls"
    }
    groups = {f["Properties"]["LogGroupName"]["Ref"] for f in filters.values()}
    assert groups == {"TokenVendingLogGroup", "ProvisioningLogGroup"}
    for metric_filter in filters.values():
        props = metric_filter["Properties"]
        assert props["FilterPattern"] == f'{{ $.audit.outcome = "{audit.outcome(errors.Forbidden.http_status)}" }}'
        [transformation] = props["MetricTransformations"]
        assert (transformation["MetricNamespace"], transformation["MetricName"]) == ("ZusM2M", "DeniedCalls")
        # No dimensions: a filter's dimension values come from the line, whose "service" is the function's
        # Logger's (zus-m2m-token-vending), which the alarm would have to name once per function.
        assert "Dimensions" not in transformation
    [alarm] = [
        a["Properties"]
        for a in resources_of_type(template, "AWS::CloudWatch::Alarm").values()
        if a["Properties"]["MetricName"] == "DeniedCalls"
    ]
    assert alarm["Namespace"] == "ZusM2M"
    assert "Dimensions" not in alarm  # the very metric the filters publish
    assert alarm["Statistic"] == "Sum"
    assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}]


# --- AdminPrincipals -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arn", "valid"),
    [
        ("arn:aws:iam::123456789012:role/platform-admin", True),
        ("arn:aws:iam::123456789012:role/team/platform-admin", True),
        ("arn:aws:iam::123456789012:user/alice", True),
        ("arn:aws:iam::123456789012:root", True),
        ("arn:aws-us-gov:iam::123456789012:role/admin", True),
        ("arn:aws:iam::123456789012:role/*", False),
        ("arn:aws:iam::*:root", False),
        ("arn:aws:sts::123456789012:assumed-role/platform-admin/alice", False),
        ("arn:aws:iam::123456789012:group/admins", False),
        ("platform-admin", False),
        ("", False),
    ],
)
def test_admin_principals_is_required_and_checked_as_the_code_checks_it(
    template: dict[str, Any], arn: str, valid: bool
) -> None:
    parameter = template["Parameters"]["AdminPrincipals"]
    assert parameter["Type"] == "CommaDelimitedList"
    assert "Default" not in parameter
    assert (re.fullmatch(parameter["AllowedPattern"], arn) is not None) is valid
    if valid:
        parse_principal(arn)
    else:
        with pytest.raises(errors.InvalidRequest):
            parse_principal(arn)
