"""Helpers of the infrastructure tests: where things are, and walks over IAM policies and functions
of a template (as written, or as the SAM transform expanded it)."""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zus_local.iam_authorizer import wildcard_match
from zus_local.intrinsics import Resolver
from zus_local.stand_ins import ResolveContext
from zus_m2m.settings import ENVIRONMENT_VARIABLES

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
TRANSLATED = ROOT / ".aws-sam" / "translated.json"
BUILD_DIR = ROOT / ".aws-sam" / "build"

# The functions of design.md, by logical id, with their folder under functions/.
FUNCTIONS = {
    "TokenVendingFunction": "token_vending",
    "ProvisioningFunction": "provisioning",
    "RotationFunction": "rotation",
    "ScheduledFunction": "scheduled",
    "WorkerFunction": "worker",
}

IAM_POLICY_TYPES = ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy")


@dataclass(frozen=True)
class Statement:
    """One IAM policy statement and where it was found (for failure messages)."""

    resource_id: str
    where: str
    body: dict[str, Any]

    @property
    def actions(self) -> list[str]:
        return as_list(self.body.get("Action", []))

    @property
    def resources(self) -> list[Any]:
        return as_list(self.body.get("Resource", []))

    @property
    def allows(self) -> bool:
        return self.body.get("Effect") == "Allow"


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def resources_of_type(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: res for name, res in template["Resources"].items() if res.get("Type") == kind}


def iam_statements(template: dict[str, Any]) -> Iterator[Statement]:
    """Every statement of every identity policy in a template: inline role policies, standalone
    policies and SAM function ``Policies`` (key, queue and topic policies are resource policies)."""
    for name, resource in template["Resources"].items():
        kind = resource.get("Type")
        props = resource.get("Properties") or {}
        documents: list[tuple[str, Any]] = []
        if kind == "AWS::IAM::Role":
            documents += [
                (f"Policies[{p.get('PolicyName')}]", p.get("PolicyDocument")) for p in props.get("Policies", [])
            ]
        elif kind in IAM_POLICY_TYPES:
            documents.append(("PolicyDocument", props.get("PolicyDocument")))
        elif kind == "AWS::Serverless::Function":
            documents += [
                (f"Policies[{i}]", p) for i, p in enumerate(as_list(props.get("Policies", []))) if isinstance(p, dict)
            ]
        for where, document in documents:
            if isinstance(document, dict):
                for statement in as_list(document.get("Statement", [])):
                    yield Statement(name, where, statement)


def statements_for_role(template: dict[str, Any], role: str) -> list[Statement]:
    """A role's inline statements plus those of the standalone policies attached to it."""
    attached = {
        name
        for name, res in template["Resources"].items()
        if res.get("Type") in IAM_POLICY_TYPES and {"Ref": role} in as_list(res["Properties"].get("Roles", []))
    }
    return [s for s in iam_statements(template) if s.resource_id == role or s.resource_id in attached]


def function_environment(template: dict[str, Any], function: str) -> dict[str, Any]:
    """A function's environment as deployed: Globals merged under the function's own variables."""
    globals_env = template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
    own = template["Resources"][function]["Properties"].get("Environment", {}).get("Variables", {})
    return {**globals_env, **own}


def function_property(template: dict[str, Any], function: str, name: str) -> Any:
    """A function property, falling back to Globals as SAM does."""
    own = template["Resources"][function]["Properties"]
    if name in own:
        return own[name]
    return template.get("Globals", {}).get("Function", {}).get(name)


def template_digest() -> str:
    return hashlib.sha256(TEMPLATE.read_bytes()).hexdigest()


def import_handler(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``command`` (a Python that imports a handler) in the handlers' environment."""
    return subprocess.run(
        command, env=handler_environment(), cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def handler_environment() -> dict[str, str]:
    """Every setting with a harmless value, and credentials that cannot reach an account."""
    env = {k: v for k, v in os.environ.items() if k not in {"AWS_PROFILE", "AWS_ENDPOINT_URL"}}
    placeholders = {
        "TABLE_NAME": "zus-m2m-test",
        "ADMIN_SECRET_NAME": "zus-m2m/test/zus-m2m-admin",
        "ADMIN_PRINCIPALS": "arn:aws:iam::123456789012:role/platform-admin",
    }
    env.update({name: default or placeholders.get(name, "") for name, default in ENVIRONMENT_VARIABLES.items()})
    env.update(
        STAGE="test",
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_SESSION_TOKEN="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_REGION="us-east-1",
        AWS_EC2_METADATA_DISABLED="true",
        POWERTOOLS_SERVICE_NAME="zus-m2m",
        POWERTOOLS_METRICS_NAMESPACE="ZusM2M",
        POWERTOOLS_TRACE_DISABLED="true",
    )
    return env


# --- what a role may do, evaluated as IAM would ------------------------------------------------------------

ACCOUNT, REGION = "123456789012", "us-east-1"


def _conditions_hold(condition: dict[str, Any], context: dict[str, list[str]], where: str) -> bool:
    """The condition operators the stack's data-plane policies use; any other fails loudly, so that no
    test passes by not understanding a policy."""
    for operator, keys in condition.items():
        for key, patterns in keys.items():
            values = context.get(key, [])
            listed = as_list(patterns)
            if operator == "ForAllValues:StringLike":
                held = all(any(wildcard_match(p, v) for p in listed) for v in values)
            elif operator == "ForAnyValue:StringLike":
                held = any(any(wildcard_match(p, v) for p in listed) for v in values)
            elif operator == "StringEquals":
                held = bool(values) and all(v in listed for v in values)
            else:
                raise AssertionError(f"{where}: condition operator {operator} is not understood by this test")
            if not held:
                return False
    return True


def role_decision(
    template: dict[str, Any],
    role: str,
    action: str,
    resource: str,
    *,
    parameters: dict[str, str],
    context: dict[str, list[str]] | None = None,
) -> str:
    """``allowed``, ``denied`` (an explicit Deny) or ``not-allowed``: what IAM decides for ``role``'s
    identity policies, the template's intrinsics resolved for a stack deployed with ``parameters``."""
    resolver = Resolver(template, ResolveContext(region=REGION, account_id=ACCOUNT, parameters=parameters))
    allowed = False
    for statement in statements_for_role(template, role):
        body = resolver.resolve(statement.body)
        where = f"{statement.resource_id} {statement.where} {body.get('Sid', '')}"
        acts = any(wildcard_match(a, action, ignore_case=True) for a in as_list(body.get("Action", [])))
        on = any(wildcard_match(r, resource) for r in as_list(body.get("Resource", [])))
        if not (acts and on and _conditions_hold(body.get("Condition", {}), context or {}, where)):
            continue
        if body.get("Effect") == "Deny":
            return "denied"
        allowed = True
    return "allowed" if allowed else "not-allowed"


def route_arn_matches(pattern: str, method: str, path: str, api_id: str) -> bool:
    """Whether an ``execute-api:Invoke`` Resource covers a request (``path`` as sent) to ``api_id``."""
    arn = f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{api_id}/$default/{method}/{path.lstrip('/')}"
    return wildcard_match(pattern, arn)
