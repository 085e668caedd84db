"""The dashboard in template.yaml shows what operators watch, and only metrics that exist: each one is a
metric the code emits (Powertools, namespace ZusM2M, dimension service=zus-m2m), one a metric filter of the
template publishes, or an AWS metric of a resource of this stack. The alarms each have a runbook section in
docs/operations.md. The cost table is what its inputs give (docs/cost.md, ``make cost``)."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from infra_support import ROOT, resources_of_type

OPERATIONS = ROOT / "docs" / "operations.md"
SERVICE_DIMENSION = ["service", "zus-m2m"]
# The AWS metrics a dashboard may show, by namespace: (dimension name, resource types it names).
AWS_METRICS = {
    "AWS/SQS": (
        {
            "ApproximateNumberOfMessagesVisible",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateAgeOfOldestMessage",
            "NumberOfMessagesSent",
            "NumberOfMessagesDeleted",
        },
        "QueueName",
        {"AWS::SQS::Queue"},
    ),
    "AWS/Lambda": ({"Duration", "Errors", "Throttles", "Invocations", "ConcurrentExecutions"}, "FunctionName", None),
    "AWS/ApiGateway": ({"Count", "4xx", "5xx", "Latency", "IntegrationLatency"}, "ApiId", {"AWS::Serverless::HttpApi"}),
}


def load_cost_model() -> ModuleType:
    path = ROOT / "scripts" / "cost_model.py"
    spec = importlib.util.spec_from_file_location("cost_model", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


COST_MODEL = load_cost_model()


def dashboard(template: dict[str, Any]) -> dict[str, Any]:
    """The dashboard's body, ``${Name}`` and ``${Name.Attribute}`` left as ``<Name>``/``<Name.Attribute>``
    (the region and the budget parameter as deployed by default)."""
    [resource] = resources_of_type(template, "AWS::CloudWatch::Dashboard").values()
    body = resource["Properties"]["DashboardBody"]["Fn::Sub"]
    budget = str(template["Parameters"]["TokenBudgetPerHour"]["Default"])
    body = body.replace("${AWS::Region}", "us-east-1").replace("${TokenBudgetPerHour}", budget)
    return dict(json.loads(re.sub(r"\$\{([A-Za-z0-9.]+)\}", r"<\1>", body)))


def shown(template: dict[str, Any]) -> list[tuple[str, str, list[str], dict[str, Any]]]:
    """Every metric of every widget: namespace, name, dimensions (name, value, ...), options."""
    found = []
    for widget in dashboard(template)["widgets"]:
        for entry in widget["properties"].get("metrics", []):
            options = entry[-1] if isinstance(entry[-1], dict) else {}
            values = [value for value in entry if not isinstance(value, dict)]
            found.append((values[0], values[1], values[2:], options))
    return found


def published_by_filters(template: dict[str, Any]) -> dict[str, set[str]]:
    """Metric filters' metrics (namespace ZusM2M) and their dimension names."""
    published: dict[str, set[str]] = {}
    for metric_filter in resources_of_type(template, "AWS::Logs::MetricFilter").values():
        for transformation in metric_filter["Properties"]["MetricTransformations"]:
            assert transformation["MetricNamespace"] == "ZusM2M"
            keys = {dimension["Key"] for dimension in transformation.get("Dimensions", [])}
            published.setdefault(transformation["MetricName"], set()).update(keys)
    return published


def test_every_metric_the_dashboard_shows_is_one_the_stack_emits(template: dict[str, Any]) -> None:
    emitted = COST_MODEL.emitted_metric_names()
    filters = published_by_filters(template)
    resources = template["Resources"]
    problems = []
    for namespace, name, dimensions, _ in shown(template):
        where = f"{namespace} {name} {dimensions}"
        if namespace == "ZusM2M":
            if name in filters:
                if dimensions[::2] != sorted(filters[name]):
                    problems.append(f"{where}: the metric filter publishes dimensions {sorted(filters[name])}")
                for key, value in zip(dimensions[::2], dimensions[1::2], strict=True):
                    if value not in COST_MODEL.FILTER_DIMENSION_VALUES[key]:
                        problems.append(f"{where}: no line gives its dimension {key} the value {value}")
            elif name not in emitted:
                problems.append(f"{where}: no code counts it and no metric filter publishes it")
            elif dimensions != SERVICE_DIMENSION:
                problems.append(f"{where}: the code's metrics have the dimension service=zus-m2m")
        elif namespace in AWS_METRICS:
            names, dimension, types = AWS_METRICS[namespace]
            target = re.fullmatch(r"<([A-Za-z0-9]+)(\.QueueName)?>", dimensions[1]) if len(dimensions) == 2 else None
            resource = resources.get(target.group(1)) if target else None
            expected_types = types or {"AWS::Serverless::Function"}
            if name not in names or dimensions[0] != dimension or resource is None:
                problems.append(f"{where}: not an AWS metric of a resource of this stack")
            elif resource["Type"] not in expected_types:
                problems.append(f"{where}: {target.group(1) if target else '?'} is a {resource['Type']}")
        else:
            problems.append(f"{where}: namespace {namespace} is neither the service's nor an AWS one it uses")
    assert not problems, "\n".join(problems)


