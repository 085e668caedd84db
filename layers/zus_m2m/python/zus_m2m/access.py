"""Who may do what: the stack's admins manage clients, each client's consumers get its token.

Pure logic over principal ARNs, no I/O. The HTTP edge reads API Gateway's IAM authorizer context into a
``Caller``; ``AccessPolicy`` decides. How a caller matches a listed principal:

* ``arn:<partition>:iam::<account>:role/<path>/<name>`` is every session of that role: the caller
  ``arn:<partition>:sts::<account>:assumed-role/<name>/<session>`` (an assumed role's ARN drops the
  role's path, so roles match by account and name);
* ``arn:<partition>:iam::<account>:user/<path>/<name>`` is that IAM user, by its exact ARN;
* ``arn:<partition>:iam::<account>:root`` is every principal of that account.

Listed principals are checked when they are given (``principal_list``): no wildcards, no assumed-role
or federated ARNs (name the role instead), nothing that could never match.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from zus_m2m.errors import Forbidden, InvalidRequest

# IAM's own limits: names of at most 64 characters of [\w+=,.@-]; paths (of at most 512) in the same
# characters here, as template.yaml's AdminPrincipals pattern has them.
_NAME = r"[\w+=,.@-]{1,64}"
_PATH = r"(?:/[\w+=,.@-]{1,510})*"
_PARTITION = r"aws(?:-[a-z]+)*"
_ACCOUNT = r"[0-9]{12}"
PRINCIPAL_REGEX = rf"^arn:{_PARTITION}:iam::{_ACCOUNT}:(?:root|role{_PATH}/{_NAME}|user{_PATH}/{_NAME})$"
_PRINCIPAL = re.compile(
    rf"^arn:(?P<partition>{_PARTITION}):iam::(?P<account>{_ACCOUNT}):"
    rf"(?:(?P<root>root)|(?P<kind>role|user)(?P<path>{_PATH})/(?P<name>{_NAME}))$",
    re.ASCII,
)
_ASSUMED_ROLE = re.compile(
    rf"^arn:(?P<partition>{_PARTITION}):sts::(?P<account>{_ACCOUNT}):assumed-role/(?P<name>{_NAME})/[^/]+$",
    re.ASCII,
)
_ANY_CALLER = re.compile(rf"^arn:(?P<partition>{_PARTITION}):(?:iam|sts)::(?P<account>{_ACCOUNT}):", re.ASCII)
# The most principals one list may hold (consumers of a client, admins of a stack).
MAX_PRINCIPALS = 100


@dataclass(frozen=True)
class Caller:
    """Who signed a request, as API Gateway's IAM authorizer says (``requestContext.authorizer.iam``);
    ``arn`` is empty when the request carries no such context."""

    arn: str
    account_id: str = ""
    access_key: str = ""
    source_ip: str = ""


@dataclass(frozen=True)
class Principal:
    """A listed principal, normalised for matching: a role (account and name), a user (exact ARN), or
    a whole account (``kind`` "account")."""

    kind: str  # "role", "user" or "account"
    partition: str
    account: str
    name: str = ""
    arn: str = ""

    def covers(self, caller: Caller) -> bool:
        """Whether the caller is (a session of) this principal."""
        arn = caller.arn
        if self.kind == "user":
            return arn == self.arn
        if self.kind == "role":
            match = _ASSUMED_ROLE.fullmatch(arn)
            return match is not None and (match["partition"], match["account"], match["name"]) == (
                self.partition,
                self.account,
                self.name,
            )
        found = _ANY_CALLER.match(arn)
        return found is not None and (found["partition"], found["account"]) == (self.partition, self.account)


def parse_principal(arn: str) -> Principal:
    """A listed principal's ARN (InvalidRequest naming the entry and what is accepted)."""
    match = _PRINCIPAL.fullmatch(arn)
    if match is None:
        hint = ""
        if "*" in arn or "?" in arn:
            hint = "; wildcards are not accepted"
        elif _ASSUMED_ROLE.fullmatch(arn):
            hint = "; name the role (arn:aws:iam::<account>:role/<name>), not one of its sessions"
        raise InvalidRequest(
            f"{arn!r} is not an IAM role, IAM user or account root ARN "
            f"(arn:aws:iam::<account>:role/<name>, …:user/<name> or …:root){hint}"
        )
    if match["root"]:
        return Principal("account", match["partition"], match["account"], arn=arn)
    return Principal(match["kind"], match["partition"], match["account"], name=match["name"], arn=arn)


def principal_list(values: object, field: str, *, account: str = "") -> tuple[str, ...]:
    """A list of principal ARNs as given (``field`` names it in errors): each checked, duplicates
    dropped, sorted, so that two lists of the same principals compare equal. With ``account`` (the
    stack's), a principal of another account is refused: it could never call the API."""
    if not isinstance(values, list):
        raise InvalidRequest(f"{field} must be a list of IAM principal ARNs")
    if len(values) > MAX_PRINCIPALS:
        raise InvalidRequest(f"{field} may list at most {MAX_PRINCIPALS} principals, got {len(values)}")
    for index, value in enumerate(values):
        if not isinstance(value, str):
            raise InvalidRequest(f"{field}[{index}] must be a string, got {type(value).__name__}")
        try:
            principal = parse_principal(value)
        except InvalidRequest as exc:
            raise InvalidRequest(f"{field}[{index}]: {exc.detail}") from None
        if account and principal.account != account:
            raise InvalidRequest(
                f"{field}[{index}]: {value!r} is in account {principal.account}, not this stack's ({account}): "
                "an HTTP API has no resource policy, so a principal of another account can never call it; "
                "list a role of this account that the other account's service assumes (docs/security.md)"
            )
    return tuple(sorted(set(values)))


@dataclass(frozen=True)
class AccessPolicy:
    """The stack's admins (``AdminPrincipals``): they create, update, delete and rotate clients.
    Consumers are per client, on its record."""

    admins: tuple[Principal, ...]

    @classmethod
    def of(cls, admin_arns: Iterable[str]) -> AccessPolicy:
        return cls(tuple(parse_principal(arn) for arn in admin_arns))

    def may_administer(self, caller: Caller) -> bool:
        return any(admin.covers(caller) for admin in self.admins)

    def require_admin(self, caller: Caller) -> None:
        if not self.may_administer(caller):
            raise Forbidden(f"{_who(caller)} is not an admin of this zus-m2m stack")

    @staticmethod
    def may_get_token(caller: Caller, consumers: Iterable[Principal]) -> bool:
        """Whether ``caller`` is one of a client's consumers (``consumers_of`` its record's list)."""
        return any(consumer.covers(caller) for consumer in consumers)


def consumers_of(arns: Iterable[str]) -> tuple[Principal, ...]:
    """A record's consumers, parsed once; entries that do not parse (an item edited by hand) grant nothing."""
    parsed: list[Principal] = []
    for arn in arns:
        try:
            parsed.append(parse_principal(arn))
        except InvalidRequest:
            continue
    return tuple(parsed)


def _who(caller: Caller) -> str:
    return caller.arn or "an unsigned caller"


def refused_token(caller: Caller, client: str) -> Forbidden:
    """The one refusal of the token route, whether the client does not exist or the caller is not one
    of its consumers (only admins learn which): it names neither token nor secret."""
    return Forbidden(f"{_who(caller)} may not get tokens of app client {client!r}")
