"""The local stack's signers: two IAM users in moto, an admin of the stack (``AdminPrincipals``) and a
consumer, each with an access key and the identity policy docs/security.md gives its kind, so that
requests to the local API are authorized as API Gateway authorizes them.

Their keys go to an AWS shared credentials file (one profile per user, as the AWS CLI and the SDKs read
it) and, for curl's ``--aws-sigv4 … --user KEY:SECRET``, to ``keys.env`` next to it; both are readable by
their owner only, and the project's ``.gitignore`` keeps ``.aws-local/`` out of git. The stack never
prints a secret key.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zus_local.aws_setup import create_user_with_key

ADMIN_USER = "zus-m2m-local-admin"
CONSUMER_USER = "zus-m2m-local-consumer"
DEFAULT_CREDENTIALS_FILE = Path(".aws-local") / "credentials"


def user_arn(account_id: str, name: str) -> str:
    return f"arn:aws:iam::{account_id}:user/{name}"


def invoke_policy(*resources: str) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "execute-api:Invoke", "Resource": list(resources)}],
    }


def route_arns(region: str, account_id: str, api_id: str) -> tuple[str, str]:
    """The admin's and the consumer's ``Resource``, as the stack's outputs give them (every client's
    token route, for the local consumer)."""
    base = f"arn:aws:execute-api:{region}:{account_id}:{api_id}/*"
    return f"{base}/*/app-clients*", f"{base}/GET/app-clients/*/token"


@dataclass(frozen=True)
class LocalPrincipal:
    profile: str
    arn: str
    access_key: str
    secret_key: str = field(repr=False)


def create_local_principals(iam: Any, region: str, account_id: str, api_id: str) -> list[LocalPrincipal]:
    admin_routes, token_routes = route_arns(region, account_id, api_id)
    made = []
    for name, policy in ((ADMIN_USER, invoke_policy(admin_routes)), (CONSUMER_USER, invoke_policy(token_routes))):
        arn, key, secret = create_user_with_key(iam, name, "zus-m2m-local-invoke", policy)
        made.append(LocalPrincipal(name, arn, key, secret))
    return made


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(text)
    path.chmod(0o600)


def keys_file(credentials_file: Path) -> Path:
    return credentials_file.with_name("keys.env")


def write_credentials(credentials_file: Path, principals: Sequence[LocalPrincipal]) -> None:
    """The shared credentials file (a profile per principal) and ``keys.env`` (``KEY:SECRET`` per
    principal, as shell variables named after the profile)."""
    profiles = "".join(
        f"[{p.profile}]\naws_access_key_id = {p.access_key}\naws_secret_access_key = {p.secret_key}\n\n"
        for p in principals
    )
    _write_private(credentials_file, profiles)
    variables = "".join(f"{p.profile.upper().replace('-', '_')}={p.access_key}:{p.secret_key}\n" for p in principals)
    _write_private(keys_file(credentials_file), variables)
