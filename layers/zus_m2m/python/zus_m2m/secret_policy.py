"""The resource policy of every client secret (and the bootstrap admin's): reading and changing the
secret is denied to every principal but the stack's function roles that need it, and the break-glass
principals (``BreakGlassPrincipals``), whatever their IAM policies allow. Provisioning puts it on each
secret it creates, a rotation check on a secret that lacks it; ``python -m zus_m2m.secret_policy``
prints it for the admin secret's bootstrap (docs/deploy.md).

Each statement is a Deny for every principal whose ARN (``aws:PrincipalArn``: a role's, for its
sessions too) is not listed; the roles' own IAM policies grant what they do. Secrets Manager's
``BlockPublicPolicy`` accepts it: it grants nobody anything.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# The function roles by the names STACK_ROLE_ARNS gives them (template.yaml), in that order.
ROLE_NAMES = ("token-vending", "provisioning", "rotation", "scheduled", "worker")

# (Sid, actions, the roles that keep them): what each role's code calls on a secret (tests/infra).
_GUARDED: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("OnlyTheStackReadsTheValue", ("secretsmanager:GetSecretValue",), ROLE_NAMES),
    ("OnlyProvisioningAndRotationStoreValues", ("secretsmanager:PutSecretValue",), ("provisioning", "rotation")),
    (
        "OnlyTheStackMovesVersionLabels",
        ("secretsmanager:UpdateSecretVersionStage",),
        ("provisioning", "rotation", "scheduled", "worker"),
    ),
    (
        "OnlyTheStackStartsAndStopsRotations",
        ("secretsmanager:RotateSecret", "secretsmanager:CancelRotateSecret"),
        ("provisioning", "scheduled", "worker"),
    ),
    (
        "OnlyProvisioningDeletesOrRestores",
        ("secretsmanager:DeleteSecret", "secretsmanager:RestoreSecret"),
        ("provisioning",),
    ),
    (
        "OnlyTheStackSetsThisPolicy",
        ("secretsmanager:PutResourcePolicy", "secretsmanager:DeleteResourcePolicy"),
        ("provisioning", "worker"),
    ),
    # Nothing of the stack calls these: a new KMS key, a value or a replica would bypass the rest.
    (
        "NobodyElseChangesTheSecret",
        (
            "secretsmanager:UpdateSecret",
            "secretsmanager:ReplicateSecretToRegions",
            "secretsmanager:RemoveRegionsFromReplication",
            "secretsmanager:StopReplicationToReplica",
        ),
        (),
    ),
)


@dataclass(frozen=True)
class StackRoles:
    """The ARNs of the stack's function roles, by name (``ROLE_NAMES``)."""

    arns: dict[str, str]

    @classmethod
    def parse(cls, text: str) -> StackRoles:
        """``token-vending=<arn>,provisioning=<arn>,…`` (STACK_ROLE_ARNS); ValueError naming what is wrong."""
        arns: dict[str, str] = {}
        for entry in (item.strip() for item in text.split(",") if item.strip()):
            name, _, arn = entry.partition("=")
            if name not in ROLE_NAMES or not arn.startswith("arn:") or ":role/" not in arn:
                raise ValueError(f"STACK_ROLE_ARNS: {entry!r} is not <function>=<role ARN>")
            arns[name] = arn
        missing = [name for name in ROLE_NAMES if name not in arns]
        if missing:
            raise ValueError(f"STACK_ROLE_ARNS names no role for {', '.join(missing)}")
        return cls(arns)


def secret_resource_policy(roles: StackRoles, break_glass: Sequence[str] = ()) -> dict[str, Any]:
    """The policy document (see the module's docstring)."""
    statements = []
    for sid, actions, keepers in _GUARDED:
        allowed = [roles.arns[name] for name in keepers] + list(break_glass)
        statement: dict[str, Any] = {
            "Sid": sid,
            "Effect": "Deny",
            "Principal": "*",
            "Action": list(actions),
            "Resource": "*",
        }
        if allowed:
            statement["Condition"] = {"StringNotEquals": {"aws:PrincipalArn": allowed}}
        statements.append(statement)
    return {"Version": "2012-10-17", "Statement": statements}


def secret_policy_text(roles: StackRoles, break_glass: Sequence[str] = ()) -> str:
    """The document as Secrets Manager stores it (compact JSON, stable key order)."""
    return json.dumps(secret_resource_policy(roles, break_glass), separators=(",", ":"), sort_keys=True)


def same_policy(stored: str | None, wanted: str) -> bool:
    """Whether a stored resource policy says what ``wanted`` says (whitespace and key order aside)."""
    if stored is None:
        return False
    try:
        return bool(json.loads(stored) == json.loads(wanted))
    except ValueError:
        return False


def main(argv: Sequence[str]) -> int:
    """``python -m zus_m2m.secret_policy STACK_ROLE_ARNS [BREAK_GLASS_ARN ...]``: print the policy."""
    if not argv:
        print(__doc__, file=sys.stderr)
        print("usage: python -m zus_m2m.secret_policy '<StackRoleArns output>' [break-glass ARN ...]", file=sys.stderr)
        return 2
    try:
        roles = StackRoles.parse(argv[0])
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(json.dumps(secret_resource_policy(roles, argv[1:]), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
