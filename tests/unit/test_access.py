"""zus_m2m.access: who is an admin, who is a consumer, and which principal ARNs may be listed. Security
logic: each rule has a case that grants and a case, as close as possible, that does not."""

from __future__ import annotations

import pytest

from zus_m2m import errors
from zus_m2m.access import MAX_PRINCIPALS, AccessPolicy, Caller, consumers_of, parse_principal, principal_list

ACCOUNT, OTHER = "111122223333", "444455556666"


def session(role: str, account: str = ACCOUNT, name: str = "task-1", partition: str = "aws") -> Caller:
    return Caller(f"arn:{partition}:sts::{account}:assumed-role/{role}/{name}", account)


def user(path_and_name: str, account: str = ACCOUNT) -> Caller:
    return Caller(f"arn:aws:iam::{account}:user/{path_and_name}", account)


def allowed(caller: Caller, *consumers: str) -> bool:
    return AccessPolicy.may_get_token(caller, consumers_of(consumers))


# --- roles: every session, by account and name; an assumed role's ARN has no path ----------------------


def test_a_role_covers_its_sessions() -> None:
    assert allowed(session("billing"), f"arn:aws:iam::{ACCOUNT}:role/billing")
    assert allowed(session("billing", name="other-session"), f"arn:aws:iam::{ACCOUNT}:role/billing")


def test_a_role_with_a_path_covers_its_sessions_whose_arn_drops_the_path() -> None:
    assert allowed(session("billing"), f"arn:aws:iam::{ACCOUNT}:role/service/team-a/billing")


def test_a_role_does_not_cover_another_role_another_account_or_another_partition() -> None:
    role = f"arn:aws:iam::{ACCOUNT}:role/billing"
    assert not allowed(session("billing-v2"), role)
    assert not allowed(session("billin"), role)
    assert not allowed(session("billing", account=OTHER), role)
    assert not allowed(session("billing", partition="aws-cn"), role)


def test_a_role_does_not_cover_a_user_of_the_same_name() -> None:
    assert not allowed(user("billing"), f"arn:aws:iam::{ACCOUNT}:role/billing")


def test_a_role_does_not_cover_a_caller_arn_that_only_looks_like_a_session() -> None:
    role = f"arn:aws:iam::{ACCOUNT}:role/billing"
    assert not allowed(Caller(f"arn:aws:sts::{ACCOUNT}:assumed-role/billing"), role)  # no session
    assert not allowed(Caller(f"arn:aws:sts::{ACCOUNT}:federated-user/billing"), role)
    assert not allowed(Caller(f"arn:aws:iam::{ACCOUNT}:role/billing"), role)  # a role is never a caller
    assert not allowed(Caller(f"xarn:aws:sts::{ACCOUNT}:assumed-role/billing/s"), role)


# --- users: by exact ARN ------------------------------------------------------------------------------------


def test_a_user_covers_exactly_that_user() -> None:
    assert allowed(user("ci"), f"arn:aws:iam::{ACCOUNT}:user/ci")
    assert allowed(user("team/ci"), f"arn:aws:iam::{ACCOUNT}:user/team/ci")


def test_a_user_does_not_cover_another_path_name_or_account() -> None:
    listed = f"arn:aws:iam::{ACCOUNT}:user/team/ci"
    assert not allowed(user("ci"), listed)
    assert not allowed(user("other/ci"), listed)
    assert not allowed(user("team/ci2"), listed)
    assert not allowed(user("team/ci", account=OTHER), listed)
    assert not allowed(session("ci"), f"arn:aws:iam::{ACCOUNT}:user/ci")


# --- an account root: every principal of the account --------------------------------------------------------


def test_an_account_root_covers_every_principal_of_its_account() -> None:
    root = f"arn:aws:iam::{ACCOUNT}:root"
    assert allowed(session("anything"), root)
    assert allowed(user("anyone"), root)
    assert allowed(Caller(f"arn:aws:iam::{ACCOUNT}:root"), root)
    assert allowed(Caller(f"arn:aws:sts::{ACCOUNT}:federated-user/bob"), root)


def test_an_account_root_covers_no_other_account_and_no_unsigned_caller() -> None:
    root = f"arn:aws:iam::{ACCOUNT}:root"
    assert not allowed(session("anything", account=OTHER), root)
    assert not allowed(Caller(""), root)
    assert not allowed(Caller(f"arn:aws:sts::{ACCOUNT}"), root)


def test_no_consumers_grant_nothing() -> None:
    assert not allowed(session("billing"))


def test_consumers_that_do_not_parse_grant_nothing() -> None:
    assert not allowed(session("billing"), "arn:aws:iam::*:role/billing", "billing", "*")


# --- admins ----------------------------------------------------------------------------------------------------


