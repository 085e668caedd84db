"""IAM's decision for one request of a principal of the stack's own account, from its identity policies,
the resource's policy (a table's, a secret's) or a KMS key's policy, with explicit Deny winning.

The local API's authorizer (``iam_authorizer.evaluate``) needs only Action and Resource; the
infrastructure tests need Principal and the conditions the stack's policies use, so this is the
evaluator they share: ``Effect``, ``Action``/``NotAction``, ``Resource``/``NotResource`` (``*`` and
``?``), ``Principal`` (``*``, an ARN, the account, a service) and ``Condition`` with the operators
``String(Not)Equals``, ``String(Not)Like``, ``Arn(Not)Equals``, ``Arn(Not)Like`` and ``Bool``, each
also as ``ForAllValues:``/``ForAnyValue:``. Any other operator raises: no policy passes a test by not
being understood. Keys: the request's context (``kms:ViaService``, ``dynamodb:LeadingKeys``,
``kms:EncryptionContext:…``), and ``aws:PrincipalArn``/``aws:PrincipalAccount`` from the principal.

How IAM decides, within one account (the rules these tests rely on): an explicit Deny in any policy
denies; otherwise an Allow in the identity policies or one in the resource policy that names the
principal itself allows. A KMS key is different: only its key policy can allow, either naming the
principal, or naming the account, which hands the decision to the identity policies.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Decision = Literal["allowed", "denied", "not-allowed"]


def wildcard_match(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    """IAM's ``*`` (any run of characters) and ``?`` (one character)."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, flags=re.DOTALL | (re.IGNORECASE if ignore_case else 0)) is not None


@dataclass(frozen=True)
class Request:
    """``principal``: an IAM role or user ARN (``aws:PrincipalArn``), or a service principal."""

    principal: str
    action: str
    resource: str
    context: Mapping[str, Sequence[str]] = field(default_factory=dict)

    @property
    def account(self) -> str:
        parts = self.principal.split(":")
        return parts[4] if len(parts) > 4 else ""

    def values(self, key: str) -> list[str]:
        automatic = {"aws:principalarn": [self.principal], "aws:principalaccount": [self.account]}
        for name, values in self.context.items():
            if name.lower() == key.lower():
                return [str(value) for value in values]
        return automatic.get(key.lower(), [])


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


_MATCHERS = {
    "StringEquals": lambda pattern, value: pattern == value,
    "StringLike": lambda pattern, value: wildcard_match(pattern, value),
    "ArnEquals": lambda pattern, value: pattern == value,
    "ArnLike": lambda pattern, value: wildcard_match(pattern, value),
    "Bool": lambda pattern, value: str(pattern).lower() == str(value).lower(),
}
_NEGATED = {
    "StringNotEquals": "StringEquals",
    "StringNotLike": "StringLike",
    "ArnNotEquals": "ArnEquals",
    "ArnNotLike": "ArnLike",
}


def condition_holds(condition: Mapping[str, Any], request: Request) -> bool:
    """Every operator's every key holds (IAM ANDs them; a key's values are ORed)."""
    for operator, keys in condition.items():
        qualifier, _, base = operator.rpartition(":")
        negated = base in _NEGATED
        matcher = _MATCHERS.get(_NEGATED.get(base, base))
        if matcher is None or qualifier not in ("", "ForAllValues", "ForAnyValue"):
            raise ValueError(f"condition operator {operator} is not understood by this evaluator")
        for key, patterns in keys.items():
            listed = [str(pattern) for pattern in _listed(patterns)]
            values = request.values(key)

            def matches(value: str, listed: list[str] = listed, matcher: Any = matcher) -> bool:
                return any(matcher(pattern, value) for pattern in listed)

            if qualifier == "ForAllValues":
                held = all(matches(value) != negated for value in values)
            elif qualifier == "ForAnyValue":
                held = any(matches(value) != negated for value in values)
            elif negated:  # a missing key matches a negated operator
                held = not any(matches(value) for value in values)
            else:
                held = any(matches(value) for value in values)
            if not held:
                return False
    return True


def _covers(statement: Mapping[str, Any], element: str, value: str, *, ignore_case: bool) -> bool:
    if element in statement:
        return any(wildcard_match(str(p), value, ignore_case=ignore_case) for p in _listed(statement[element]))
    negative = f"Not{element}"
    if negative in statement:
        return not any(wildcard_match(str(p), value, ignore_case=ignore_case) for p in _listed(statement[negative]))
    return False


def _principal_match(statement: Mapping[str, Any], request: Request) -> Literal["itself", "account", "no"]:
    """Whether a resource policy statement names the principal itself, its whole account, or neither."""
    principal = statement.get("Principal")
    if principal == "*":
        return "itself"
    if not isinstance(principal, Mapping):
        return "no"
    for arn in _listed(principal.get("AWS", [])):
        if arn in ("*", request.principal):
            return "itself"
        if arn in (request.account, f"arn:aws:iam::{request.account}:root"):
            return "account"
    return "itself" if request.principal in _listed(principal.get("Service", [])) else "no"


def _applies(statement: Mapping[str, Any], request: Request) -> bool:
    return (
        _covers(statement, "Action", request.action, ignore_case=True)
        and _covers(statement, "Resource", request.resource, ignore_case=False)
        and condition_holds(statement.get("Condition", {}), request)
    )


def _statements(document: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    return [] if document is None else [s for s in _listed(document.get("Statement", [])) if isinstance(s, Mapping)]


def decide(
    request: Request,
    identity: Sequence[Mapping[str, Any]] = (),
    resource_policy: Mapping[str, Any] | None = None,
    *,
    key_policy: bool = False,
) -> Decision:
    """IAM's decision (see the module's docstring). ``key_policy``: ``resource_policy`` is a KMS key's."""
    own = [s for document in identity for s in _statements(document) if _applies(s, request)]
    resource = [
        (s, match)
        for s in _statements(resource_policy)
        if _applies(s, request) and (match := _principal_match(s, request)) != "no"
    ]
    if any(s.get("Effect") == "Deny" for s in own) or any(s.get("Effect") == "Deny" for s, _ in resource):
        return "denied"
    identity_allows = any(s.get("Effect") == "Allow" for s in own)
    grants = {match for s, match in resource if s.get("Effect") == "Allow"}
    if key_policy:
        allowed = "itself" in grants or ("account" in grants and identity_allows)
    else:
        allowed = identity_allows or "itself" in grants
    return "allowed" if allowed else "not-allowed"
