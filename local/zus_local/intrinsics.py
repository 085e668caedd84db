"""CloudFormation's intrinsic functions, evaluated the way CloudFormation would for a stack deployed with
a ``ResolveContext`` (region, account, stack name, parameter overrides), except that resources have
local stand-ins (``stand_ins.py``): ``!Ref Table`` is the local table's name, ``!GetAtt
RotationFunction.Arn`` a local ARN, and the context may pin any of them. Templates arrive in the long
form ``cfn_yaml`` reads them into. No sockets, no AWS: the unit tests exercise it directly.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Mapping
from typing import Any, Final

from zus_local.stand_ins import ResolveContext, StandIns, TemplateError

__all__ = ["NO_VALUE", "Resolver", "scalar_text"]


class _NoValue:
    """``AWS::NoValue``: the property it is assigned to disappears."""

    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE: Final = _NoValue()

_SUB_VARIABLE = re.compile(r"\$\{([^}]*)\}")


def scalar_text(value: Any) -> str:
    """A scalar as CloudFormation writes it into a string (``true``, ``3`` for 3.0, lists joined by commas)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list):
        return ",".join(scalar_text(item) for item in value)
    return str(value)


class Resolver:
    """Resolves CloudFormation intrinsics (long form, as ``cfn_yaml`` reads them) for one context."""

    def __init__(self, template: Mapping[str, Any], context: ResolveContext) -> None:
        self.template = template
        self.context = context
        self.resources: Mapping[str, Any] = template.get("Resources") or {}
        self.mappings: Mapping[str, Any] = template.get("Mappings") or {}
        self.conditions: Mapping[str, Any] = template.get("Conditions") or {}
        self.parameters = _parameters(template.get("Parameters") or {}, context.parameters)
        self.stand_ins = StandIns(self.resources, context, self.resolve_text)
        self._condition_values: dict[str, bool] = {}

    def condition(self, name: str) -> bool:
        if name not in self._condition_values:
            if name not in self.conditions:
                raise TemplateError(f"unknown condition {name}")
            value = self.resolve(self.conditions[name])
            if not isinstance(value, bool):
                raise TemplateError(f"condition {name} does not evaluate to true or false")
            self._condition_values[name] = value
        return self._condition_values[name]

    def resolve(self, value: Any) -> Any:
        """``value`` with every intrinsic replaced; ``NO_VALUE`` drops a key or list item."""
        if isinstance(value, dict):
            if len(value) == 1:
                [(key, argument)] = value.items()
                if key in _FUNCTIONS:
                    return _FUNCTIONS[key](self, argument)
                if key.startswith("Fn::"):
                    raise TemplateError(f"{key} is not supported by the local stack")
            resolved = {key: self.resolve(item) for key, item in value.items()}
            return {key: item for key, item in resolved.items() if item is not NO_VALUE}
        if isinstance(value, list):
            items = [self.resolve(item) for item in value]
            return [item for item in items if item is not NO_VALUE]
        return value

    def resolve_text(self, value: Any, where: str) -> str:
        """Resolve to one string, as an environment variable or a name must be."""
        resolved = self.resolve(value)
        if isinstance(resolved, bool):
            return "true" if resolved else "false"
        if isinstance(resolved, int | float | str):
            return scalar_text(resolved)
        raise TemplateError(f"{where} must resolve to a string, got {type(resolved).__name__}")

    def ref(self, name: str) -> Any:
        """A pseudo parameter, a template parameter, or a resource's stand-in."""
        try:
            return self.stand_ins.pseudo_parameter(name, NO_VALUE)
        except KeyError:
            pass
        if name in self.parameters:
            return self.parameters[name]
        return self.stand_ins.ref(name)

    def get_att(self, name: str, attribute: str) -> str:
        return self.stand_ins.get_att(name, attribute)

    def resource_name(self, name: str) -> str:
        return self.stand_ins.resource_name(name)

    def boolean(self, value: Any) -> bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, dict) and set(value) == {"Condition"}:
            return self.condition(self.string(value["Condition"], "Condition"))
        resolved = self.resolve(value)
        if not isinstance(resolved, bool):
            raise TemplateError(f"a condition must be true or false, got {resolved!r}")
        return resolved

    def string(self, value: Any, where: str) -> str:
        resolved = self.resolve(value)
        if not isinstance(resolved, str):
            raise TemplateError(f"{where} needs a string, got {resolved!r}")
        return resolved

    def list_of(self, value: Any, where: str) -> list[Any]:
        resolved = self.resolve(value)
        if not isinstance(resolved, list):
            raise TemplateError(f"{where} needs a list, got {resolved!r}")
        return resolved

    def pair(self, value: Any, where: str, shape: str) -> list[Any]:
        """A two-item list argument; ``shape`` says what the two items are, for the error."""
        parts = self.list_of(value, where)
        if len(parts) != 2:
            raise TemplateError(f"{where} takes {shape}")
        return parts


def _parameters(declared: Mapping[str, Any], overrides: Mapping[str, str]) -> dict[str, Any]:
    unknown = sorted(set(overrides) - set(declared))
    if unknown:
        raise TemplateError(f"unknown template parameter(s) {', '.join(unknown)}; known: {', '.join(declared)}")
    values: dict[str, Any] = {}
    for name, spec in declared.items():
        spec = spec or {}
        if name in overrides:
            raw = str(overrides[name])
        elif "Default" in spec:
            raw = scalar_text(spec["Default"])
        else:
            raise TemplateError(f"template parameter {name} has no default; pass --param {name}=VALUE")
        allowed = spec.get("AllowedValues")
        if allowed is not None and raw not in [scalar_text(value) for value in allowed]:
            shown = ", ".join(scalar_text(value) for value in allowed)
            raise TemplateError(f"template parameter {name}={raw!r} is not one of: {shown}")
        pattern = spec.get("AllowedPattern")
        if pattern and spec.get("Type", "String") == "String" and not re.fullmatch(pattern, raw):
            raise TemplateError(f"template parameter {name}={raw!r} does not match {pattern}")
        kind = str(spec.get("Type", "String"))
        values[name] = [item.strip() for item in raw.split(",")] if kind.startswith("CommaDelimitedList") else raw
    return values


