"""What ``python -m zus_local`` was asked to run: the local stack's options, and why it cannot start."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from zus_local.local_principals import DEFAULT_CREDENTIALS_FILE

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"


class StackError(Exception):
    """Why the stack cannot start, in one line."""


@dataclass(frozen=True)
class StackOptions:
    host: str = "127.0.0.1"
    api_port: int = 3000
    moto_port: int = 5000
    zus_port: int = 8090
    # None: start moto; "": the real AWS account of the environment; a URL: a moto already running.
    aws_endpoint: str | None = None
    # Either set: use these Zus URLs instead of starting the emulator (the other from the template).
    zus_api_base: str = ""
    zus_auth_base: str = ""
    template: Path = TEMPLATE
    parameters: Mapping[str, str] = field(default_factory=dict)
    # Environment variables set in every function after the template's (``--env NAME=VALUE``).
    environment: Mapping[str, str] = field(default_factory=dict)
    stack_name: str = "zus-m2m-local"
    table_name: str = ""  # default: the stack name
    region: str = "us-east-1"
    schedule_scale: float = 1.0  # 0: no schedules
    concurrency: int = 4
    # Environments are frozen between invocations, as on Lambda (False: only to debug).
    freeze: bool = True
    # An environment idle this long is ended (the next invocation is a cold start); 0: never.
    idle_seconds: float = 300.0
    verbose: bool = False
    # The bootstrap admin client: the emulator's (it starts with it), or, with another Zus, the
    # operator's (the guide's steps 1-3); stored as the admin secret in moto. Empty: none stored.
    admin_client_id: str = "local-admin"
    admin_client_secret: str = field(default="local-admin-secret", repr=False)
    # Where the local admin's and consumer's keys go (an AWS shared credentials file; keys.env beside it).
    credentials_file: Path = DEFAULT_CREDENTIALS_FILE

    @property
    def starts_moto(self) -> bool:
        return self.aws_endpoint is None

    @property
    def uses_moto(self) -> bool:
        return self.aws_endpoint is None or bool(self.aws_endpoint)

    @property
    def starts_emulator(self) -> bool:
        return not (self.zus_api_base or self.zus_auth_base)

    @property
    def table(self) -> str:
        return self.table_name or self.stack_name

    def table_for(self, index: int, logical_id: str) -> str:
        """The name of the template's ``index``-th table: the first is ``table``, others get a suffix."""
        return self.table if index == 0 else f"{self.table}-{logical_id}"

    def kms_alias(self, logical_id: str) -> str:
        """The alias of the key standing in for a template's KMS key in moto."""
        return f"alias/{self.stack_name}-{logical_id}"
