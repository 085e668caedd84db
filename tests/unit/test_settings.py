"""Settings read at the start of every function: what one stack's secrets may be named, and who the client
secrets' resource policy names (issue 22)."""

from __future__ import annotations

import pytest

from zus_m2m import errors
from zus_m2m.settings import Settings

ROLES = ",".join(
    f"{name}=arn:aws:iam::123456789012:role/zus-m2m-sandbox-{name}"
    for name in ("token-vending", "provisioning", "rotation", "scheduled", "worker")
)
BASE = {
    "TABLE_NAME": "zus-m2m-sandbox-table",
    "STAGE": "sandbox",
    "SECRET_PREFIX": "zus-m2m/zus-m2m-sandbox",
    "ADMIN_PRINCIPALS": "arn:aws:iam::123456789012:role/platform-admin",
    "STACK_ROLE_ARNS": ROLES,
}


@pytest.mark.parametrize(
    "name",
    [
        "zus-m2m/zus-m2m-sandbox/sandbox/zus-m2m-admin",  # the default: the admin client's own name
        "ops/zus-admin",  # outside the stack's prefix
        "zus-m2m/zus-m2m-sandbox/sandbox/admins/zus",  # no client name has a "/"
        "zus-m2m/other-stack/sandbox/billing-service",  # another stack's prefix is not this one's
    ],
)
def test_an_admin_secret_name_no_client_can_take_is_accepted(name: str) -> None:
    assert Settings.from_env({**BASE, "ADMIN_SECRET_NAME": name}).admin_secret_name == name


def test_an_admin_secret_name_a_client_could_take_is_refused_at_start_naming_why() -> None:
    name = "zus-m2m/zus-m2m-sandbox/sandbox/billing-service"

    with pytest.raises(errors.ConfigurationError) as caught:
        Settings.from_env({**BASE, "ADMIN_SECRET_NAME": name})

    assert caught.value.detail == (
        f"invalid configuration: ADMIN_SECRET_NAME {name!r} is the secret name a client named 'billing-service' "
        "would take (zus-m2m/zus-m2m-sandbox/sandbox/<client name>); name the admin secret outside "
        "zus-m2m/zus-m2m-sandbox/sandbox/, or leave AdminSecretName empty for "
        "zus-m2m/zus-m2m-sandbox/sandbox/zus-m2m-admin"
    )


def test_the_secret_policy_names_the_stack_roles_and_break_glass() -> None:
    settings = Settings.from_env(
        {**BASE, "ADMIN_SECRET_NAME": "ops/zus-admin", "BREAK_GLASS_PRINCIPALS": "arn:aws:iam::123456789012:role/bg"}
    )
    assert '"arn:aws:iam::123456789012:role/bg"' in settings.secret_policy
    assert settings.secret_policy.count("zus-m2m-sandbox-token-vending") == 1  # it reads, nothing else
    assert Settings.from_env({**BASE, "ADMIN_SECRET_NAME": "x", "STACK_ROLE_ARNS": ""}).secret_policy == ""


@pytest.mark.parametrize(
    ("roles", "problem"),
    [
        ("token-vending=arn:aws:iam::1:role/a", "STACK_ROLE_ARNS names no role for provisioning, rotation,"),
        ("vending=arn:aws:iam::1:role/a", "STACK_ROLE_ARNS: 'vending=arn:aws:iam::1:role/a' is not"),
        (ROLES + ",worker=not-an-arn", "STACK_ROLE_ARNS: 'worker=not-an-arn' is not <function>=<role ARN>"),
    ],
)
def test_stack_role_arns_that_do_not_name_every_role_are_refused_naming_the_entry(roles: str, problem: str) -> None:
    with pytest.raises(errors.ConfigurationError) as caught:
        Settings.from_env({**BASE, "ADMIN_SECRET_NAME": "x", "STACK_ROLE_ARNS": roles})
    assert problem in caught.value.detail