def test_admins_are_the_stacks_admin_principals() -> None:
    policy = AccessPolicy.of([f"arn:aws:iam::{ACCOUNT}:role/platform-admin", f"arn:aws:iam::{ACCOUNT}:user/alice"])
    assert policy.may_administer(session("platform-admin"))
    assert policy.may_administer(user("alice"))
    assert not policy.may_administer(session("billing"))
    assert not policy.may_administer(user("alice", account=OTHER))
    assert not policy.may_administer(Caller(""))


def test_require_admin_refuses_with_403_naming_the_caller() -> None:
    policy = AccessPolicy.of([f"arn:aws:iam::{ACCOUNT}:role/platform-admin"])
    policy.require_admin(session("platform-admin"))
    with pytest.raises(errors.Forbidden) as caught:
        policy.require_admin(session("billing"))
    assert caught.value.http_status == 403
    assert str(caught.value) == f"{session('billing').arn} is not an admin of this zus-m2m stack"
    with pytest.raises(errors.Forbidden, match="an unsigned caller"):
        policy.require_admin(Caller(""))


def test_an_empty_admin_list_admits_nobody() -> None:
    assert not AccessPolicy.of([]).may_administer(session("platform-admin"))


# --- what may be listed --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "arn",
    [
        f"arn:aws:iam::{ACCOUNT}:role/billing",
        f"arn:aws:iam::{ACCOUNT}:role/service-role/team/billing.v2+x=y,z@w_1-2",
        f"arn:aws:iam::{ACCOUNT}:user/ci",
        f"arn:aws:iam::{ACCOUNT}:user/path/ci",
        f"arn:aws:iam::{ACCOUNT}:root",
        f"arn:aws-us-gov:iam::{ACCOUNT}:role/billing",
        f"arn:aws-cn:iam::{ACCOUNT}:root",
    ],
)
def test_principals_that_may_be_listed(arn: str) -> None:
    assert parse_principal(arn).arn == arn


@pytest.mark.parametrize(
    ("arn", "hint"),
    [
        (f"arn:aws:iam::{ACCOUNT}:role/*", "wildcards"),
        (f"arn:aws:iam::{ACCOUNT}:role/bill?ng", "wildcards"),
        ("arn:aws:iam::*:root", "wildcards"),
        ("*", "wildcards"),
        (f"arn:aws:sts::{ACCOUNT}:assumed-role/billing/session", "not one of its sessions"),
        (f"arn:aws:iam::{ACCOUNT}:group/admins", "role, IAM user or account root"),
        (f"arn:aws:iam::{ACCOUNT}:policy/p", "role, IAM user or account root"),
        (f"arn:aws:iam::{ACCOUNT}:role/", "role, IAM user or account root"),
        (f"arn:aws:iam::{ACCOUNT}:role/a//b", "role, IAM user or account root"),
        (f"arn:aws:iam::{ACCOUNT}:role/{'x' * 65}", "role, IAM user or account root"),
        ("arn:aws:iam::12345678901:root", "role, IAM user or account root"),
        (f"arn:aws:iam:us-east-1:{ACCOUNT}:root", "role, IAM user or account root"),
        (f"arn:aws:s3:::{ACCOUNT}", "role, IAM user or account root"),
        (f" arn:aws:iam::{ACCOUNT}:root", "role, IAM user or account root"),
        (f"arn:aws:iam::{ACCOUNT}:root\n", "role, IAM user or account root"),
        (f"arn:aws:iam::{ACCOUNT}:role/bïlling", "role, IAM user or account root"),
        (ACCOUNT, "role, IAM user or account root"),
        ("", "role, IAM user or account root"),
    ],
)
def test_principals_that_may_not_be_listed_are_named_in_the_error(arn: str, hint: str) -> None:
    with pytest.raises(errors.InvalidRequest) as caught:
        parse_principal(arn)
    assert repr(arn) in str(caught.value)
    assert hint in str(caught.value)


def test_a_list_is_checked_entry_by_entry_sorted_and_deduplicated() -> None:
    role = f"arn:aws:iam::{ACCOUNT}:role/b"
    root = f"arn:aws:iam::{ACCOUNT}:root"
    assert principal_list([root, role, root], "consumers") == (role, root)
    assert principal_list([], "consumers") == ()
    with pytest.raises(errors.InvalidRequest, match=r"^consumers\[1\]: 'arn:aws:iam::\*:root'"):
        principal_list([root, "arn:aws:iam::*:root"], "consumers")
    with pytest.raises(errors.InvalidRequest, match=r"consumers\[0\] must be a string, got int"):
        principal_list([1], "consumers")
    with pytest.raises(errors.InvalidRequest, match="consumers must be a list"):
        principal_list(root, "consumers")
    with pytest.raises(errors.InvalidRequest, match=f"at most {MAX_PRINCIPALS}"):
        principal_list([f"arn:aws:iam::{ACCOUNT}:role/r{i}" for i in range(MAX_PRINCIPALS + 1)], "consumers")
