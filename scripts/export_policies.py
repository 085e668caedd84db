"""Write every IAM policy of the stack, resolved as deployed, one JSON file each, for `make validate`'s
policy linter (parliament): each role's permission policies, the table's resource policy, the key policy
(with the break-glass statement: the example deployment names a break-glass role) and the resource
policy the code puts on every client secret (``zus_m2m.secret_policy``).

    python scripts/export_policies.py template.yaml OUT_DIR

The key policy goes to OUT_DIR/key-policy/ (linted with its own settings: scripts/parliament-key-policy.yaml),
every other policy to OUT_DIR/.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from zus_local.cfn_yaml import load_template
from zus_local.intrinsics import Resolver
from zus_local.stand_ins import ResolveContext
from zus_m2m.secret_policy import StackRoles, secret_resource_policy

ACCOUNT, REGION = "123456789012", "us-east-1"
PARAMETERS = {
    "AdminPrincipals": f"arn:aws:iam::{ACCOUNT}:role/platform-admin",
    "BreakGlassPrincipals": f"arn:aws:iam::{ACCOUNT}:role/break-glass",
}


def policies(template: dict[str, Any]) -> dict[str, Any]:
    resolver = Resolver(template, ResolveContext(region=REGION, account_id=ACCOUNT, parameters=PARAMETERS))
    found: dict[str, Any] = {}
    for name, resource in template["Resources"].items():
        kind, props = resource.get("Type"), resource.get("Properties") or {}
        if kind == "AWS::IAM::Role":  # trust policies are no permission policies: not linted
            for policy in props.get("Policies", []):
                found[f"{name}.{policy['PolicyName']}"] = policy["PolicyDocument"]
        elif kind == "AWS::IAM::Policy":
            found[name] = props["PolicyDocument"]
        elif kind == "AWS::KMS::Key":
            found[f"key-policy/{name}"] = props["KeyPolicy"]
        elif kind == "AWS::DynamoDB::Table" and "ResourcePolicy" in props:
            found[f"{name}.resource-policy"] = props["ResourcePolicy"]["PolicyDocument"]
    resolved = {name: resolver.resolve(document) for name, document in found.items()}
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    roles = StackRoles.parse(resolver.resolve_text(variables["STACK_ROLE_ARNS"], "STACK_ROLE_ARNS"))
    resolved["ClientSecret.resource-policy"] = secret_resource_policy(roles, [PARAMETERS["BreakGlassPrincipals"]])
    return resolved


def main(template_path: str, out: str) -> int:
    directory = Path(out)
    (directory / "key-policy").mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("**/*.json"):
        stale.unlink()
    found = policies(load_template(Path(template_path)))
    for name, document in found.items():
        (directory / f"{name}.json").write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    print(f"{directory}: {len(found)} policies")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
