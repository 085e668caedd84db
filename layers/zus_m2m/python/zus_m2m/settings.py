"""The one typed settings object, read from the environment at the edge (handlers and the local stack).

Domain logic never reads the environment: handlers build ``Settings.from_env()`` once at module
scope and pass plain values on. template.yaml sets every variable named here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from zus_m2m.access import principal_list
from zus_m2m.errors import ConfigurationError, InvalidRequest
from zus_m2m.secret_policy import StackRoles, secret_policy_text
from zus_m2m.validation import CLIENT_NAME_PATTERN
from zus_m2m.values import SecretNaming
from zus_m2m.zus.endpoints import ZusEndpoints

# Every environment variable the service reads, with its default (None: required).
ENVIRONMENT_VARIABLES: Mapping[str, str | None] = {
    "STAGE": "dev",
    "TABLE_NAME": None,
    "SECRET_PREFIX": "zus-m2m",
    "KMS_KEY_ID": "",
    "ADMIN_SECRET_NAME": None,
    "ADMIN_CLIENT_NAME": "zus-m2m-admin",
    "ZUS_ENVIRONMENT": "sandbox",
    "ZUS_API_BASE_URL": "",
    "ZUS_AUTH_BASE_URL": "",
    "ZUS_AUDIENCE": "",
    "TOKEN_REFRESH_MARGIN_SECONDS": "300",
    "TOKEN_BUDGET_PER_HOUR": "100",
    "TOKEN_BUDGET_RESERVE_PERCENT": "10",
    "ROTATION_INTERVAL_DAYS": "30",
    "SECRET_RECOVERY_WINDOW_DAYS": "7",
    "ROTATION_FUNCTION_ARN": "",
    # Comma-separated IAM role/user/account-root ARNs: who may create, update, delete and rotate clients.
    "ADMIN_PRINCIPALS": None,
    # Comma-separated Zus role names admins may give clients.
    "ALLOWED_ZUS_ROLES": "Builder Admin,Care Team User",
    "ROTATION_REQUEST_MIN_GAP_SECONDS": "300",
    # How long a container serves a client's token from memory before it checks the client's record
    # again: a revoked consumer, or a deleted or re-created client, stops being served within this bound.
    "MEMORY_REVALIDATION_SECONDS": "5",
    # A client's token is replaced on a report that Zus refused it at most once per this many seconds.
    "REFUSED_REPLACEMENT_MIN_GAP_SECONDS": "60",
    # The queue the scheduled jobs hand due work to (set on the scheduled function only).
    "WORK_QUEUE_URL": "",
    # The function roles, ``token-vending=<ARN>,provisioning=<ARN>,…``: the only principals (with
    # BREAK_GLASS_PRINCIPALS) a client secret's resource policy lets read and change it. Empty only
    # outside a deployment (tests): then no resource policy is put.
    "STACK_ROLE_ARNS": "",
    "BREAK_GLASS_PRINCIPALS": "",
}


@dataclass(frozen=True)
class Settings:
    stage: str
    table_name: str
    secret_prefix: str
    kms_key_id: str
    admin_secret_name: str
    admin_client_name: str
    zus: ZusEndpoints
    token_refresh_margin_seconds: int
    token_budget_per_hour: int
    # The percentage of the budget only recovery may spend (testSecret, proofs, the sweep, the first
    # request after an outage).
    token_budget_reserve_percent: int
    rotation_interval_days: int
    secret_recovery_window_days: int
    rotation_function_arn: str
    admin_principals: tuple[str, ...]
    allowed_zus_roles: tuple[str, ...]
    rotation_request_min_gap_seconds: int
    memory_revalidation_seconds: int
    refused_replacement_min_gap_seconds: int
    work_queue_url: str
    stack_roles: StackRoles | None = None
    break_glass_principals: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read and check every setting at once, so one error names every problem."""
        source = os.environ if environ is None else environ
        values = {name: source.get(name) or default for name, default in ENVIRONMENT_VARIABLES.items()}
        problems = [f"{name} is required" for name, value in values.items() if value is None]

        def integer(name: str, low: int, high: int) -> int:
            raw = values[name] or ""
            try:
                number = int(raw)
            except ValueError:
                problems.append(f"{name} must be an integer, got {raw!r}")
                return low
            if not low <= number <= high:
                problems.append(f"{name} must be between {low} and {high}, got {number}")
            return number

        margin = integer("TOKEN_REFRESH_MARGIN_SECONDS", 0, 3000)
        budget = integer("TOKEN_BUDGET_PER_HOUR", 1, 200)
        reserve_percent = integer("TOKEN_BUDGET_RESERVE_PERCENT", 0, 50)
        rotation_days = integer("ROTATION_INTERVAL_DAYS", 1, 365)
        recovery_days = integer("SECRET_RECOVERY_WINDOW_DAYS", 7, 30)
        rotation_gap = integer("ROTATION_REQUEST_MIN_GAP_SECONDS", 0, 86400)
        revalidation = integer("MEMORY_REVALIDATION_SECONDS", 0, 60)
        refused_gap = integer("REFUSED_REPLACEMENT_MIN_GAP_SECONDS", 10, 3600)
        admins: tuple[str, ...] = ()
        if values["ADMIN_PRINCIPALS"] is not None:
            try:
                admins = principal_list(_listed(values["ADMIN_PRINCIPALS"]), "ADMIN_PRINCIPALS")
            except InvalidRequest as exc:
                problems.append(exc.detail)
            if not admins and not problems:
                problems.append("ADMIN_PRINCIPALS must name at least one IAM principal")
        stack_roles, break_glass = _secret_principals(values, problems)
        problems += _admin_secret_collision(values)
        roles = tuple(_listed(values["ALLOWED_ZUS_ROLES"] or ""))
        if not roles:
            problems.append("ALLOWED_ZUS_ROLES must name at least one Zus role")
        try:
            endpoints = ZusEndpoints.for_environment(
                values["ZUS_ENVIRONMENT"] or "",
                api_base=values["ZUS_API_BASE_URL"] or None,
                auth_base=values["ZUS_AUTH_BASE_URL"] or None,
                audience=values["ZUS_AUDIENCE"] or None,
            )
        except ValueError as exc:
            problems.append(f"ZUS_ENVIRONMENT: {exc}")
            endpoints = ZusEndpoints("", "", "")
        if problems:
            raise ConfigurationError("invalid configuration: " + "; ".join(problems))
        return cls(
            stage=values["STAGE"] or "",
            table_name=values["TABLE_NAME"] or "",
            secret_prefix=(values["SECRET_PREFIX"] or "").strip("/"),
            kms_key_id=values["KMS_KEY_ID"] or "",
            admin_secret_name=values["ADMIN_SECRET_NAME"] or "",
            admin_client_name=values["ADMIN_CLIENT_NAME"] or "",
            zus=endpoints,
            token_refresh_margin_seconds=margin,
            token_budget_per_hour=budget,
            token_budget_reserve_percent=reserve_percent,
            rotation_interval_days=rotation_days,
            secret_recovery_window_days=recovery_days,
            rotation_function_arn=values["ROTATION_FUNCTION_ARN"] or "",
            admin_principals=admins,
            allowed_zus_roles=roles,
            rotation_request_min_gap_seconds=rotation_gap,
            memory_revalidation_seconds=revalidation,
            refused_replacement_min_gap_seconds=refused_gap,
            work_queue_url=values["WORK_QUEUE_URL"] or "",
            stack_roles=stack_roles,
            break_glass_principals=break_glass,
        )

    @property
    def secret_policy(self) -> str:
        """The resource policy every client secret gets ("" without the stack's roles: no policy)."""
        if self.stack_roles is None:
            return ""
        return secret_policy_text(self.stack_roles, self.break_glass_principals)

    @property
    def secret_naming(self) -> SecretNaming:
        """Where each client's secret lives: ``<prefix>/<stage>/<name>``, the bootstrap admin's aside."""
        return SecretNaming(self.secret_prefix, self.stage, self.admin_client_name, self.admin_secret_name)


