"""template.yaml is the whole deployable stack: these tests hold it to the service API of the README and
docs/contract.md, design.md, settings.py and the least-privilege rules of issue 6, on the template itself
and on the CloudFormation that the SAM transform expands it into (``make validate`` writes
``.aws-sam/translated.json``)."""

from __future__ import annotations

import ast
import importlib
import json
import re
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from infra_support import (
    FUNCTIONS,
    ROOT,
    Statement,
    as_list,
    function_environment,
    function_property,
    iam_statements,
    import_handler,
    resources_of_type,
    statements_for_role,
)

from zus_m2m.aws.page_tokens import PURPOSE as PAGE_TOKEN_PURPOSE
from zus_m2m.aws.table import DUE_AT, DUE_INDEX, DUE_KIND
from zus_m2m.settings import ENVIRONMENT_VARIABLES
from zus_m2m.zus.endpoints import ZusEndpoints

README = ROOT / "README.md"
CONTRACT = ROOT / "docs" / "contract.md"

# The service API (README.md's "Using the service", docs/contract.md's "The service API"), and the function
# that serves each route.
ROUTES = {
    ("POST", "/app-clients"): "ProvisioningFunction",
    ("GET", "/app-clients"): "ProvisioningFunction",
    ("GET", "/app-clients-drift"): "ProvisioningFunction",
    ("GET", "/app-clients/{name}"): "ProvisioningFunction",
    ("PATCH", "/app-clients/{name}"): "ProvisioningFunction",
    ("DELETE", "/app-clients/{name}"): "ProvisioningFunction",
    ("POST", "/app-clients/{name}/rotations"): "ProvisioningFunction",
    ("GET", "/app-clients/{name}/token"): "TokenVendingFunction",
}

ROLES = {
    "TokenVendingFunction": "TokenVendingRole",
    "ProvisioningFunction": "ProvisioningRole",
    "RotationFunction": "RotationRole",
    "ScheduledFunction": "ScheduledRole",
    "WorkerFunction": "WorkerRole",
}

# Exactly the data-plane actions each function's role may use (issue 6; change both together).
SECRET_ACTIONS = {
    "TokenVendingRole": {"GetSecretValue"},
    "ProvisioningRole": {
        "CreateSecret",
        "TagResource",
        "DescribeSecret",
        "GetSecretValue",
        "PutSecretValue",
        "DeleteSecret",
        "RestoreSecret",  # provisioning a deleted client's name again cancels the secret's deletion
        "RotateSecret",
        "CancelRotateSecret",  # deleting a client stops its rotation, whatever state it is in
        "UpdateSecretVersionStage",
        "PutResourcePolicy",  # every secret it creates gets the stack's resource policy (secret_policy.py)
    },
    "RotationRole": {"GetSecretValue", "DescribeSecret", "PutSecretValue", "UpdateSecretVersionStage"},
    # Repairs (the repair job's; the worker's in rotation checks): reads, a roll-forward's label moves and
    # rotation starts. Neither ever stores a value (createSecret is the rotation function's).
    "ScheduledRole": {"GetSecretValue", "DescribeSecret", "UpdateSecretVersionStage", "RotateSecret"},
    # ... and a rotation check puts the resource policy on a secret that lacks it.
    "WorkerRole": {
        "GetSecretValue",
        "DescribeSecret",
        "UpdateSecretVersionStage",
        "RotateSecret",
        "GetResourcePolicy",
        "PutResourcePolicy",
    },
}
TABLE_ACTIONS = {
    # Query: a client's record and token item in one round trip (tokens/vendor.py).
    "TokenVendingRole": {"GetItem", "UpdateItem", "Query"},
    # Scan: GET /app-clients lists every client's record, one partition each.
    "ProvisioningRole": {"GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query", "Scan"},
    "RotationRole": {"GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query"},
    # Query: the recorded failures and the due index; Scan: enlisting records older than the index.
    "ScheduledRole": {"GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query", "Scan"},
    "WorkerRole": {"GetItem", "PutItem", "UpdateItem", "DeleteItem"},
}
# KMS use is granted by the key policy, per role, through the services; besides, the provisioning role
# seals and opens GET /app-clients' page tokens itself, under their encryption context only.
KMS_ACTIONS = {"ProvisioningRole": {"Encrypt", "Decrypt"}}
QUEUE_ACTIONS = {
    "ScheduledRole": {"SendMessage"},  # the work queue, and the schedule dead-letter queue Lambda checks
    "WorkerRole": {"ReceiveMessage", "DeleteMessage", "GetQueueAttributes"},
}

