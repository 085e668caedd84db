"""What the local stack runs, read from template.yaml: functions, HTTP API routes, schedules, queues and the
functions they feed (SQS event sources), environments.

``load_model(path, context)`` parses the SAM template (``cfn_yaml``) and resolves what each function
runs with (``intrinsics``) for the deployment ``context`` describes, resources standing in locally
(``stand_ins``). No sockets, no AWS: the unit tests exercise it directly.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from zus_local.cfn_yaml import load_template
from zus_local.event_sources import QueueSpec, QueueSubscription, Route, Schedule, parse_rate
from zus_local.intrinsics import NO_VALUE, Resolver
from zus_local.stand_ins import KMS_KEY, SERVERLESS_FUNCTION, SQS_QUEUE, TABLE, ResolveContext, TemplateError

__all__ = ["FunctionSpec", "TemplateModel", "invoked_by_secrets_manager", "load_model", "logical_ids"]

SECRETS_MANAGER_PRINCIPAL = "secretsmanager.amazonaws.com"
SERVERLESS_LAYER = "AWS::Serverless::LayerVersion"


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
    # The folders of the function's layers (in order): on Lambda their content is under /opt.
    layer_dirs: tuple[Path, ...] = ()

    @property
    def module_path(self) -> Path:
        """``app.lambda_handler`` → ``<code_dir>/app.py`` (``pkg.mod.fn`` → ``pkg/mod.py``)."""
        module, _, _ = self.handler.rpartition(".")
        return self.code_dir.joinpath(*module.split(".")).with_suffix(".py")

    @property
    def handler_name(self) -> str:
        return self.handler.rpartition(".")[2]


@dataclass(frozen=True)
class TemplateModel:
    functions: Mapping[str, FunctionSpec]
    routes: tuple[Route, ...]
    schedules: tuple[Schedule, ...]
    # Functions that Secrets Manager may invoke (an AWS::Lambda::Permission for its principal).
    rotation_functions: tuple[str, ...]
    tables: tuple[str, ...]
    kms_keys: tuple[str, ...]
    queues: Mapping[str, QueueSpec] = field(default_factory=dict)
    subscriptions: tuple[QueueSubscription, ...] = ()
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
        subscriptions: list[QueueSubscription] = []
        ignored: list[str] = []
        queues = _queues(resources, resolver)
        for logical_id, resource in resources.items():
            if not isinstance(resource, dict) or resource.get("Type") != SERVERLESS_FUNCTION:
                continue
            if "Condition" in resource and not resolver.condition(str(resource["Condition"])):
                continue
            own_properties = resource.get("Properties") or {}
            functions[logical_id] = _function_spec(
                logical_id, own_properties, globals_function, resolver, root, resources
            )
            for event_name, event in ((resource.get("Properties") or {}).get("Events") or {}).items():
                kind = str((event or {}).get("Type", ""))
                event_properties = (event or {}).get("Properties") or {}
                if kind == "HttpApi":
                    routes.append(_route(logical_id, event_name, event_properties, resolver))
                elif kind == "ScheduleV2":
                    schedule = _schedule(logical_id, event_name, event_properties, resolver)
                    if schedule is not None:
                        schedules.append(schedule)
                elif kind == "SQS":
                    subscription = _subscription(logical_id, event_name, event_properties, resolver, queues)
                    if subscription is not None:
                        subscriptions.append(subscription)
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
            rotation_functions=tuple(name for name in invoked_by_secrets_manager(template) if name in functions),
            tables=logical_ids(template, TABLE),
            kms_keys=logical_ids(template, KMS_KEY),
            queues=queues,
            subscriptions=tuple(subscriptions),
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
    resources: Mapping[str, Any],
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
        layer_dirs=_layer_dirs(properties.get("Layers") or [], resources, root),
    )
    if not spec.module_path.is_file():
        raise TemplateError(f"{where}: handler module {spec.module_path} does not exist")
    return spec


def _layer_dirs(layers: Any, resources: Mapping[str, Any], root: Path) -> tuple[Path, ...]:
    """The local folders of the layers a function names with ``!Ref`` to a LayerVersion of the template
    (a layer ARN from elsewhere has no local content)."""
    found: list[Path] = []
    for layer in layers if isinstance(layers, list) else []:
        ref = layer.get("Ref") if isinstance(layer, dict) else None
        resource = resources.get(ref) if isinstance(ref, str) else None
        content = ((resource or {}).get("Properties") or {}).get("ContentUri") if isinstance(resource, dict) else None
        if _type(resource) == SERVERLESS_LAYER and isinstance(content, str):
            found.append((root / content).resolve())
    return tuple(found)


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


def _queues(resources: Mapping[str, Any], resolver: Resolver) -> dict[str, QueueSpec]:
    """Every queue of the template, its redrive policy's target named by logical id."""
    found: dict[str, QueueSpec] = {}
    redrives: dict[str, Any] = {}
    for logical_id, resource in resources.items():
        if _type(resource) != SQS_QUEUE:
            continue
        if "Condition" in resource and not resolver.condition(str(resource["Condition"])):
            continue
        properties = resource.get("Properties") or {}
        where = f"queue {logical_id}"
        found[logical_id] = QueueSpec(
            logical_id=logical_id,
            name=resolver.resource_name(logical_id),
            arn=resolver.get_att(logical_id, "Arn"),
            visibility_timeout=int(
                resolver.resolve_text(properties.get("VisibilityTimeout", 30), f"{where} VisibilityTimeout")
            ),
            message_retention=int(
                resolver.resolve_text(
                    properties.get("MessageRetentionPeriod", 345600), f"{where} MessageRetentionPeriod"
                )
            ),
        )
        if "RedrivePolicy" in properties:
            redrives[logical_id] = resolver.resolve(properties["RedrivePolicy"])
    by_arn = {spec.arn: name for name, spec in found.items()}
    for logical_id, redrive in redrives.items():
        if isinstance(redrive, str):
            redrive = json.loads(redrive)
        target = by_arn.get(str(redrive.get("deadLetterTargetArn", "")))
        if target is None:
            raise TemplateError(f"queue {logical_id}: its RedrivePolicy names no queue of this template")
        found[logical_id] = replace(
            found[logical_id], dead_letter_queue=target, max_receive_count=int(redrive.get("maxReceiveCount", 0))
        )
    return found