# --- the functions ---------------------------------------------------------------------------------------


def _get_att(r: Resolver, argument: Any) -> Any:
    if isinstance(argument, str):
        argument = argument.split(".", 1)
    parts = r.list_of(argument, "Fn::GetAtt")
    if len(parts) != 2:
        raise TemplateError(f"Fn::GetAtt needs [resource, attribute], got {parts!r}")
    return r.get_att(r.string(parts[0], "Fn::GetAtt"), r.string(parts[1], "Fn::GetAtt"))


def _sub(r: Resolver, argument: Any) -> str:
    variables: Mapping[str, Any] = {}
    if isinstance(argument, list):
        if len(argument) != 2 or not isinstance(argument[1], dict):
            raise TemplateError("Fn::Sub takes a string or [string, {variables}]")
        text, variables = argument[0], argument[1]
    else:
        text = argument
    if not isinstance(text, str):
        raise TemplateError("Fn::Sub's template must be a string")

    def replace(match: re.Match[str]) -> str:
        expression = match.group(1)
        if expression.startswith("!"):
            return "${" + expression[1:] + "}"
        if expression in variables:
            return r.resolve_text(variables[expression], f"Fn::Sub variable {expression}")
        if "." in expression and not expression.startswith("AWS::"):
            resource, attribute = expression.split(".", 1)
            value = r.get_att(resource, attribute)
        else:
            value = r.ref(expression)
        return r.resolve_text(value, f"Fn::Sub ${{{expression}}}")

    return _SUB_VARIABLE.sub(replace, text)


def _join(r: Resolver, argument: Any) -> str:
    delimiter, items = r.pair(argument, "Fn::Join", "[delimiter, [values]]")
    return r.string(delimiter, "Fn::Join").join(
        r.resolve_text(item, "Fn::Join item") for item in r.list_of(items, "Fn::Join")
    )


def _select(r: Resolver, argument: Any) -> Any:
    index_value, items = r.pair(argument, "Fn::Select", "[index, [values]]")
    index = int(r.resolve_text(index_value, "Fn::Select index"))
    values = r.list_of(items, "Fn::Select")
    if not 0 <= index < len(values):
        raise TemplateError(f"Fn::Select index {index} is out of range")
    return values[index]


def _split(r: Resolver, argument: Any) -> list[str]:
    delimiter, text = r.pair(argument, "Fn::Split", "[delimiter, string]")
    return r.string(text, "Fn::Split").split(r.string(delimiter, "Fn::Split"))


def _if(r: Resolver, argument: Any) -> Any:
    if not isinstance(argument, list) or len(argument) != 3:
        raise TemplateError("Fn::If takes [condition, value if true, value if false]")
    name = r.string(argument[0], "Fn::If")
    return r.resolve(argument[1] if r.condition(name) else argument[2])


def _find_in_map(r: Resolver, argument: Any) -> Any:
    parts = r.list_of(argument, "Fn::FindInMap")
    if len(parts) < 3:
        raise TemplateError("Fn::FindInMap takes [map, top-level key, second-level key]")
    keys = [r.resolve_text(part, "Fn::FindInMap key") for part in parts[:3]]
    try:
        return r.mappings[keys[0]][keys[1]][keys[2]]
    except (KeyError, TypeError):
        raise TemplateError(f"Fn::FindInMap: no {'/'.join(keys)} in Mappings") from None


def _equals(r: Resolver, argument: Any) -> bool:
    first, second = r.pair(argument, "Fn::Equals", "two values")
    return scalar_text(first) == scalar_text(second)


def _not(r: Resolver, argument: Any) -> bool:
    parts = r.list_of(argument, "Fn::Not")
    if len(parts) != 1:
        raise TemplateError("Fn::Not takes one condition")
    return not r.boolean(parts[0])


_FUNCTIONS: dict[str, Callable[[Resolver, Any], Any]] = {
    "Ref": lambda r, name: r.ref(r.string(name, "Ref")),
    "Fn::GetAtt": _get_att,
    "Fn::Sub": _sub,
    "Fn::Join": _join,
    "Fn::Select": _select,
    "Fn::Split": _split,
    "Fn::If": _if,
    "Fn::FindInMap": _find_in_map,
    "Fn::Equals": _equals,
    "Fn::Not": _not,
    "Fn::And": lambda r, parts: all(r.boolean(part) for part in r.list_of(parts, "Fn::And")),
    "Fn::Or": lambda r, parts: any(r.boolean(part) for part in r.list_of(parts, "Fn::Or")),
    "Condition": lambda r, name: r.condition(r.string(name, "Condition")),
    "Fn::Base64": lambda r, value: base64.b64encode(r.string(value, "Fn::Base64").encode()).decode(),
    "Fn::GetAZs": lambda r, _: [f"{r.context.region}{zone}" for zone in "abc"],
    "Fn::ToJsonString": lambda r, value: json.dumps(r.resolve(value), separators=(",", ":")),
    "Fn::Length": lambda r, value: len(r.list_of(value, "Fn::Length")),
}