DATA_PLANE_SERVICES = {"secretsmanager", "dynamodb", "kms", "sqs"}

SCHEDULES = {
    "PreRefreshSchedule": ("rate(1 minute)", {"job": "pre-refresh"}),
    "RotationRepairSchedule": ("rate(2 minutes)", {"job": "rotation-repair"}),
    "RotationSweepSchedule": ("rate(5 minutes)", {"job": "rotation-sweep"}),
}

# Memory (MB) and timeout (s) per function: API Gateway gives an integration at most 30 s.
SIZING = {
    "TokenVendingFunction": (512, 10),
    "ProvisioningFunction": (512, 29),
    "RotationFunction": (256, 120),
    "ScheduledFunction": (256, 300),
    "WorkerFunction": (256, 60),
}

PARAMETERS = {
    "Stage",
    "ZusEnvironment",
    "AdminPrincipals",
    "AllowedZusRoles",
    "BreakGlassPrincipals",
    "RotationRequestMinGapSeconds",
    "MemoryRevalidationSeconds",
    "VendTracing",
    "RefusedReplacementMinGapSeconds",
    "AdminSecretName",
    "RotationIntervalDays",
    "TokenRefreshMarginSeconds",
    "TokenBudgetPerHour",
    "SecretRecoveryWindowDays",
    "LogRetentionDays",
    "TableDeletionProtection",
    "AlarmEmail",
}

OUTPUTS = {
    "ApiUrl",
    "StackRoleArns",
    "TableName",
    "TokenVendingFunctionArn",
    "ProvisioningFunctionArn",
    "RotationFunctionArn",
    "ScheduledFunctionArn",
    "KmsKeyArn",
    "ConsumerTokenRouteArn",
    "AdminRoutesArn",
    "WorkerFunctionArn",
    "WorkQueueUrl",
    "WorkDeadLetterQueueUrl",
    "DashboardName",
}

# Metrics the code emits (namespace ZusM2M, dimension service=zus-m2m) that must page someone.
ALARMED_METRICS = {
    "RotationFailed",
    "TokenBudgetExhausted",
    "InvalidClientExhausted",
    "SecretRecoveryStarted",
    "SecretChangedAtZus",  # a secret refused outside our rotations (rotation/sweep.py)
    "DeniedCalls",  # from the audit lines, through metric filters (test_access.py)
}

# Variables the Lambda runtime or the AWS SDK provides; code may read them without the template.
RUNTIME_VARIABLE = re.compile(r"^(AWS_|_X_AMZN_|LAMBDA_|_HANDLER$|TZ$)")


# Imports functions/<folder>/app.py by path, as Lambda would with the folder on sys.path.
IMPORT_HANDLER = """
import importlib.util, sys
folder = sys.argv[1]
sys.path.insert(0, folder)
spec = importlib.util.spec_from_file_location("app", folder + "/app.py")
module = importlib.util.module_from_spec(spec)
sys.modules["app"] = module
spec.loader.exec_module(module)
if not callable(getattr(module, "lambda_handler", None)):
    sys.exit("app.py defines no callable lambda_handler")
"""


def http_api_routes(template: dict[str, Any]) -> dict[tuple[str, str], str]:
    routes = {}
    for name, function in resources_of_type(template, "AWS::Serverless::Function").items():
        for event in (function["Properties"].get("Events") or {}).values():
            if event["Type"] == "HttpApi":
                props = event["Properties"]
                routes[(props["Method"].upper(), props["Path"])] = name
    return routes


# ------------------------------------------------------------------------------------------ table