def _subscription(
    function: str, event: str, properties: Mapping[str, Any], resolver: Resolver, queues: Mapping[str, QueueSpec]
) -> QueueSubscription | None:
    where = f"SQS event {function}.{event}"
    if not resolver.boolean(properties.get("Enabled", True)):
        return None
    arn = resolver.resolve_text(properties.get("Queue", ""), f"{where} Queue")
    queue = next((name for name, spec in queues.items() if spec.arn == arn), None)
    if queue is None:
        raise TemplateError(f"{where}: the local stack polls this template's queues only, not {arn}")
    scaling = resolver.resolve(properties.get("ScalingConfig") or {})
    responses = resolver.resolve(properties.get("FunctionResponseTypes") or [])
    return QueueSubscription(
        function=function,
        event=event,
        queue=queue,
        batch_size=int(resolver.resolve_text(properties.get("BatchSize", 10), f"{where} BatchSize")),
        # Lambda's default without a ScalingConfig is up to 1,000; locally the runtime's containers bound it.
        maximum_concurrency=int(scaling.get("MaximumConcurrency", 1000)),
        report_batch_item_failures="ReportBatchItemFailures" in responses,
    )


def logical_ids(template: Mapping[str, Any], resource_type: str) -> tuple[str, ...]:
    """The resources of one type, in template order."""
    resources: Mapping[str, Any] = template.get("Resources") or {}
    return tuple(name for name, resource in resources.items() if _type(resource) == resource_type)


def invoked_by_secrets_manager(template: Mapping[str, Any]) -> tuple[str, ...]:
    """The functions an ``AWS::Lambda::Permission`` lets Secrets Manager invoke: the rotation functions."""
    found: list[str] = []
    for logical_id in logical_ids(template, "AWS::Lambda::Permission"):
        properties = template["Resources"][logical_id].get("Properties") or {}
        if properties.get("Principal") != SECRETS_MANAGER_PRINCIPAL:
            continue
        target = properties.get("FunctionName")
        name: Any = None
        if isinstance(target, dict) and "Ref" in target:
            name = target["Ref"]
        elif isinstance(target, dict) and "Fn::GetAtt" in target:
            name = target["Fn::GetAtt"][0]
        if isinstance(name, str) and name not in found:
            found.append(name)
    return tuple(found)
