"""Only the stack reads tokens and secrets (issue 22): template.yaml's table resource policy and key
policy, the function roles' identity policies and the secret resource policy the code puts
(``zus_m2m.secret_policy``), evaluated together as IAM evaluates them, explicit Deny first
(``zus_local.policy_evaluation``), against principals of the same account holding AWS's managed
policies (their published documents in ``aws_managed_policies/``)."""

from __future__ import annotations

import ast
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from infra_support import ACCOUNT, REGION, function_environment, statements_for_role
from test_template import ROLES, SECRET_ACTIONS, TABLE_ACTIONS

from zus_local.intrinsics import Resolver
from zus_local.policy_evaluation import Decision, Request, decide
from zus_local.stand_ins import ResolveContext
from zus_m2m.secret_policy import StackRoles, secret_resource_policy

MANAGED = Path(__file__).parent / "aws_managed_policies"
ADMINS = "arn:aws:iam::123456789012:role/platform-admin"
ANALYST = f"arn:aws:iam::{ACCOUNT}:role/analyst"
BREAK_GLASS = f"arn:aws:iam::{ACCOUNT}:role/zus-m2m-break-glass"
ADMIN_CLIENT = "zus-m2m-admin"
PARTITIONS = (f"admin#{ADMIN_CLIENT}", f"client#{ADMIN_CLIENT}", "client#billing-service")
ITEM_READS = ("GetItem", "BatchGetItem", "Query", "Scan", "PartiQLSelect", "ExportTableToPointInTime")
ITEM_ACTIONS = (*ITEM_READS, "PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "ConditionCheckItem")
SECRET_CHANGES = (
    "GetSecretValue",
    "PutSecretValue",
    "UpdateSecret",
    "UpdateSecretVersionStage",
    "RotateSecret",
    "DeleteResourcePolicy",
    "PutResourcePolicy",
)
# Every secret action the roles could be granted: each role must be allowed exactly its own.
SECRET_UNIVERSE = {
    *SECRET_CHANGES,
    *(action for actions in SECRET_ACTIONS.values() for action in actions),
    "GetResourcePolicy",
    "UntagResource",
    "ReplicateSecretToRegions",
}
TABLE_UNIVERSE = {*ITEM_ACTIONS, *(action for actions in TABLE_ACTIONS.values() for action in actions)}


def managed(name: str) -> dict[str, Any]:
    return dict(json.loads((MANAGED / f"{name}.json").read_text(encoding="utf-8")))


def allow(*actions: str) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": list(actions), "Resource": "*"}]}


@dataclass(frozen=True)
class Deployed:
    """The stack's policies as deployed with some parameters, every intrinsic resolved."""

    resolver: Resolver
    template: dict[str, Any]

    @property
    def table(self) -> str:
        return self.resolver.get_att("Table", "Arn")

    @property
    def key(self) -> str:
        return self.resolver.get_att("KmsKey", "Arn")

    def role(self, logical_id: str) -> str:
        return self.resolver.get_att(logical_id, "Arn")

    def identity(self, logical_id: str) -> list[dict[str, Any]]:
        statements = [statement.body for statement in statements_for_role(self.template, logical_id)]
        return [self.resolver.resolve({"Version": "2012-10-17", "Statement": statements})]

    @property
    def table_policy(self) -> dict[str, Any]:
        policy = self.template["Resources"]["Table"]["Properties"]["ResourcePolicy"]["PolicyDocument"]
        return dict(self.resolver.resolve(policy))

    @property
    def key_policy(self) -> dict[str, Any]:
        return dict(self.resolver.resolve(self.template["Resources"]["KmsKey"]["Properties"]["KeyPolicy"]))

    @property
    def secret_policy(self) -> dict[str, Any]:
        """What the code puts on every secret, with the roles and break-glass the functions are given."""
        environment = function_environment(self.template, "ProvisioningFunction")
        roles = StackRoles.parse(self.resolver.resolve_text(environment["STACK_ROLE_ARNS"], "STACK_ROLE_ARNS"))
        break_glass = self.resolver.resolve_text(environment["BREAK_GLASS_PRINCIPALS"], "BREAK_GLASS_PRINCIPALS")
        return secret_resource_policy(roles, [arn for arn in break_glass.split(",") if arn])

    def secret(self, name: str) -> str:
        return f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{name}-AbCdEf"

    # --- decisions ---------------------------------------------------------------------------------------

    def on_table(
        self, principal: str, identity: list[dict[str, Any]], action: str, partition: str | None = None
    ) -> Decision:
        context = {"dynamodb:LeadingKeys": [partition]} if partition else {}
        request = Request(principal, f"dynamodb:{action}", self.table, context)
        return decide(request, identity, self.table_policy)

    def on_secret(self, principal: str, identity: list[dict[str, Any]], action: str, name: str) -> Decision:
        request = Request(principal, f"secretsmanager:{action}", self.secret(name))
        return decide(request, identity, self.secret_policy)

    def on_key(
        self, principal: str, identity: list[dict[str, Any]], action: str, context: Mapping[str, list[str]]
    ) -> Decision:
        request = Request(principal, f"kms:{action}", self.key, context)
        return decide(request, identity, self.key_policy, key_policy=True)


def deployed(template: dict[str, Any], **parameters: str) -> Deployed:
    context = ResolveContext(region=REGION, account_id=ACCOUNT, parameters={"AdminPrincipals": ADMINS, **parameters})
    return Deployed(Resolver(template, context), template)


def via(service: str) -> dict[str, list[str]]:
    return {"kms:ViaService": [f"{service}.{REGION}.amazonaws.com"]}


SECRETS = ("zus-m2m/zus-m2m-local/sandbox/billing-service", f"zus-m2m/zus-m2m-local/sandbox/{ADMIN_CLIENT}")


# --- principals of the account with AWS's managed policies -------------------------------------------------


def test_dynamodb_read_only_plus_kms_decrypt_on_star_is_denied_every_token_item(template: dict[str, Any]) -> None:
    stack = deployed(template)
    reader = [managed("AmazonDynamoDBReadOnlyAccess"), allow("kms:Decrypt")]

    for action in ITEM_READS:
        assert stack.on_table(ANALYST, reader, action) == "denied", action
        for partition in PARTITIONS:  # the Builder Admin's token (admin#…) included
            assert stack.on_table(ANALYST, reader, action, partition) == "denied", (action, partition)
    # and the key does not decrypt for it, through DynamoDB or directly
    for context in (via("dynamodb"), {}):
        assert stack.on_key(ANALYST, reader, "Decrypt", context) == "not-allowed", context


def test_a_power_user_is_denied_every_secret_value_and_item(template: dict[str, Any]) -> None:
    stack = deployed(template)
    power_user = [managed("PowerUserAccess")]

    for name in SECRETS:  # a client's, and the bootstrap admin's (same policy: docs/deploy.md)
        for action in SECRET_CHANGES:
            assert stack.on_secret(ANALYST, power_user, action, name) == "denied", (action, name)
    for action in ITEM_ACTIONS:
        assert stack.on_table(ANALYST, power_user, action, PARTITIONS[0]) == "denied", action
    for action in ("Decrypt", "Encrypt", "GenerateDataKey", "ReEncryptFrom", "CreateGrant"):
        for context in (via("secretsmanager"), via("dynamodb"), {}):
            assert stack.on_key(ANALYST, power_user, action, context) == "not-allowed", (action, context)


def test_even_an_account_administrator_cannot_use_the_key_but_may_administer_it(template: dict[str, Any]) -> None:
    stack = deployed(template)
    administrator = [allow("*")]

    for action in ("Decrypt", "Encrypt", "GenerateDataKey", "GenerateDataKeyWithoutPlaintext", "ReEncryptTo"):
        for context in (via("secretsmanager"), via("dynamodb"), {}):
            assert stack.on_key(ANALYST, administrator, action, context) == "not-allowed", (action, context)
    # no grant for itself either; DynamoDB's grant, asked for while CloudFormation creates the table, is
    grant_for_itself = {"kms:GrantIsForAWSResource": ["false"]}
    assert stack.on_key(ANALYST, administrator, "CreateGrant", grant_for_itself) == "not-allowed"
    assert stack.on_key(ANALYST, administrator, "CreateGrant", {"kms:GrantIsForAWSResource": ["true"]}) == "allowed"
    for action in ("DescribeKey", "PutKeyPolicy", "EnableKeyRotation", "ScheduleKeyDeletion", "TagResource"):
        assert stack.on_key(ANALYST, administrator, action, {}) == "allowed", action
    # nor does a service principal of another purpose use it
    assert stack.on_key("lambda.amazonaws.com", [], "Decrypt", {}) == "not-allowed"


def test_break_glass_principals_read_items_and_secrets_and_nobody_else_is_let_in(template: dict[str, Any]) -> None:
    stack = deployed(template, BreakGlassPrincipals=BREAK_GLASS)
    power_user = [managed("PowerUserAccess")]

    assert stack.on_table(BREAK_GLASS, power_user, "GetItem", PARTITIONS[0]) == "allowed"
    assert stack.on_secret(BREAK_GLASS, power_user, "GetSecretValue", SECRETS[1]) == "allowed"
    assert stack.on_key(BREAK_GLASS, power_user, "Decrypt", via("secretsmanager")) == "allowed"
    assert stack.on_key(BREAK_GLASS, power_user, "Decrypt", {}) == "not-allowed"  # only through the services
    assert stack.on_table(ANALYST, power_user, "GetItem", PARTITIONS[0]) == "denied"
    assert stack.on_secret(ANALYST, power_user, "GetSecretValue", SECRETS[1]) == "denied"
    # without the parameter, no break-glass statement at all
    assert "BreakGlassReadsAndWritesSecretsAndItems" not in json.dumps(deployed(template).key_policy)


# --- each function role: exactly what its code calls -------------------------------------------------------


@pytest.mark.parametrize("role", ROLES.values())
def test_each_function_role_is_allowed_exactly_what_its_code_calls(template: dict[str, Any], role: str) -> None:
    """SECRET_ACTIONS and TABLE_ACTIONS (test_template.py) are the calls each function's code makes;
    identity, resource and key policies together allow exactly those."""
    stack = deployed(template)
    arn, identity = stack.role(role), stack.identity(role)

    secrets = {action for action in SECRET_UNIVERSE if stack.on_secret(arn, identity, action, SECRETS[0]) == "allowed"}
    assert secrets == SECRET_ACTIONS[role]
    table = {
        action
        for action in TABLE_UNIVERSE
        # a Scan names no partition; every other call names the client's
        if stack.on_table(arn, identity, action, None if action == "Scan" else "client#billing-service") == "allowed"
    }
    assert table == TABLE_ACTIONS[role]
    # the key: through Secrets Manager and DynamoDB, for what those calls need; never directly
    assert stack.on_key(arn, identity, "Decrypt", via("secretsmanager")) == "allowed"
    assert stack.on_key(arn, identity, "Decrypt", via("dynamodb")) == "allowed"
    assert stack.on_key(arn, identity, "GenerateDataKey", via("dynamodb")) == "allowed"
    writes_secrets = "PutSecretValue" in SECRET_ACTIONS[role]
    assert (stack.on_key(arn, identity, "GenerateDataKey", via("secretsmanager")) == "allowed") is writes_secrets
    assert stack.on_key(arn, identity, "Decrypt", {}) == "not-allowed"
    # provisioning alone seals and opens GET /app-clients' page tokens, in their own encryption context
    sealing = {"kms:EncryptionContext:zus-m2m:purpose": ["app-clients-page"]}
    for action in ("Encrypt", "Decrypt"):
        assert (stack.on_key(arn, identity, action, sealing) == "allowed") is (role == "ProvisioningRole"), action


def test_the_table_policy_keeps_a_role_out_when_its_arn_is_not_listed(template: dict[str, Any]) -> None:
    stack = deployed(template)
    # a role of the same name as the vending role's in another stack is another ARN: denied
    other = stack.role("TokenVendingRole").replace("TokenVendingRole", "TokenVendingRole-of-another-stack")
    identity = stack.identity("TokenVendingRole")
    assert stack.on_table(other, identity, "GetItem", "client#billing-service") == "denied"


# --- what the code calls, read from the adapters ------------------------------------------------------------

ADAPTERS = Path(__file__).resolve().parents[2] / "layers" / "zus_m2m" / "python" / "zus_m2m" / "aws"
# The adapters' boto3 clients, by the attribute that holds them.
CLIENTS = {"_sm": "secretsmanager", "_db": "dynamodb"}
# Actions IAM checks for a call besides the call's own: CreateSecret with Tags needs TagResource.
IMPLIED = {"secretsmanager:CreateSecret": {"secretsmanager:TagResource"}}
# A transaction is authorized as the writes it holds (DynamoDB has no IAM action of its own for it): the
# adapters' transactions put and update items.
AUTHORIZED_AS = {"dynamodb:TransactWriteItems": {"dynamodb:PutItem", "dynamodb:UpdateItem"}}


def boto3_calls() -> set[str]:
    """Every Secrets Manager and DynamoDB operation the adapters call, as IAM actions."""
    calls: set[str] = set()
    for module in ADAPTERS.glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            owner = node.func.value
            if isinstance(owner, ast.Attribute) and owner.attr in CLIENTS:
                operation = node.func.attr
                if operation == "get_paginator":  # the paginated operation, named by its first argument
                    [argument, *_] = node.args
                    assert isinstance(argument, ast.Constant), f"{module.name}: a paginator of what?"
                    operation = str(argument.value)
                action = f"{CLIENTS[owner.attr]}:{''.join(p.title() for p in operation.split('_'))}"
                calls |= AUTHORIZED_AS.get(action, {action, *IMPLIED.get(action, set())})
    return calls


def test_the_roles_are_granted_exactly_the_secret_and_table_calls_the_code_makes() -> None:
    calls = boto3_calls()
    granted = {f"secretsmanager:{action}" for actions in SECRET_ACTIONS.values() for action in actions}
    granted |= {f"dynamodb:{action}" for actions in TABLE_ACTIONS.values() for action in actions}
    assert "secretsmanager:GetSecretValue" in calls  # the walk found the adapters' calls
    assert sorted(granted - calls) == [], "granted, never called"
    assert sorted(calls - granted) == [], "called, never granted"


# --- two stacks of one Stage in one account ------------------------------------------------------------------


def stack_named(template: dict[str, Any], name: str) -> Deployed:
    context = ResolveContext(region=REGION, account_id=ACCOUNT, stack_name=name, parameters={"AdminPrincipals": ADMINS})
    return Deployed(Resolver(template, context), template)


def secret_name(stack: Deployed, client: str) -> str:
    """Where the stack's functions look for a client's secret (SecretNaming, from their environment)."""
    environment = function_environment(stack.template, "TokenVendingFunction")
    if client == ADMIN_CLIENT:
        return stack.resolver.resolve_text(environment["ADMIN_SECRET_NAME"], "ADMIN_SECRET_NAME")
    prefix = stack.resolver.resolve_text(environment["SECRET_PREFIX"], "SECRET_PREFIX")
    return f"{prefix}/{stack.resolver.resolve_text(environment['STAGE'], 'STAGE')}/{client}"


@pytest.mark.parametrize("role", ROLES.values())
def test_a_stacks_roles_are_granted_no_secret_of_another_stack_of_the_same_stage(
    template: dict[str, Any], role: str
) -> None:
    ours, theirs = stack_named(template, "team-a"), stack_named(template, "team-b")
    arn, identity = ours.role(role), ours.identity(role)

    def granted(action: str, name: str) -> Decision:  # the role's own policies: no resource policy is involved
        return decide(Request(arn, f"secretsmanager:{action}", ours.secret(name)), identity)

    assert granted("GetSecretValue", secret_name(ours, "billing-service")) == "allowed"
    for client in ("billing-service", ADMIN_CLIENT):
        assert secret_name(ours, client) != secret_name(theirs, client)
        for action in SECRET_ACTIONS[role]:
            assert granted(action, secret_name(theirs, client)) == "not-allowed", (action, client)