def test_table_keeps_the_key_schema_and_ttl_the_code_relies_on(template: dict[str, Any]) -> None:
    props = template["Resources"]["Table"]["Properties"]
    assert props["KeySchema"] == [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    assert props["AttributeDefinitions"][:2] == [
        {"AttributeName": "pk", "AttributeType": "S"},
        {"AttributeName": "sk", "AttributeType": "S"},
    ]
    assert props["TimeToLiveSpecification"] == {"AttributeName": "ttl", "Enabled": True}
    assert props["BillingMode"] == "PAY_PER_REQUEST"


def test_table_is_recoverable_and_encrypted_with_the_stack_key(template: dict[str, Any]) -> None:
    props = template["Resources"]["Table"]["Properties"]
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert props["SSESpecification"]["SSEEnabled"] is True
    assert props["SSESpecification"]["SSEType"] == "KMS"
    assert props["SSESpecification"]["KMSMasterKeyId"] == {"Fn::GetAtt": ["KmsKey", "Arn"]}
    assert props["DeletionProtectionEnabled"] == {"Ref": "TableDeletionProtection"}


# -------------------------------------------------------------------------------------- functions


def test_the_functions_of_the_design_and_only_those(template: dict[str, Any]) -> None:
    functions = resources_of_type(template, "AWS::Serverless::Function")
    assert set(functions) == set(FUNCTIONS)
    for name, folder in FUNCTIONS.items():
        assert functions[name]["Properties"]["CodeUri"] == f"functions/{folder}/"
        assert function_property(template, name, "Handler") == "app.lambda_handler"
        assert {"Ref": "SharedLayer"} in function_property(template, name, "Layers")


def test_globals_runtime_architecture_and_tracing(template: dict[str, Any]) -> None:
    function_globals = template["Globals"]["Function"]
    assert function_globals["Runtime"] == "python3.13"
    assert function_globals["Architectures"] == ["arm64"]
    assert function_globals["Tracing"] == "Active"


def test_shared_layer_builds_for_python_313_on_arm64(template: dict[str, Any]) -> None:
    layer = template["Resources"]["SharedLayer"]
    assert layer["Type"] == "AWS::Serverless::LayerVersion"
    # Its Makefile's build-SharedLayer installs for Python 3.13 on arm64 and compiles the bytecode
    # (test_build.py checks what it built).
    assert layer["Metadata"] == {"BuildMethod": "makefile", "BuildArchitecture": "arm64"}
    content = ROOT / layer["Properties"]["ContentUri"]
    # The local stack puts the source folder on PYTHONPATH as Lambda does /opt/python: it must be python/.
    assert content.name == "python"
    assert "build-SharedLayer:" in (content / "Makefile").read_text(encoding="utf-8")
    assert (content / "zus_m2m" / "__init__.py").is_file()
    requirements = (content / "requirements.txt").read_text(encoding="utf-8").lower()
    assert "requests" in requirements
    assert "aws-lambda-powertools" in requirements


@pytest.mark.parametrize(("function", "sizing"), SIZING.items())
def test_memory_and_timeout(template: dict[str, Any], function: str, sizing: tuple[int, int]) -> None:
    props = template["Resources"][function]["Properties"]
    assert (props["MemorySize"], props["Timeout"]) == sizing


def test_api_functions_finish_within_the_api_gateway_limit(template: dict[str, Any]) -> None:
    for function in set(ROUTES.values()):
        assert template["Resources"][function]["Properties"]["Timeout"] < 30, function


@pytest.mark.parametrize(("function", "folder"), FUNCTIONS.items())
def test_handler_file_exists(function: str, folder: str) -> None:
    handler = ROOT / "functions" / folder / "app.py"
    assert handler.is_file(), f"{function}: {handler.relative_to(ROOT)} is missing"


@pytest.mark.parametrize(("function", "folder"), FUNCTIONS.items())
def test_handler_imports(function: str, folder: str) -> None:
    handler = ROOT / "functions" / folder / "app.py"
    assert handler.is_file(), f"{function}: {handler.relative_to(ROOT)} is missing"
    result = import_handler([sys.executable, "-c", IMPORT_HANDLER, str(handler.parent)], ROOT)
    assert result.returncode == 0, f"{function}: importing {handler.relative_to(ROOT)} failed:\n{result.stderr}"


# ------------------------------------------------------------------------------------ environment


@pytest.mark.parametrize("function", FUNCTIONS)
def test_every_setting_is_set_for_every_function(template: dict[str, Any], function: str) -> None:
    env = function_environment(template, function)
    missing = set(ENVIRONMENT_VARIABLES) - set(env)
    assert not missing, f"{function} lacks {sorted(missing)}"
    required_but_empty = [
        name for name, default in ENVIRONMENT_VARIABLES.items() if default is None and env[name] in ("", None)
    ]
    assert not required_but_empty
    unknown = {name for name in env if name not in ENVIRONMENT_VARIABLES and not name.startswith("POWERTOOLS_")}
    assert not unknown, f"{function} sets variables no code reads: {sorted(unknown)}"
    assert env["POWERTOOLS_SERVICE_NAME"] == "zus-m2m"
    assert env["POWERTOOLS_METRICS_NAMESPACE"] == "ZusM2M"
    assert env["POWERTOOLS_LOG_LEVEL"] == "INFO"


def test_settings_come_from_the_stack(template: dict[str, Any]) -> None:
    env = template["Globals"]["Function"]["Environment"]["Variables"]
    assert env["STAGE"] == {"Ref": "Stage"}
    assert env["TABLE_NAME"] == {"Ref": "Table"}
    assert env["KMS_KEY_ID"] == {"Fn::GetAtt": ["KmsKey", "Arn"]}
    assert env["ZUS_ENVIRONMENT"] == {"Ref": "ZusEnvironment"}
    for name, parameter in {
        "TOKEN_REFRESH_MARGIN_SECONDS": "TokenRefreshMarginSeconds",
        "TOKEN_BUDGET_PER_HOUR": "TokenBudgetPerHour",
        "ROTATION_INTERVAL_DAYS": "RotationIntervalDays",
        "SECRET_RECOVERY_WINDOW_DAYS": "SecretRecoveryWindowDays",
        "ROTATION_REQUEST_MIN_GAP_SECONDS": "RotationRequestMinGapSeconds",
        "MEMORY_REVALIDATION_SECONDS": "MemoryRevalidationSeconds",
        "REFUSED_REPLACEMENT_MIN_GAP_SECONDS": "RefusedReplacementMinGapSeconds",
    }.items():
        assert env[name] == {"Ref": parameter}
    for name, parameter in {"ADMIN_PRINCIPALS": "AdminPrincipals", "ALLOWED_ZUS_ROLES": "AllowedZusRoles"}.items():
        assert env[name] == {"Fn::Join": [",", {"Ref": parameter}]}
    assert "AdminSecretName" in json.dumps(env["ADMIN_SECRET_NAME"])


def test_rotation_function_arn_is_set_where_rotation_is_started(template: dict[str, Any]) -> None:
    for function in ("ProvisioningFunction", "ScheduledFunction", "WorkerFunction"):
        assert function_environment(template, function)["ROTATION_FUNCTION_ARN"] == {
            "Fn::GetAtt": ["RotationFunction", "Arn"]
        }


def test_zus_environment_mapping_matches_the_code(template: dict[str, Any]) -> None:
    mapping = template["Mappings"]["ZusEnvironments"]
    assert set(mapping) == set(template["Parameters"]["ZusEnvironment"]["AllowedValues"]) == {"sandbox", "production"}
    for environment, urls in mapping.items():
        endpoints = ZusEndpoints.for_environment(environment)
        assert urls == {
            "ApiBaseUrl": endpoints.api_base,
            "AuthBaseUrl": endpoints.auth_base,
            "Audience": endpoints.audience,
        }


def _environment_reads(path: Path) -> set[str]:
    """Literal names the module reads with os.getenv / os.environ[...] / os.environ.get(...)."""
    names: set[str] = set()

    def is_environ(node: ast.AST) -> bool:
        return (isinstance(node, ast.Attribute) and node.attr == "environ") or (
            isinstance(node, ast.Name) and node.id == "environ"
        )

    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        key: ast.AST | None = None
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args:
            if node.func.attr == "getenv" or (node.func.attr in {"get", "pop"} and is_environ(node.func.value)):
                key = node.args[0]
        elif isinstance(node, ast.Subscript) and is_environ(node.value):
            key = node.slice
        if isinstance(key, ast.Constant) and isinstance(key.value, str):
            names.add(key.value)
    return names


def test_every_environment_variable_the_code_reads_is_set(template: dict[str, Any]) -> None:
    shared = ROOT / "layers" / "zus_m2m" / "python" / "zus_m2m"
    globals_env = set(template["Globals"]["Function"]["Environment"]["Variables"])
    problems = []
    for path in sorted(shared.rglob("*.py")):
        for name in _environment_reads(path) - globals_env:
            if not RUNTIME_VARIABLE.match(name):
                problems.append(f"{path.relative_to(ROOT)} reads {name}, which Globals does not set")
    for function, folder in FUNCTIONS.items():
        env = set(function_environment(template, function))
        for path in sorted((ROOT / "functions" / folder).rglob("*.py")):
            for name in _environment_reads(path) - env:
                if not RUNTIME_VARIABLE.match(name):
                    problems.append(f"{path.relative_to(ROOT)} reads {name}, which {function} does not set")
    assert not problems


# ------------------------------------------------------------------------------------------ API


def test_every_route_of_the_spec_exists(template: dict[str, Any]) -> None:
    assert http_api_routes(template) == ROUTES


@pytest.mark.parametrize(
    ("document", "heading"),
    [(README, "## Using the service"), (CONTRACT, "## The service API")],
    ids=["README", "contract"],
)
def test_the_routes_here_are_those_the_docs_document(document: Path, heading: str) -> None:
    text = document.read_text(encoding="utf-8")
    assert heading in text, f"{document.name} has no section {heading!r}"
    section = text.split(heading, 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\|\s*`(GET|POST|PUT|PATCH|DELETE) (/[^`\s\[?]*)", section, flags=re.MULTILINE))
    assert documented == set(ROUTES)


def test_api_requires_iam_on_every_route(template: dict[str, Any]) -> None:
    api = template["Resources"]["HttpApi"]
    assert api["Type"] == "AWS::Serverless::HttpApi"
    assert api["Properties"]["Auth"]["EnableIamAuthorizer"] is True
    assert api["Properties"]["Auth"]["DefaultAuthorizer"] == "AWS_IAM"
    for function in resources_of_type(template, "AWS::Serverless::Function").values():
        for name, event in (function["Properties"].get("Events") or {}).items():
            if event["Type"] in {"HttpApi", "Api"}:
                props = event["Properties"]
                assert props.get("ApiId") == {"Ref": "HttpApi"}, name
                assert props.get("Auth", {}).get("Authorizer", "AWS_IAM") == "AWS_IAM", name


def test_translated_api_requires_iam_on_every_route(translated: dict[str, Any]) -> None:
    api = translated["Resources"]["HttpApi"]
    paths = api["Properties"]["Body"]["paths"]
    found = set()
    for path, methods in paths.items():
        for method, operation in methods.items():
            found.add((method.upper(), path))
            assert operation.get("security") == [{"AWS_IAM": []}], f"{method.upper()} {path}"
    assert found == set(ROUTES)
    for name, route in resources_of_type(translated, "AWS::ApiGatewayV2::Route").items():
        assert route["Properties"].get("AuthorizationType") == "AWS_IAM", name


def test_access_logs_carry_request_metadata_and_no_bodies(template: dict[str, Any]) -> None:
    settings = template["Resources"]["HttpApi"]["Properties"]["AccessLogSettings"]
    assert settings["DestinationArn"] == {"Fn::GetAtt": ["HttpApiAccessLogGroup", "Arn"]}
    fields = json.loads(settings["Format"])
    values = " ".join(fields.values())
    for variable in ("requestId", "httpMethod", "path", "status", "responseLatency"):
        assert f"$context.{variable}" in values
    assert not re.search(r"body|\$input|header|querystring|authorization", values, flags=re.IGNORECASE)


# ------------------------------------------------------------------------------------------ IAM


def _star_resource_violations(statements: list[Statement]) -> list[str]:
    problems = []
    for statement in statements:
        if not statement.allows:
            continue
        risky = [a for a in statement.actions if a == "*" or a.split(":", 1)[0].lower() in DATA_PLANE_SERVICES]
        wildcard_actions = [a for a in risky if a == "*" or a.endswith(":*")]
        if wildcard_actions:
            problems.append(f"{statement.resource_id} {statement.where}: wildcard action {wildcard_actions}")
        if "*" in statement.resources and risky:
            problems.append(f"{statement.resource_id} {statement.where}: {risky} on Resource '*'")
    return problems


def test_no_star_resource_on_a_data_plane_action(template: dict[str, Any]) -> None:
    statements = list(iam_statements(template))
    assert statements
    assert not _star_resource_violations(statements)


def test_no_star_resource_on_a_data_plane_action_after_the_transform(translated: dict[str, Any]) -> None:
    statements = list(iam_statements(translated))
    assert statements
    assert not _star_resource_violations(statements)
    # SAM adds no role of its own: every function runs with the role written here.
    assert set(resources_of_type(translated, "AWS::IAM::Role")) == {*ROLES.values(), "SchedulerRole"}


@pytest.mark.parametrize(("function", "role"), ROLES.items())
def test_each_function_has_only_the_data_plane_actions_it_uses(
    template: dict[str, Any], function: str, role: str
) -> None:
    assert template["Resources"][function]["Properties"]["Role"] == {"Fn::GetAtt": [role, "Arn"]}
    granted: dict[str, set[str]] = {"secretsmanager": set(), "dynamodb": set(), "kms": set(), "sqs": set()}
    for statement in statements_for_role(template, role):
        if not statement.allows:
            continue  # a Deny grants nothing (the vending role's keep it from the bootstrap admin)
        for action in statement.actions:
            service, _, name = action.partition(":")
            if service in granted:
                granted[service].add(name)
    assert granted["secretsmanager"] == SECRET_ACTIONS[role]
    assert granted["dynamodb"] == TABLE_ACTIONS[role]
    assert granted["sqs"] == QUEUE_ACTIONS.get(role, set())
    assert granted["kms"] == KMS_ACTIONS.get(role, set())


def test_the_page_token_grant_names_the_stack_key_and_its_encryption_context(template: dict[str, Any]) -> None:
    [statement] = [
        s for s in statements_for_role(template, "ProvisioningRole") if any(a.startswith("kms:") for a in s.actions)
    ]
    document = next(
        entry
        for entry in template["Resources"]["ProvisioningDataPolicy"]["Properties"]["PolicyDocument"]["Statement"]
        if entry.get("Sid") == "SealListPageTokens"
    )
    assert statement.resources == [{"Fn::GetAtt": ["KmsKey", "Arn"]}]
    assert document["Condition"] == {
        "StringEquals": {
            "kms:EncryptionContext:zus-m2m:purpose": PAGE_TOKEN_PURPOSE,
            "kms:EncryptionContext:zus-m2m:table": {"Ref": "Table"},
        }
    }


def test_secret_permissions_stay_under_the_stage_prefix(template: dict[str, Any]) -> None:
    prefix = "secret:zus-m2m/${AWS::StackName}/${Stage}/*"
    for statement in iam_statements(template):
        if not any(a.startswith("secretsmanager:") for a in statement.actions):
            continue
        for resource in statement.resources:
            text = json.dumps(resource)
            assert prefix in text or "secret:${Name}-??????" in text, (statement.resource_id, resource)


def test_table_permissions_name_only_this_table_and_its_due_index(template: dict[str, Any]) -> None:
    table, index = {"Fn::GetAtt": ["Table", "Arn"]}, {"Fn::Sub": "${Table.Arn}/index/due"}
    for statement in iam_statements(template):
        if any(a.startswith("dynamodb:") for a in statement.actions):
            assert statement.resources in ([table], [index]), statement.resource_id
            if statement.resources == [index]:  # only the scheduled jobs find due work, and only by query
                assert (statement.resource_id, statement.actions) == ("ScheduledDataPolicy", ["dynamodb:Query"])


def test_table_has_the_sparse_due_index_the_scheduled_jobs_query(template: dict[str, Any]) -> None:
    props = template["Resources"]["Table"]["Properties"]
    [index] = props["GlobalSecondaryIndexes"]
    assert index == {
        "IndexName": DUE_INDEX,
        "KeySchema": [{"AttributeName": DUE_KIND, "KeyType": "HASH"}, {"AttributeName": DUE_AT, "KeyType": "RANGE"}],
        "Projection": {"ProjectionType": "KEYS_ONLY"},
    }
    types = {a["AttributeName"]: a["AttributeType"] for a in props["AttributeDefinitions"]}
    assert (types[DUE_KIND], types[DUE_AT]) == ("S", "N")


def test_the_work_queue_feeds_the_worker_with_partial_failures_bounded_concurrency_and_dead_letters(
    template: dict[str, Any],
) -> None:
    resources = template["Resources"]
    [event] = resources["WorkerFunction"]["Properties"]["Events"].values()
    assert event["Type"] == "SQS"
    props = event["Properties"]
    assert props["Queue"] == {"Fn::GetAtt": ["WorkQueue", "Arn"]}
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert 2 <= props["ScalingConfig"]["MaximumConcurrency"] <= 5
    queue = resources["WorkQueue"]["Properties"]
    # Lambda advises at least six times the function's timeout.
    assert queue["VisibilityTimeout"] >= 6 * resources["WorkerFunction"]["Properties"]["Timeout"]
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": ["WorkDeadLetterQueue", "Arn"]}
    assert 3 <= queue["RedrivePolicy"]["maxReceiveCount"] <= 5
    for name in ("WorkQueue", "WorkDeadLetterQueue"):
        assert resources[name]["Properties"]["KmsMasterKeyId"] == {"Ref": "KmsKey"}
    environment = function_environment(template, "ScheduledFunction")
    assert environment["WORK_QUEUE_URL"] == {"Ref": "WorkQueue"}


def test_kms_key_rotates_and_its_policy_names_only_the_account_the_roles_and_services(
    template: dict[str, Any],
) -> None:
    key = template["Resources"]["KmsKey"]
    assert key["Properties"]["EnableKeyRotation"] is True
    assert key["DeletionPolicy"] == "Retain"
    roles = {json.dumps({"Fn::GetAtt": [role, "Arn"]}) for role in ROLES.values()}
    account = json.dumps({"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"})
    for entry in key["Properties"]["KeyPolicy"]["Statement"]:
        # The break-glass statement exists only when BreakGlassPrincipals names someone.
        statement = entry["Fn::If"][1] if "Fn::If" in entry else entry
        principal = statement["Principal"]
        assert principal != "*"
        for aws in as_list(principal.get("AWS", [])):
            text = json.dumps(aws)
            assert text in roles or text == account or aws == {"Ref": "BreakGlassPrincipals"}, statement["Sid"]
        uses = any(a.startswith(("kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey")) for a in statement["Action"])
        if "AWS" in principal and uses:
            # Roles use the key only through the services that hold their data, or in one encryption context.
            keys = statement["Condition"]["StringEquals"]
            assert "kms:ViaService" in keys or "kms:EncryptionContext:zus-m2m:purpose" in keys, statement["Sid"]
        if "Service" in principal:
            assert statement.get("Condition"), statement["Sid"]
    # The account administers the key (and lets AWS services attach it): it never uses it.
    for statement in key["Properties"]["KeyPolicy"]["Statement"]:
        if json.dumps(statement.get("Principal", {}).get("AWS")) == account:
            used = {"kms:*", "kms:Decrypt", "kms:Encrypt", "kms:ReEncrypt*"} & set(statement["Action"])
            assert not used, statement["Sid"]
            assert not any(a.startswith(("kms:GenerateDataKey", "kms:Create*")) for a in statement["Action"])


def test_secrets_manager_may_invoke_the_rotation_function(template: dict[str, Any]) -> None:
    permissions = [
        p["Properties"]
        for p in resources_of_type(template, "AWS::Lambda::Permission").values()
        if p["Properties"]["Principal"] == "secretsmanager.amazonaws.com"
    ]
    assert len(permissions) == 1
    assert permissions[0]["FunctionName"] == {"Fn::GetAtt": ["RotationFunction", "Arn"]}
    assert permissions[0]["Action"] == "lambda:InvokeFunction"
    assert permissions[0]["SourceAccount"] == {"Ref": "AWS::AccountId"}


# ------------------------------------------------------------------------------------ schedules


def test_schedules_have_a_retry_policy_and_a_dead_letter_queue(template: dict[str, Any]) -> None:
    events = template["Resources"]["ScheduledFunction"]["Properties"]["Events"]
    schedules = {name: event["Properties"] for name, event in events.items() if event["Type"] == "ScheduleV2"}
    assert set(schedules) == set(SCHEDULES)
    for name, (expression, job) in SCHEDULES.items():
        props = schedules[name]
        assert props["ScheduleExpression"] == expression
        assert json.loads(props["Input"]) == job
        assert props["RetryPolicy"]["MaximumRetryAttempts"] >= 1
        assert props["RetryPolicy"]["MaximumEventAgeInSeconds"] >= 60
        assert props["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": ["ScheduleDeadLetterQueue", "Arn"]}}