def _secret_principals(
    values: Mapping[str, str | None], problems: list[str]
) -> tuple[StackRoles | None, tuple[str, ...]]:
    """STACK_ROLE_ARNS and BREAK_GLASS_PRINCIPALS, what is wrong with them added to ``problems``."""
    stack_roles = None
    if values["STACK_ROLE_ARNS"]:
        try:
            stack_roles = StackRoles.parse(values["STACK_ROLE_ARNS"] or "")
        except ValueError as exc:
            problems.append(str(exc))
    try:
        return stack_roles, principal_list(_listed(values["BREAK_GLASS_PRINCIPALS"] or ""), "BREAK_GLASS_PRINCIPALS")
    except InvalidRequest as exc:
        problems.append(exc.detail)
        return stack_roles, ()


def _admin_secret_collision(values: Mapping[str, str | None]) -> list[str]:
    """Why ADMIN_SECRET_NAME may not be used: a managed client's secret could take that name (a create of
    that client would overwrite the admin's secret, a delete would schedule its deletion)."""
    prefix = f"{(values['SECRET_PREFIX'] or '').strip('/')}/{values['STAGE']}/"
    name, admin = values["ADMIN_SECRET_NAME"] or "", values["ADMIN_CLIENT_NAME"] or ""
    client = name.removeprefix(prefix)
    if not name.startswith(prefix) or client == admin or not CLIENT_NAME_PATTERN.fullmatch(client):
        return []
    return [
        f"ADMIN_SECRET_NAME {name!r} is the secret name a client named {client!r} would take "
        f"({prefix}<client name>); name the admin secret outside {prefix}, or leave AdminSecretName empty "
        f"for {prefix}{admin}"
    ]


def _listed(value: str) -> list[str]:
    """A CommaDelimitedList parameter as CloudFormation joins it into one variable."""
    return [item.strip() for item in value.split(",") if item.strip()]
