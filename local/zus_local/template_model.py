"""What the local stack runs, read from template.yaml: functions, HTTP API routes, schedules, environments.

``load_model(path, context)`` parses the SAM template (``cfn_yaml``) and resolves the CloudFormation
intrinsics a function's configuration uses, the way CloudFormation would for a stack deployed with
``context`` (region, account, stack name, parameter overrides), except that resources have local
stand-ins: ``!Ref Table`` is the local table's name, ``!GetAtt RotationFunction.Arn`` a local ARN, and
the local stack may pin any of them (``ResolveContext.refs`` / ``.attributes``), e.g. to the ARN of a
KMS key it created in moto. No sockets, no AWS: the unit tests exercise it directly.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from zus_local.cfn_yaml import load_template

__all__ = [
    "FunctionSpec",
    "ResolveContext",
    "Resolver",
    "Route",
    "Schedule",
    "TemplateError",
    "TemplateModel",
    "load_model",
    "parse_rate",
]

SERVERLESS_FUNCTION = "AWS::Serverless::Function"
LAMBDA_FUNCTION = "AWS::Lambda::Function"
FUNCTION_TYPES = (SERVERLESS_FUNCTION, LAMBDA_FUNCTION)
SECRETS_MANAGER_PRINCIPAL = "secretsmanager.amazonaws.com"


class TemplateError(ValueError):
    """The template asks for something the local stack cannot resolve or run (the message says what)."""


class _NoValue:
    """``AWS::NoValue``: the property it is assigned to disappears."""

    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE: Final = _NoValue()


@dataclass(frozen=True)
class ResolveContext:
    """The deployment the template is resolved for, and the local stand-ins of its resources."""

    region: str = "us-east-1"
    account_id: str = "123456789012"
    stack_name: str = "zus-m2m-local"
    partition: str = "aws"
    url_suffix: str = "amazonaws.com"
    # Parameter overrides (``--param Name=Value``); the rest take their template defaults.
    parameters: Mapping[str, str] = field(default_factory=dict)
    # ``!Ref Logical`` of a resource, pinned (e.g. {"Table": "zus-m2m-local"}).
    refs: Mapping[str, str] = field(default_factory=dict)
    # ``!GetAtt Logical.Attribute``, pinned (e.g. {"KmsKey.Arn": "arn:aws:kms:…"}).
    attributes: Mapping[str, str] = field(default_factory=dict)


# The property that names a resource, where CloudFormation lets the template choose the name.
_NAME_PROPERTIES = {
    SERVERLESS_FUNCTION: "FunctionName",
    LAMBDA_FUNCTION: "FunctionName",
    "AWS::DynamoDB::Table": "TableName",
    "AWS::Logs::LogGroup": "LogGroupName",
    "AWS::SQS::Queue": "QueueName",
    "AWS::SNS::Topic": "TopicName",
    "AWS::IAM::Role": "RoleName",
    "AWS::Serverless::LayerVersion": "LayerName",
}

_PSEUDO_PARAMETERS = (
    "AWS::Region",
    "AWS::AccountId",
    "AWS::StackName",
    "AWS::StackId",
    "AWS::Partition",
    "AWS::URLSuffix",
    "AWS::NoValue",
    "AWS::NotificationARNs",
)

_SUB_VARIABLE = re.compile(r"\$\{([^}]*)\}")


class Resolver:
    """Resolves CloudFormation intrinsics (long form, as ``cfn_yaml`` reads them) for one context."""

    def __init__(self, template: Mapping[str, Any], context: ResolveContext) -> None:
        self.template = template
        self.context = context
        self.resources: Mapping[str, Any] = template.get("Resources") or {}
        self.mappings: Mapping[str, Any] = template.get("Mappings") or {}
        self.conditions: Mapping[str, Any] = template.get("Conditions") or {}
        self.parameters = self._parameters(template.get("Parameters") or {}, context.parameters)
        self._condition_values: dict[str, bool] = {}
        self._intrinsics: dict[str, Callable[[Any], Any]] = {
            "Ref": self._ref,
            "Fn::GetAtt": self._get_att,
            "Fn::Sub": self._sub,
            "Fn::Join": self._join,
            "Fn::Select": self._select,
            "Fn::Split": self._split,
            "Fn::If": self._if,
            "Fn::FindInMap": self._find_in_map,
            "Fn::Equals": self._equals,
            "Fn::Not": self._not,
            "Fn::And": self._and,
            "Fn::Or": self._or,
            "Condition": lambda name: self.condition(self._string(name, "Condition")),
            "Fn::Base64": lambda value: base64.b64encode(self._string(value, "Fn::Base64").encode()).decode(),
            "Fn::GetAZs": lambda _: [f"{self.context.region}{zone}" for zone in "abc"],
            "Fn::ToJsonString": lambda value: json.dumps(self.resolve(value), separators=(",", ":")),
            "Fn::Length": lambda value: len(self._list(value, "Fn::Length")),
        }

    # --- parameters and conditions --------------------------------------------------------------

    @staticmethod
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
                raw = _scalar_text(spec["Default"])
            else:
                raise TemplateError(f"template parameter {name} has no default; pass --param {name}=VALUE")
            allowed = spec.get("AllowedValues")
            if allowed is not None and raw not in [_scalar_text(value) for value in allowed]:
                shown = ", ".join(_scalar_text(value) for value in allowed)
                raise TemplateError(f"template parameter {name}={raw!r} is not one of: {shown}")
            pattern = spec.get("AllowedPattern")
            if pattern and spec.get("Type", "String") == "String" and not re.fullmatch(pattern, raw):
                raise TemplateError(f"template parameter {name}={raw!r} does not match {pattern}")
            kind = str(spec.get("Type", "String"))
            values[name] = [item.strip() for item in raw.split(",")] if kind.startswith("CommaDelimitedList") else raw
        return values

    def condition(self, name: str) -> bool:
        if name not in self._condition_values:
            if name not in self.conditions:
                raise TemplateError(f"unknown condition {name}")
            value = self.resolve(self.conditions[name])
            if not isinstance(value, bool):
                raise TemplateError(f"condition {name} does not evaluate to true or false")
            self._condition_values[name] = value
        return self._condition_values[name]

    # --- resolution -------------------------------------------------------------------------------

    def resolve(self, value: Any) -> Any:
        """``value`` with every intrinsic replaced; ``NO_VALUE`` drops a key or list item."""
        if isinstance(value, dict):
            if len(value) == 1:
                [(key, argument)] = value.items()
                if key in self._intrinsics:
                    return self._intrinsics[key](argument)
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
            return _scalar_text(resolved)
        raise TemplateError(f"{where} must resolve to a string, got {type(resolved).__name__}")

    def ref(self, name: str) -> Any:
        context = self.context
        pseudo = {
            "AWS::Region": context.region,
            "AWS::AccountId": context.account_id,
            "AWS::StackName": context.stack_name,
            "AWS::Partition": context.partition,
            "AWS::URLSuffix": context.url_suffix,
            "AWS::StackId": (
                f"arn:{context.partition}:cloudformation:{context.region}:{context.account_id}:stack/"
                f"{context.stack_name}/{uuid.uuid5(uuid.NAMESPACE_URL, context.stack_name)}"
            ),
            "AWS::NoValue": NO_VALUE,
            "AWS::NotificationARNs": [],
        }
        if name in pseudo:
            return pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        if name in context.refs:
            return context.refs[name]
        kind = self._resource_type(name)
        resource_name = self.resource_name(name)
        region, account, partition = context.region, context.account_id, context.partition
        if kind == "AWS::SQS::Queue":
            return f"https://sqs.{region}.{context.url_suffix}/{account}/{resource_name}"
        if kind == "AWS::SNS::Topic":
            return f"arn:{partition}:sns:{region}:{account}:{resource_name}"
        if kind == "AWS::KMS::Key":
            return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{context.stack_name}/{name}"))
        if kind == "AWS::Serverless::LayerVersion":
            return f"arn:{partition}:lambda:{region}:{account}:layer:{resource_name}:1"
        return resource_name

    def get_att(self, name: str, attribute: str) -> Any:
        context = self.context
        pinned = context.attributes.get(f"{name}.{attribute}")
        if pinned is not None:
            return pinned
        kind = self._resource_type(name)
        region, account, partition = context.region, context.account_id, context.partition
        resource_name = self.resource_name(name)
        if attribute == "Arn":
            if kind in FUNCTION_TYPES:
                return f"arn:{partition}:lambda:{region}:{account}:function:{resource_name}"
            if kind == "AWS::DynamoDB::Table":
                return f"arn:{partition}:dynamodb:{region}:{account}:table/{self.ref(name)}"
            if kind == "AWS::KMS::Key":
                return f"arn:{partition}:kms:{region}:{account}:key/{self.ref(name)}"
            if kind == "AWS::SQS::Queue":
                return f"arn:{partition}:sqs:{region}:{account}:{resource_name}"
            if kind == "AWS::IAM::Role":
                return f"arn:{partition}:iam::{account}:role/{resource_name}"
            if kind == "AWS::Logs::LogGroup":
                return f"arn:{partition}:logs:{region}:{account}:log-group:{resource_name}:*"
            if kind == "AWS::SNS::Topic":
                return self.ref(name)
            service = kind.split("::")[1].lower() if kind.count("::") == 2 else "unknown"
            return f"arn:{partition}:{service}:{region}:{account}:{resource_name}"
        if attribute == "QueueName" and kind == "AWS::SQS::Queue":
            return resource_name
        if attribute == "QueueUrl" and kind == "AWS::SQS::Queue":
            return self.ref(name)
        if attribute == "KeyId" and kind == "AWS::KMS::Key":
            return self.ref(name)
        # An attribute nothing local stands in for: a recognisable placeholder.
        return f"{resource_name}.{attribute}"

    def resource_name(self, name: str) -> str:
        """The physical name of a resource: its name property, or ``<stack>-<LogicalId>``."""
        kind = self._resource_type(name)
        if name in self.context.refs and kind in ("AWS::DynamoDB::Table", *FUNCTION_TYPES):
            return self.context.refs[name]
        prop = _NAME_PROPERTIES.get(kind)
        properties = self.resources[name].get("Properties") or {}
        if prop and prop in properties:
            return self.resolve_text(properties[prop], f"{name}.{prop}")
        return f"{self.context.stack_name}-{name}"

    def _resource_type(self, name: str) -> str:
        resource = self.resources.get(name)
        if not isinstance(resource, dict):
            raise TemplateError(f"unknown parameter or resource {name!r}")
        return str(resource.get("Type", ""))

    # --- intrinsic functions ------------------------------------------------------------------------

    def _ref(self, argument: Any) -> Any:
        return self.ref(self._string(argument, "Ref"))

    def _get_att(self, argument: Any) -> Any:
        if isinstance(argument, str):
            argument = argument.split(".", 1)
        parts = self._list(argument, "Fn::GetAtt")
        if len(parts) != 2:
            raise TemplateError(f"Fn::GetAtt needs [resource, attribute], got {parts!r}")
        return self.get_att(self._string(parts[0], "Fn::GetAtt"), self._string(parts[1], "Fn::GetAtt"))

    def _sub(self, argument: Any) -> str:
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
                return self.resolve_text(variables[expression], f"Fn::Sub variable {expression}")
            if "." in expression and not expression.startswith("AWS::"):
                resource, attribute = expression.split(".", 1)
                value = self.get_att(resource, attribute)
            else:
                value = self.ref(expression)
            return self.resolve_text(value, f"Fn::Sub ${{{expression}}}")

        return _SUB_VARIABLE.sub(replace, text)

    def _join(self, argument: Any) -> str:
        parts = self._list(argument, "Fn::Join")
        if len(parts) != 2:
            raise TemplateError("Fn::Join takes [delimiter, [values]]")
        delimiter = self._string(parts[0], "Fn::Join")
        return delimiter.join(self.resolve_text(item, "Fn::Join item") for item in self._list(parts[1], "Fn::Join"))

    def _select(self, argument: Any) -> Any:
        parts = self._list(argument, "Fn::Select")
        if len(parts) != 2:
            raise TemplateError("Fn::Select takes [index, [values]]")
        index = int(self.resolve_text(parts[0], "Fn::Select index"))
        values = self._list(parts[1], "Fn::Select")
        if not 0 <= index < len(values):
            raise TemplateError(f"Fn::Select index {index} is out of range")
        return values[index]

    def _split(self, argument: Any) -> list[str]:
        parts = self._list(argument, "Fn::Split")
        if len(parts) != 2:
            raise TemplateError("Fn::Split takes [delimiter, string]")
        return self._string(parts[1], "Fn::Split").split(self._string(parts[0], "Fn::Split"))

    def _if(self, argument: Any) -> Any:
        if not isinstance(argument, list) or len(argument) != 3:
            raise TemplateError("Fn::If takes [condition, value if true, value if false]")
        name = self._string(argument[0], "Fn::If")
        return self.resolve(argument[1] if self.condition(name) else argument[2])

    def _find_in_map(self, argument: Any) -> Any:
        parts = self._list(argument, "Fn::FindInMap")
        if len(parts) < 3:
            raise TemplateError("Fn::FindInMap takes [map, top-level key, second-level key]")
        keys = [self.resolve_text(part, "Fn::FindInMap key") for part in parts[:3]]
        try:
            return self.mappings[keys[0]][keys[1]][keys[2]]
        except (KeyError, TypeError):
            raise TemplateError(f"Fn::FindInMap: no {'/'.join(keys)} in Mappings") from None

    def _equals(self, argument: Any) -> bool:
        parts = self._list(argument, "Fn::Equals")
        if len(parts) != 2:
            raise TemplateError("Fn::Equals takes two values")
        return _scalar_text(parts[0]) == _scalar_text(parts[1])

    def _not(self, argument: Any) -> bool:
        parts = self._list(argument, "Fn::Not")
        if len(parts) != 1:
            raise TemplateError("Fn::Not takes one condition")
        return not self._boolean(parts[0])

    def _and(self, argument: Any) -> bool:
        return all(self._boolean(part) for part in self._list(argument, "Fn::And"))

    def _or(self, argument: Any) -> bool:
        return any(self._boolean(part) for part in self._list(argument, "Fn::Or"))

    # --- helpers ---------------------------------------------------------------------------------------

    def _boolean(self, value: Any) -> bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, dict) and set(value) == {"Condition"}:
            return self.condition(self._string(value["Condition"], "Condition"))
        resolved = self.resolve(value)
        if not isinstance(resolved, bool):
            raise TemplateError(f"a condition must be true or false, got {resolved!r}")
        return resolved

    def _string(self, value: Any, where: str) -> str:
        resolved = self.resolve(value)
        if not isinstance(resolved, str):
            raise TemplateError(f"{where} needs a string, got {resolved!r}")
        return resolved

    def _list(self, value: Any, where: str) -> list[Any]:
        resolved = self.resolve(value)
        if not isinstance(resolved, list):
            raise TemplateError(f"{where} needs a list, got {resolved!r}")
        return resolved


def _scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list):
        return ",".join(_scalar_text(item) for item in value)
    return str(value)


# --- what runs ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FunctionSpec:
    """One function as Lambda would run it: code, handler, limits and resolved environment."""

    logical_id: str
    name: str
    arn: str
    code_dir: Path
    handler: str
    runtime: str
    timeout_seconds: float
    memory_mb: int
    log_group: str
    environment: Mapping[str, str]

    @property
    def module_path(self) -> Path:
        """``app.lambda_handler`` → ``<code_dir>/app.py`` (``pkg.mod.fn`` → ``pkg/mod.py``)."""
        module, _, _ = self.handler.rpartition(".")
        return self.code_dir.joinpath(*module.split(".")).with_suffix(".py")

    @property
    def handler_name(self) -> str:
        return self.handler.rpartition(".")[2]


_PARAMETER_SEGMENT = re.compile(r"^\{([A-Za-z0-9_.-]+)(\+?)\}$")


@dataclass(frozen=True)
class Route:
    """One ``HttpApi`` event: ``METHOD /path/{param}`` → function (``ANY`` and ``$default`` as in API Gateway)."""

    method: str
    path: str
    function: str
    event: str

    @property
    def route_key(self) -> str:
        return "$default" if self.path == "$default" else f"{self.method} {self.path}"

    def match(self, method: str, path: str) -> dict[str, str] | None:
        """The path parameters (still URL-encoded) if this route takes the request, else None."""
        if self.method not in ("ANY", method.upper()):
            return None
        if self.path == "$default":
            return {}
        pattern = self.path.strip("/").split("/") if self.path != "/" else []
        actual = path.strip("/").split("/") if path not in ("", "/") else []
        if path.endswith("/") and path != "/" and not self.path.endswith("/"):
            return None
        found: dict[str, str] = {}
        for index, segment in enumerate(pattern):
            parameter = _PARAMETER_SEGMENT.match(segment)
            if parameter and parameter.group(2):  # {proxy+}: one or more remaining segments
                rest = actual[index:]
                if not rest or not all(rest):
                    return None
                found[parameter.group(1)] = "/".join(rest)
                return found
            if index >= len(actual):
                return None
            if parameter:
                if not actual[index]:
                    return None
                found[parameter.group(1)] = actual[index]
            elif segment != actual[index]:
                return None
        return found if len(actual) == len(pattern) else None

    @property
    def specificity(self) -> tuple[int, int, int, int]:
        """API Gateway prefers a full match over a greedy one, literal segments over parameters, and
        an explicit method over ANY; ``$default`` comes last."""
        if self.path == "$default":
            return (0, 0, 0, 0)
        segments = [segment for segment in self.path.strip("/").split("/") if segment]
        greedy = any(segment.endswith("+}") for segment in segments)
        literal = sum(1 for segment in segments if not _PARAMETER_SEGMENT.match(segment))
        return (1, 0 if greedy else 1, literal, 0 if self.method == "ANY" else 1)


_RATE = re.compile(r"^rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)$")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


def parse_rate(expression: str, where: str = "schedule") -> float:
    """Seconds between runs of ``rate(N unit)``; other expressions are refused with the reason."""
    match = _RATE.match(expression.strip())
    if match is None:
        if expression.strip().startswith(("cron(", "at(")):
            raise TemplateError(
                f"{where}: {expression} is not supported by the local stack; it runs "
                "rate(N minute|minutes|hour|hours|day|days) schedules only"
            )
        raise TemplateError(f"{where}: cannot read the schedule expression {expression!r}")
    count = int(match.group(1))
    if count < 1:
        raise TemplateError(f"{where}: {expression} must name a positive interval")
    return float(count * _UNIT_SECONDS[match.group(2).rstrip("s")])


@dataclass(frozen=True)
class Schedule:
    """One ``ScheduleV2`` event: EventBridge Scheduler invoking ``function`` with ``input`` every interval."""

    name: str
    event: str
    function: str
    expression: str
    interval_seconds: float
    input: Any


@dataclass(frozen=True)
class TemplateModel:
    functions: Mapping[str, FunctionSpec]
    routes: tuple[Route, ...]
    schedules: tuple[Schedule, ...]
    # Functions that Secrets Manager may invoke (an AWS::Lambda::Permission for its principal).
    rotation_functions: tuple[str, ...]
    tables: tuple[str, ...]
    kms_keys: tuple[str, ...]
    # Events of kinds the local stack does not play, as "Function.Event (Type)".
    ignored_events: tuple[str, ...] = ()

    @classmethod
    def from_template(cls, template: Mapping[str, Any], context: ResolveContext, root: Path) -> TemplateModel:
        resolver = Resolver(template, context)
        resources: Mapping[str, Any] = template.get("Resources") or {}
        globals_function: Mapping[str, Any] = (template.get("Globals") or {}).get("Function") or {}
        functions: dict[str, FunctionSpec] = {}
        routes: list[Route] = []
        schedules: list[Schedule] = []
        ignored: list[str] = []
        for logical_id, resource in resources.items():
            if not isinstance(resource, dict) or resource.get("Type") != SERVERLESS_FUNCTION:
                continue
            if "Condition" in resource and not resolver.condition(str(resource["Condition"])):
                continue
            own_properties = resource.get("Properties") or {}
            functions[logical_id] = _function_spec(logical_id, own_properties, globals_function, resolver, root)
            for event_name, event in ((resource.get("Properties") or {}).get("Events") or {}).items():
                kind = str((event or {}).get("Type", ""))
                event_properties = (event or {}).get("Properties") or {}
                if kind == "HttpApi":
                    routes.append(_route(logical_id, event_name, event_properties, resolver))
                elif kind == "ScheduleV2":
                    schedule = _schedule(logical_id, event_name, event_properties, resolver)
                    if schedule is not None:
                        schedules.append(schedule)
                else:
                    ignored.append(f"{logical_id}.{event_name} ({kind})")
        seen: dict[str, str] = {}
        for route in routes:
            if route.route_key in seen:
                raise TemplateError(
                    f"route {route.route_key} is declared twice ({seen[route.route_key]}, {route.event})"
                )
            seen[route.route_key] = route.event
        return cls(
            functions=functions,
            routes=tuple(routes),
            schedules=tuple(schedules),
            rotation_functions=_rotation_functions(resources, functions),
            tables=tuple(name for name, res in resources.items() if _type(res) == "AWS::DynamoDB::Table"),
            kms_keys=tuple(name for name, res in resources.items() if _type(res) == "AWS::KMS::Key"),
            ignored_events=tuple(ignored),
        )

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        """The route API Gateway would pick for the request, with its path parameters."""
        best: tuple[Route, dict[str, str]] | None = None
        for route in self.routes:
            found = route.match(method, path)
            if found is not None and (best is None or route.specificity > best[0].specificity):
                best = (route, found)
        return best

    def function_by_arn(self, arn: str) -> FunctionSpec | None:
        """The function an ARN names (a qualified ARN, ``…:function:name:alias``, too)."""
        base = ":".join(arn.split(":")[:7])
        return next((spec for spec in self.functions.values() if spec.arn in (arn, base)), None)


def load_model(path: str | Path, context: ResolveContext | None = None) -> TemplateModel:
    """Read template.yaml at ``path`` into the model; code paths are relative to its folder."""
    template_path = Path(path).resolve()
    return TemplateModel.from_template(load_template(template_path), context or ResolveContext(), template_path.parent)


def _type(resource: Any) -> str:
    return str(resource.get("Type", "")) if isinstance(resource, dict) else ""


def _function_spec(
    logical_id: str,
    own_properties: Mapping[str, Any],
    globals_function: Mapping[str, Any],
    resolver: Resolver,
    root: Path,
) -> FunctionSpec:
    where = f"function {logical_id}"
    properties = {**globals_function, **own_properties}
    runtime = resolver.resolve_text(properties.get("Runtime", ""), f"{where} Runtime")
    if not runtime.startswith("python"):
        raise TemplateError(f"{where}: runtime {runtime or '(none)'} - the local stack runs Python functions only")
    if "InlineCode" in properties:
        raise TemplateError(f"{where}: InlineCode is not supported by the local stack; use CodeUri")
    code_uri = resolver.resolve(properties.get("CodeUri"))
    if not isinstance(code_uri, str) or not code_uri:
        raise TemplateError(f"{where}: CodeUri must be a local folder")
    handler = resolver.resolve_text(properties.get("Handler", ""), f"{where} Handler")
    if "." not in handler:
        raise TemplateError(f"{where}: Handler must look like module.function, got {handler!r}")
    shared = ((globals_function.get("Environment") or {}).get("Variables")) or {}
    own = ((own_properties.get("Environment") or {}).get("Variables")) or {}
    # SAM merges the function's variables over the Globals' (the function wins).
    merged = {**shared, **own}
    environment: dict[str, str] = {}
    for key, value in merged.items():
        resolved = resolver.resolve(value)
        if resolved is NO_VALUE:
            continue
        environment[str(key)] = resolver.resolve_text(resolved, f"{where} environment variable {key}")
    name = resolver.resource_name(logical_id)
    logging_config = resolver.resolve(properties.get("LoggingConfig") or {})
    log_group = str(logging_config.get("LogGroup") or f"/aws/lambda/{name}")
    code_dir = (root / code_uri).resolve()
    spec = FunctionSpec(
        logical_id=logical_id,
        name=name,
        arn=str(resolver.get_att(logical_id, "Arn")),
        code_dir=code_dir,
        handler=handler,
        runtime=runtime,
        timeout_seconds=float(resolver.resolve_text(properties.get("Timeout", 3), f"{where} Timeout")),
        memory_mb=int(resolver.resolve_text(properties.get("MemorySize", 128), f"{where} MemorySize")),
        log_group=log_group,
        environment=environment,
    )
    if not spec.module_path.is_file():
        raise TemplateError(f"{where}: handler module {spec.module_path} does not exist")
    return spec


def _route(function: str, event: str, properties: Mapping[str, Any], resolver: Resolver) -> Route:
    if not properties or ("Path" not in properties and "Method" not in properties):
        return Route(method="ANY", path="$default", function=function, event=event)
    path = resolver.resolve_text(properties.get("Path", ""), f"{function}.{event} Path")
    method = resolver.resolve_text(properties.get("Method", "ANY"), f"{function}.{event} Method").upper()
    if path != "$default" and not path.startswith("/"):
        raise TemplateError(f"{function}.{event}: Path must start with /, got {path!r}")
    if method == "X-AMAZON-APIGATEWAY-ANY-METHOD":
        method = "ANY"
    return Route(method=method, path=path, function=function, event=event)


def _schedule(function: str, event: str, properties: Mapping[str, Any], resolver: Resolver) -> Schedule | None:
    where = f"schedule {function}.{event}"
    if str(resolver.resolve(properties.get("State", "ENABLED"))).upper() == "DISABLED":
        return None
    expression = resolver.resolve_text(properties.get("ScheduleExpression", ""), f"{where} ScheduleExpression")
    interval = parse_rate(expression, where)
    raw_input = properties.get("Input")
    payload: Any = {}
    if raw_input is not None:
        text = resolver.resolve_text(raw_input, f"{where} Input")
        try:
            payload = json.loads(text)
        except ValueError as exc:
            raise TemplateError(f"{where}: Input is not JSON ({exc})") from None
    name = resolver.resolve_text(properties["Name"], f"{where} Name") if "Name" in properties else f"{function}{event}"
    return Schedule(
        name=name, event=event, function=function, expression=expression, interval_seconds=interval, input=payload
    )


def _rotation_functions(resources: Mapping[str, Any], functions: Mapping[str, FunctionSpec]) -> tuple[str, ...]:
    found: list[str] = []
    for resource in resources.values():
        if _type(resource) != "AWS::Lambda::Permission":
            continue
        properties = resource.get("Properties") or {}
        if properties.get("Principal") != SECRETS_MANAGER_PRINCIPAL:
            continue
        target = properties.get("FunctionName")
        name: Any = None
        if isinstance(target, dict) and "Ref" in target:
            name = target["Ref"]
        elif isinstance(target, dict) and "Fn::GetAtt" in target:
            name = target["Fn::GetAtt"][0]
        if isinstance(name, str) and name in functions and name not in found:
            found.append(name)
    return tuple(found)