def test_translated_schedules_target_the_function_with_retry_and_dead_letter(translated: dict[str, Any]) -> None:
    schedules = resources_of_type(translated, "AWS::Scheduler::Schedule")
    assert len(schedules) == len(SCHEDULES)
    for name, schedule in schedules.items():
        target = schedule["Properties"]["Target"]
        assert target["Arn"] == {"Fn::GetAtt": ["ScheduledFunction", "Arn"]}, name
        assert target["RetryPolicy"]["MaximumRetryAttempts"] >= 1, name
        assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": ["ScheduleDeadLetterQueue", "Arn"]}}, name


def test_dead_letter_queue_is_encrypted(template: dict[str, Any]) -> None:
    # By SQS's own key: it holds schedule payloads only, and its writers need no use of the stack key.
    queue = template["Resources"]["ScheduleDeadLetterQueue"]
    assert queue["Type"] == "AWS::SQS::Queue"
    assert queue["Properties"]["SqsManagedSseEnabled"] is True


# -------------------------------------------------------------------------- logs, alarms, outputs


@pytest.mark.parametrize("function", FUNCTIONS)
def test_each_function_logs_to_its_own_log_group_with_retention(template: dict[str, Any], function: str) -> None:
    log_group = template["Resources"][function]["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
    props = template["Resources"][log_group]["Properties"]
    assert template["Resources"][log_group]["Type"] == "AWS::Logs::LogGroup"
    assert props["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    assert props["KmsKeyId"] == {"Fn::GetAtt": ["KmsKey", "Arn"]}


def test_alarms_cover_errors_throttles_metrics_and_dead_letters(template: dict[str, Any]) -> None:
    alarms = [a["Properties"] for a in resources_of_type(template, "AWS::CloudWatch::Alarm").values()]
    lambda_alarms = {
        (a["MetricName"], a["Dimensions"][0]["Value"]["Ref"]) for a in alarms if a["Namespace"] == "AWS/Lambda"
    }
    assert lambda_alarms == {(metric, f) for f in FUNCTIONS for metric in ("Errors", "Throttles")}
    custom = {a["MetricName"]: a for a in alarms if a["Namespace"] == "ZusM2M"}
    assert set(custom) == ALARMED_METRICS
    for name, alarm in custom.items():
        # Powertools publishes the code's metrics with service=zus-m2m; the audit metric filters without.
        expected = [] if name == "DeniedCalls" else [{"Name": "service", "Value": "zus-m2m"}]
        assert alarm.get("Dimensions", []) == expected, name
    queue_alarms = {
        (a["MetricName"], a["Dimensions"][0]["Value"]["Fn::GetAtt"][0]) for a in alarms if a["Namespace"] == "AWS/SQS"
    }
    assert queue_alarms == {
        ("ApproximateNumberOfMessagesVisible", "ScheduleDeadLetterQueue"),
        ("ApproximateNumberOfMessagesVisible", "WorkDeadLetterQueue"),
        ("ApproximateAgeOfOldestMessage", "WorkQueue"),
    }
    for alarm in alarms:
        assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}]


def test_parameters_and_outputs(template: dict[str, Any]) -> None:
    assert set(template["Parameters"]) == PARAMETERS
    assert set(template["Outputs"]) >= OUTPUTS


def test_samconfig_has_sandbox_and_production() -> None:
    config = tomllib.loads((ROOT / "samconfig.toml").read_text(encoding="utf-8"))
    for environment in ("sandbox", "production"):
        deploy = config[environment]["deploy"]["parameters"]
        assert f'Stage="{environment}"' in deploy["parameter_overrides"]
        assert f'ZusEnvironment="{environment}"' in deploy["parameter_overrides"]
        assert deploy["capabilities"] == "CAPABILITY_IAM"


def test_bench_tokens_runs_the_vend_function_at_the_templates_log_level(
    template: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its latencies include what a call logs on Lambda (its audit line is INFO)."""
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    bench_tokens: Any = importlib.import_module("bench_tokens")
    level = template["Globals"]["Function"]["Environment"]["Variables"]["POWERTOOLS_LOG_LEVEL"]
    assert bench_tokens.environment("http://moto", "http://zus", 5)["POWERTOOLS_LOG_LEVEL"] == level
