"""Expand template.yaml into the CloudFormation that the SAM transform produces, offline.

checkov only sees a SAM template's ``AWS::Serverless::*`` resources; running it (and the IAM tests)
on this output also covers the roles, permissions, stages and schedules SAM generates. Needs
aws-sam-translator (it comes with aws-sam-cli in ``.venv-sam``) and no AWS credentials.

    .venv-sam/bin/python scripts/translate_template.py [template.yaml] [.aws-sam/translated.json]

Beside the output it writes ``translated.sha256``, the digest of the template it was made from.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "local"))

from zus_local.cfn_yaml import load_template  # noqa: E402


class _NoManagedPolicies:
    """The translator asks for AWS managed policy ARNs only when a function lists one by name in
    ``Policies``; this template gives every function its own role, so there is nothing to look up."""

    def load(self) -> dict[str, str]:
        return {}


# Local code paths become placeholder S3 URIs, as `sam validate` does: the translator accepts only
# packaged locations, and the code itself plays no part in the CloudFormation it writes.
_CODE_PROPERTIES = {"AWS::Serverless::Function": "CodeUri", "AWS::Serverless::LayerVersion": "ContentUri"}


def _with_placeholder_code(template: dict[str, Any]) -> dict[str, Any]:
    for resource in template.get("Resources", {}).values():
        key = _CODE_PROPERTIES.get(resource.get("Type", ""))
        properties = resource.get("Properties") or {}
        if key and isinstance(properties.get(key), str) and not properties[key].startswith("s3://"):
            properties[key] = "s3://placeholder-bucket/" + properties[key].strip("/")
    return template


def translate(template: dict[str, Any]) -> dict[str, Any]:
    # The translator builds ARNs with the partition of the configured region; no call is made.
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    from samtranslator.translator.transform import transform

    result: dict[str, Any] = transform(_with_placeholder_code(template), {}, _NoManagedPolicies())
    return result


def main(argv: list[str]) -> int:
    source = Path(argv[1]) if len(argv) > 1 else ROOT / "template.yaml"
    target = Path(argv[2]) if len(argv) > 2 else ROOT / ".aws-sam" / "translated.json"
    translated = translate(load_template(source))
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(translated, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    # The tests read the translation only if it was made from the template as it is now.
    target.with_suffix(".sha256").write_text(hashlib.sha256(source.read_bytes()).hexdigest() + "\n", encoding="utf-8")
    kinds = sorted({resource["Type"] for resource in translated["Resources"].values()})
    print(f"{target}: {len(translated['Resources'])} resources ({', '.join(kinds)})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