def test_the_dashboard_shows_what_operators_watch(template: dict[str, Any]) -> None:
    metrics = shown(template)
    names = {name for _, name, _, _ in metrics}
    # vend calls by tier; upstream requests and the budget; 429 and 503 answers; rotation outcomes
    by_dimension = {(name, dims[1]) for _, name, dims, _ in metrics if dims}
    assert "TokenMiss" in names
    assert {("TokensServed", "memory"), ("TokensServed", "table")} <= by_dimension
    assert {"UpstreamTokenRequest", "BudgetUsed"} <= names
    assert {("ProblemAnswers", "429"), ("ProblemAnswers", "503")} <= by_dimension
    assert {"RotationStarted", "RotationRepaired", "SecretRecoveryStarted", "RotationFailed"} <= names
    # the work queue's depth and age, its dead letters
    queues = {(name, dims[1]) for namespace, name, dims, _ in metrics if namespace == "AWS/SQS"}
    assert {
        ("ApproximateNumberOfMessagesVisible", "<WorkQueue.QueueName>"),
        ("ApproximateAgeOfOldestMessage", "<WorkQueue.QueueName>"),
        ("ApproximateNumberOfMessagesVisible", "<WorkDeadLetterQueue.QueueName>"),
    } <= queues
    # latency p50 and p99
    latency = {(name, options.get("stat")) for _, name, _, options in metrics if name in ("Latency", "Duration")}
    assert {("Latency", "p50"), ("Latency", "p99")} <= latency
    # the budget line is the stack's own parameter
    budget = template["Parameters"]["TokenBudgetPerHour"]["Default"]
    annotations = [
        line["value"]
        for widget in dashboard(template)["widgets"]
        for line in widget["properties"].get("annotations", {}).get("horizontal", [])
    ]
    assert budget in annotations


# --- the runbook ----------------------------------------------------------------------------------------------


def sections(text: str) -> dict[str, str]:
    """docs/operations.md's ``## `Name` `` sections, by name."""
    parts = re.split(r"^## `([A-Za-z0-9]+)`.*$", text, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_every_alarm_has_a_runbook_section_saying_what_it_means_how_to_confirm_and_what_to_do(
    template: dict[str, Any],
) -> None:
    text = OPERATIONS.read_text(encoding="utf-8")
    found = sections(text)
    alarms = set(resources_of_type(template, "AWS::CloudWatch::Alarm"))
    assert alarms <= set(found), f"docs/operations.md has no section for {sorted(alarms - set(found))}"
    assert set(found) <= alarms, (
        f"docs/operations.md has sections for alarms the stack lacks: {sorted(set(found) - alarms)}"
    )
    for alarm, section in found.items():
        for part in ("**What it means.**", "**How to confirm.**", "**What to do.**"):
            assert part in section, f"{alarm}: no {part}"
        assert "```" in section, f"{alarm}: no query or command to confirm it with"


@pytest.mark.parametrize(
    "situation",
    [
        "lost or revoked admin secret",
        "stuck rotation",
        "client at its budget",
        "Zus outage",
        "dead-lettered work",
    ],
)
def test_the_runbook_covers_the_situations_operators_meet(situation: str) -> None:
    headings = re.findall(r"^#{2,3} (.*)$", OPERATIONS.read_text(encoding="utf-8"), flags=re.MULTILINE)
    assert any(situation.lower() in heading.lower() for heading in headings), situation


# --- the cost table -------------------------------------------------------------------------------------------


def test_the_cost_table_is_what_its_inputs_give() -> None:
    assert COST_MODEL.main(["--check"]) == 0, "docs/cost.md is out of date: run `make cost`"


def test_every_price_has_a_date_a_unit_and_a_source() -> None:
    table = json.loads((ROOT / "docs" / "prices.json").read_text(encoding="utf-8"))
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", table["date"])
    for name, entry in table["prices"].items():
        assert entry["value"] > 0, name
        assert entry["unit"], name
        assert entry["source"].startswith("https://aws.amazon.com/"), name
    used = set(re.findall(r'price\("([a-z0-9_]+)"\)', (ROOT / "scripts" / "cost_model.py").read_text()))
    assert used <= set(table["prices"]), sorted(used - set(table["prices"]))


def test_the_code_counts_the_metrics_the_alarms_watch() -> None:
    emitted = COST_MODEL.emitted_metric_names()
    assert {"RotationFailed", "TokenBudgetExhausted", "InvalidClientExhausted", "SecretRecoveryStarted"} <= emitted
    assert "SecretChangedAtZus" in emitted
    assert {"TokensPreRefreshed", "HealthCheckTokenReused", "RefreshesDispatched"} <= emitted  # by lookup, not literal


def test_operations_is_linked_from_the_readme() -> None:
    assert "docs/operations.md" in (ROOT / "README.md").read_text(encoding="utf-8")
    assert Path(OPERATIONS).is_file()
