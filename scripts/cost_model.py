"""`make cost`: the monthly cost of N clients x M Zus API calls/s made by services, written to docs/cost.md.

Inputs, none of them typed in here: the prices (docs/prices.json, with their date and sources), the
stack (template.yaml: each function's memory, the alarms, the dashboard, tracing, the schedules' rates),
the metrics the code emits (their count is the custom metrics billed), and what the benchmarks measured
(docs/bench/tokens.json from ``make bench-tokens ARGS=--record``: vend handler durations by tier, the
tier mix, the bytes each call logs; docs/bench/scale.json from ``make bench-scale ARGS="--clients 10000
--record"``: the worker's and the dispatchers' durations, DynamoDB, Secrets Manager and SQS calls per
client's due work, DynamoDB's writes by the item written and those that move a due mark, item sizes,
token requests per client-hour); docs/bench/client.json from ``make
bench-client ARGS=--record``: the vend calls a service process using zus-m2m-client makes an hour. What
no benchmark measures is an assumption, named in ``ASSUMPTIONS`` and listed in the document with its
reason.

The load is Zus API calls a second, made by the services of the N clients. With zus-m2m-client, vend
calls follow from the client library's measured behaviour (a process asks once a token lifetime less its
refresh window, however many Zus API calls it makes); the direct-vend rows, where every Zus API call is a vend call,
are kept beside.

Side by side: (a) every service mints its own tokens (each instance reads the secret and requests a token
every hour) and (b) a caching proxy in front of the token endpoint (a small always-on container service
behind a load balancer). ``--check`` fails when docs/cost.md is not what the inputs give.
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "local"), str(ROOT / "layers" / "zus_m2m" / "python")]

from zus_local.cfn_yaml import load_template  # noqa: E402
from zus_local.event_sources import parse_rate  # noqa: E402
from zus_m2m.tokens.policy import VendingPolicy  # noqa: E402
from zus_m2m.values import TokenSource  # noqa: E402

PRICES = ROOT / "docs" / "prices.json"
TOKENS = ROOT / "docs" / "bench" / "tokens.json"
SCALE = ROOT / "docs" / "bench" / "scale.json"
CLIENT_BENCH = ROOT / "docs" / "bench" / "client.json"
TEMPLATE = ROOT / "template.yaml"
OUTPUT = ROOT / "docs" / "cost.md"
PACKAGE = ROOT / "layers" / "zus_m2m" / "python" / "zus_m2m"

SECONDS_PER_MONTH = 30 * 86400
HOURS_PER_MONTH = 730
CLIENTS = (100, 1_000, 10_000)
RATES = (1, 10, 100)
REFERENCE = (1_000, 10)

# What no benchmark measures: each value, and why it is what it is.
ASSUMPTIONS: Mapping[str, tuple[float, str]] = {
    "zus_access_token_bytes": (1000, "an Auth0 access token (the emulator's are shorter); it sits in each token item"),
    "platform_log_bytes": (300, "Lambda's own START, END and REPORT lines per invocation (with an X-Ray trace id)"),
    "worker_log_bytes_per_message": (450, "one INFO line per message (kind, client, outcome, seconds)"),
    "gsi_writes_per_due_change": (2, "a change of dueAt or dueKind is a delete and a put in the index"),
    "event_source_polls_per_minute": (15, "Lambda's SQS event source: 5 pollers, 20 s long polls, when idle"),
    "rotation_step_seconds": (0.2, "one of the rotation function's four steps (the local stack prints 6-50 ms)"),
    "mark_attempts_per_interval": (
        2,
        "in-use marks a client's containers attempt each mark_interval (one is written, conditionally, for the "
        "fleet; a container that has not read it since attempts too: a failed conditional write is billed)",
    ),
    "xray_reservoir_per_second": (1, "VendTracing Active: Lambda's sampling, the first request each second"),
    "xray_sample_rate": (0.05, "... and 5 % of the rest"),
    "instances_per_client": (
        4,
        "the service processes that use one app client: (a) each mints its own; with zus-m2m-client each "
        "asks the token route as the client benchmark measured",
    ),
    "proxy_tasks": (2, "(b): two tasks for availability, 0.25 vCPU and 0.5 GB each (arm64)"),
    "proxy_requests_per_task_second": (500, "(b): cached lookups one 0.25 vCPU task serves"),
    "request_bytes": (1500, "a token request and its answer (for the load balancer's processed bytes)"),
}


def assumption(name: str) -> float:
    return float(ASSUMPTIONS[name][0])


@dataclass(frozen=True)
class Inputs:
    prices: Mapping[str, float]
    price_table: Mapping[str, Any]
    date: str
    tokens: Mapping[str, Any]
    scale: Mapping[str, Any]
    client: Mapping[str, Any]
    memory_gb: Mapping[str, float]
    alarms: int
    dashboards: int
    custom_metrics: int
    schedules_per_month: Mapping[str, float]
    vend_tracing: str

    def price(self, name: str) -> float:
        return float(self.prices[name])


def emitted_metric_names(package: Path = PACKAGE) -> set[str]:
    """The metric names the code emits: the string literals a ``.count(...)`` or ``.duration(...)`` call's
    name argument can be, and the values of module-level ``*_METRICS`` mappings (names a count takes by lookup)."""
    names: set[str] = set()
    for path in sorted(package.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in _EMITTERS:
                if node.args:
                    names.update(_strings(node.args[0]))
            elif isinstance(node, ast.Assign | ast.AnnAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                named = any(isinstance(t, ast.Name) and t.id.endswith("_METRICS") for t in targets)
                if named and isinstance(node.value, ast.Dict):
                    names.update(
                        v.value for v in node.value.values if isinstance(v, ast.Constant) and isinstance(v.value, str)
                    )
    return {name for name in names if isinstance(name, str) and name[:1].isupper()}


_EMITTERS = ("count", "duration")


def _strings(node: ast.AST) -> set[str]:
    return {n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)}


def load_inputs() -> Inputs:
    table = json.loads(PRICES.read_text(encoding="utf-8"))
    template = load_template(TEMPLATE)
    resources = template["Resources"]
    functions = {name: r for name, r in resources.items() if r.get("Type") == "AWS::Serverless::Function"}
    default_architectures = template.get("Globals", {}).get("Function", {}).get("Architectures", ["x86_64"])
    for name, resource in functions.items():
        if resource["Properties"].get("Architectures", default_architectures) != ["arm64"]:
            raise SystemExit(f"{name} does not run on arm64: the Lambda prices in {PRICES.name} are arm64's")
    memory = {name: float(resource["Properties"]["MemorySize"]) / 1024 for name, resource in functions.items()}
    schedules: dict[str, float] = {}
    for event in resources["ScheduledFunction"]["Properties"]["Events"].values():
        if event["Type"] == "ScheduleV2":
            job = json.loads(event["Properties"]["Input"])["job"]
            schedules[job] = SECONDS_PER_MONTH / parse_rate(event["Properties"]["ScheduleExpression"])
    return Inputs(
        prices={name: entry["value"] for name, entry in table["prices"].items()},
        price_table=table,
        date=table["date"],
        tokens=json.loads(TOKENS.read_text(encoding="utf-8")),
        scale=json.loads(SCALE.read_text(encoding="utf-8")),
        client=json.loads(CLIENT_BENCH.read_text(encoding="utf-8")),
        memory_gb=memory,
        alarms=sum(1 for r in resources.values() if r.get("Type") == "AWS::CloudWatch::Alarm"),
        dashboards=sum(1 for r in resources.values() if r.get("Type") == "AWS::CloudWatch::Dashboard"),
        custom_metrics=len(emitted_metric_names()) + len(_filter_metrics(resources)),
        schedules_per_month=schedules,
        vend_tracing=template["Parameters"]["VendTracing"]["Default"],
    )


# The values a metric filter's dimension takes, by its key: each is a metric billed of its own.
FILTER_DIMENSION_VALUES = {"status": ("429", "503"), "tier": get_args(TokenSource)}


def _filter_metrics(resources: Mapping[str, Any]) -> set[str]:
    """Metrics the template's log metric filters publish, one per value of their dimension."""
    found: set[str] = set()
    for resource in resources.values():
        if resource.get("Type") == "AWS::Logs::MetricFilter":
            for transformation in resource["Properties"]["MetricTransformations"]:
                variants: tuple[str, ...] = ("",)
                for dimension in transformation.get("Dimensions", []):
                    variants = FILTER_DIMENSION_VALUES[dimension["Key"]]
                found.update(f"{transformation['MetricName']}{variant}" for variant in variants)
    return found


def http_api(inputs: Inputs, requests: float) -> float:
    first = min(requests, 300e6)
    return first * inputs.price("http_api_request") + (requests - first) * inputs.price("http_api_request_over_300m")


def lambda_cost(inputs: Inputs, function: str, invocations: float, seconds_each: float) -> float:
    """Requests and duration of one function; ``seconds_each``: the mean billed duration (Lambda bills
    each invocation by the millisecond, rounded up)."""
    duration = invocations * seconds_each * inputs.memory_gb[function] * inputs.price("lambda_arm64_gb_second")
    return invocations * inputs.price("lambda_request") + duration


def kilobytes(size: float, unit: int = 1024) -> int:
    return max(1, math.ceil(size / unit))


def vend_billed_seconds(inputs: Inputs) -> float:
    """A vend call's mean billed duration: each tier's median as measured, rounded up to Lambda's
    millisecond, weighted by the tier's share of the calls."""
    hits = inputs.tokens["hits"]
    calls = sum(hits.values())
    tiers = {"memory": "memory_p50_ms", "table": "table_p50_ms", "lease-wait": "lease_wait_p50_ms", "zus": "zus_p50_ms"}
    billed_ms = sum(hits[tier] * math.ceil(inputs.tokens[figure] or 0.0) for tier, figure in tiers.items())
    return float(billed_ms) / float(calls) / 1000


def per_due(scale: Mapping[str, Any], job: str, figure: str, operation: str | None = None) -> float:
    """One client's due work of a job, from bench-scale's totals: ``figure`` (or one operation of it)
    per item the job found due."""
    phase = scale[job]
    value = phase[figure] if operation is None else phase[figure].get(operation, 0)
    return float(value) / max(1.0, float(phase["due_total"]))


def zus_m2m(inputs: Inputs, clients: int, rate: float) -> dict[str, dict[str, float]]:
    """The month's line items of this stack for ``clients`` clients and ``rate`` vend calls/s, in three
    groups: the vend path (grows with calls), scheduled work (grows with clients), and fixed."""
    scale, tokens = inputs.scale, inputs.tokens
    calls = rate * SECONDS_PER_MONTH
    in_use = clients * scale["clients_in_use"] / scale["clients"]
    sizes = scale["item_bytes"]
    token_item = sizes["token"] - sizes["access_token"] + assumption("zus_access_token_bytes")
    hits, total_hits = tokens["hits"], sum(tokens["hits"].values())
    table_share = (hits["table"] + hits["lease-wait"] + hits["zus"]) / total_hits
    refreshes = in_use * HOURS_PER_MONTH * scale["refresh_token_requests_per_client_hour"]
    checks = clients * SECONDS_PER_MONTH / scale["check_interval_seconds"]
    wru = inputs.price("dynamodb_write_request_unit")
    rru = inputs.price("dynamodb_read_request_unit")
    logs_gb = inputs.price("cloudwatch_logs_ingested_gb") / 1e9

    vend: dict[str, float] = {}
    vend["API Gateway (HTTP API) requests"] = http_api(inputs, calls)
    vend["Lambda: token vending"] = lambda_cost(inputs, "TokenVendingFunction", calls, vend_billed_seconds(inputs))
    interval = VendingPolicy().mark_interval
    marks = min(calls, in_use * SECONDS_PER_MONTH / interval * assumption("mark_attempts_per_interval"))
    # One strongly consistent GetItem of the token item (with the record's copy: at most the record's size).
    reads = calls * table_share * kilobytes(sizes["record"] + token_item, 4096)
    vend["DynamoDB: token item reads, use marks"] = reads * rru + marks * kilobytes(token_item) * wru
    vend["CloudWatch Logs: audit lines and metrics"] = (
        calls * (tokens["log_bytes_per_vend_call"] + assumption("platform_log_bytes")) * logs_gb
    )
    # VendTracing's default: PassThrough traces only what callers sampled (their traces, not counted here).
    traced = 0.0
    if inputs.vend_tracing == "Active":
        reservoir = SECONDS_PER_MONTH * assumption("xray_reservoir_per_second")
        traced = min(calls, reservoir) + max(0.0, calls - reservoir) * assumption("xray_sample_rate")
    vend[f"X-Ray traces (VendTracing: {inputs.vend_tracing})"] = traced * inputs.price("xray_trace_recorded")

    scheduled: dict[str, float] = {}
    jobs = {"pre_refresh": refreshes, "rotation_sweep": checks}
    worker_seconds = sum(count * scale[job]["worker_seconds_per_message"] for job, count in jobs.items())
    invocations = sum(
        count * scale[job]["worker_invocations"] / max(1, scale[job]["dispatched_total"]) for job, count in jobs.items()
    )
    scheduled["Lambda: worker"] = lambda_cost(inputs, "WorkerFunction", invocations, worker_seconds / invocations)
    runs = inputs.schedules_per_month
    # The repair job's run is a query like an idle pre-refresh run: counted at the pre-refresh run's mean.
    scheduled["Lambda: scheduled jobs"] = sum(
        lambda_cost(inputs, "ScheduledFunction", runs[job], scale[name]["dispatcher_seconds_mean"])
        for job, name in (
            ("pre-refresh", "pre_refresh"),
            ("rotation-sweep", "rotation_sweep"),
            ("rotation-repair", "pre_refresh"),
        )
    )
    scheduled["EventBridge Scheduler invocations"] = sum(runs.values()) * inputs.price("scheduler_invocation")
    # Each write is billed by the size of the item it writes; each that moves a due mark writes the index too.
    item_bytes = {"token": token_item, "record": sizes["record"], "budget": sizes["budget"]}
    dynamodb = 0.0
    for job, count in jobs.items():
        written = scale[job]["dynamodb_writes_by_item"]
        write_units = sum(
            per_due(scale, job, "dynamodb_writes_by_item", kind) * kilobytes(item_bytes[kind]) for kind in written
        )
        index_writes = per_due(scale, job, "due_index_changes") * assumption("gsi_writes_per_due_change")
        dynamodb += count * (scale[job]["items_read_per_due_item"] * rru + (write_units + index_writes) * wru)
    scheduled["DynamoDB: due index, claims, leases, budgets, tokens"] = dynamodb
    secret_reads = sum(
        count * per_due(scale, job, "secrets_manager_calls", "GetSecretValue") for job, count in jobs.items()
    )
    describes = checks * per_due(scale, "rotation_sweep", "secrets_manager_calls", "DescribeSecret")
    scheduled["Secrets Manager API calls"] = (secret_reads + describes) * inputs.price("secrets_manager_api_call")
    scheduled["KMS decrypts (secret reads)"] = secret_reads * inputs.price("kms_request")
    messages = refreshes + checks
    polls = SECONDS_PER_MONTH / 60 * assumption("event_source_polls_per_minute")
    scheduled["SQS requests (send, receive, delete, idle polls)"] = (
        messages / 10 + invocations * 2 + polls
    ) * inputs.price("sqs_request")
    scheduled["CloudWatch Logs: scheduled work"] = (
        messages * assumption("worker_log_bytes_per_message") + invocations * assumption("platform_log_bytes")
    ) * logs_gb
    # Each client rotates once a month (RotationIntervalDays 30): four steps of the rotation function.
    scheduled["Lambda: rotations"] = lambda_cost(
        inputs, "RotationFunction", 4 * clients, assumption("rotation_step_seconds")
    )

    fixed: dict[str, float] = {}
    fixed["Secrets Manager: secrets (clients and the bootstrap admin)"] = (clients + 1) * inputs.price(
        "secrets_manager_secret_month"
    )
    fixed["KMS: the stack's key"] = inputs.price("kms_key_month")
    stored_gb = clients * (token_item + sizes["record"] + sizes["budget"] + 2 * 100) / 1e9
    fixed["DynamoDB: storage and point-in-time recovery"] = stored_gb * (
        inputs.price("dynamodb_storage_gb_month") + inputs.price("dynamodb_pitr_gb_month")
    )
    fixed["CloudWatch: custom metrics, alarms, dashboard"] = (
        inputs.custom_metrics * inputs.price("cloudwatch_metric_month")
        + inputs.alarms * inputs.price("cloudwatch_alarm_month")
        + inputs.dashboards * inputs.price("cloudwatch_dashboard_month")
    )
    return {"vend path": vend, "scheduled work": scheduled, "fixed": fixed}


def vend_rate_with_client(inputs: Inputs, clients: int, zus_rate: float) -> float:
    """Vend calls a second when the services making ``zus_rate`` Zus API calls a second use zus-m2m-client:
    each process asks the token route as often as the client benchmark measured, never more than it calls."""
    processes = clients * assumption("instances_per_client")
    return min(zus_rate, processes * float(inputs.client["vend_calls_per_process_hour"]) / 3600)


def total(groups: Mapping[str, Mapping[str, float]]) -> float:
    return sum(sum(items.values()) for items in groups.values())


def every_service_mints(inputs: Inputs, clients: int, rate: float) -> dict[str, float]:
    """(a): each of a client's service instances reads the secret and requests a token every hour."""
    instances = clients * assumption("instances_per_client")
    reads = instances * HOURS_PER_MONTH
    return {
        "Secrets Manager: secrets": clients * inputs.price("secrets_manager_secret_month"),
        "Secrets Manager API calls (each instance, hourly)": reads * inputs.price("secrets_manager_api_call"),
        "KMS: key and decrypts": inputs.price("kms_key_month") + reads * inputs.price("kms_request"),
    }


def caching_proxy(inputs: Inputs, clients: int, rate: float) -> dict[str, float]:
    """(b): an always-on container service behind an internal load balancer, holding the secrets and one
    token per client, logging an audit line per call like this stack."""
    tasks = max(assumption("proxy_tasks"), math.ceil(rate / assumption("proxy_requests_per_task_second")))
    task_hour = 0.25 * inputs.price("fargate_arm64_vcpu_hour") + 0.5 * inputs.price("fargate_arm64_gb_hour")
    processed_gb_hour = rate * 3600 * assumption("request_bytes") / 1e9
    lcu = max(rate / 25, processed_gb_hour)  # new connections (25 a second an LCU) or bytes (1 GB an hour)
    reads = clients * HOURS_PER_MONTH
    calls = rate * SECONDS_PER_MONTH
    return {
        "Fargate tasks (arm64)": tasks * task_hour * HOURS_PER_MONTH,
        "Application Load Balancer": HOURS_PER_MONTH * (inputs.price("alb_hour") + lcu * inputs.price("alb_lcu_hour")),
        "Secrets Manager: secrets and hourly reads": clients * inputs.price("secrets_manager_secret_month")
        + reads * inputs.price("secrets_manager_api_call"),
        "KMS: key and decrypts": inputs.price("kms_key_month") + reads * inputs.price("kms_request"),
        "CloudWatch Logs: audit lines": calls
        * inputs.tokens["log_bytes_per_vend_call"]
        / 1e9
        * inputs.price("cloudwatch_logs_ingested_gb"),
    }


# Zus answers 429 past this many token requests an hour for one app client (docs/contract.md).
ZUS_TOKEN_LIMIT_PER_HOUR = 200


def _against_cheapest(
    groups: Mapping[str, Mapping[str, float]], ours: float, minting: float, proxy: float, instances: float
) -> str:
    """Whether zus-m2m is the cheapest option under Zus's limit; if not, by how much, and the lines of
    zus-m2m that make the difference (the secrets, the same in every option, left out)."""
    others = {"(b)": proxy}
    if assumption("instances_per_client") <= ZUS_TOKEN_LIMIT_PER_HOUR:  # (a): each instance mints hourly
        others["(a)"] = minting
    name, cheapest = min(others.items(), key=lambda item: item[1])
    if ours <= cheapest:
        return "cheapest"
    lines = sorted(
        ((line, value) for items in groups.values() for line, value in items.items() if "secrets (" not in line),
        key=lambda item: -item[1],
    )[:2]
    why = "; ".join(f"{line} {money(value)}" for line, value in lines)
    return f"{money(ours - cheapest)} ({(ours - cheapest) / cheapest:.0%}) over {name}: {why}"


def money(value: float) -> str:
    return f"${value:,.2f}" if value >= 0.01 or value == 0 else "<$0.01"


def render(inputs: Inputs) -> str:
    scale, tokens = inputs.scale, inputs.tokens
    per_client_hour = scale["refresh_token_requests_per_client_hour"]
    per_process_hour = float(inputs.client["vend_calls_per_process_hour"])
    idle_share = scale["clients_idle"] / scale["clients"]
    lines = [
        "# What it costs",
        "",
        "<!-- Generated by `make cost` (scripts/cost_model.py); do not edit by hand: tests/infra/test_dashboard.py",
        "     fails when this file is not what the inputs give. -->",
        "",
        f"Monthly cost in US East (N. Virginia), list prices of {inputs.date} (docs/prices.json, sources",
        "there), without free tiers. A month is 30 days. Clients are in use but the benchmark's idle share",
        f"({idle_share:.0%}); the vend calls are spread over them. Inputs: template.yaml (memory sizes,",
        "alarms, dashboard, schedules, tracing), the metrics the code emits, and what the benchmarks measured:",
        f"docs/bench/tokens.json (vend durations by tier, {tokens['log_bytes_per_vend_call']:.0f} bytes logged",
        f"a call) and docs/bench/scale.json ({scale['clients']:,} clients: {per_client_hour:.2f} token requests a",
        "client-hour, the worker's and the scheduled jobs' durations, the calls and items one client's due work",
        f"costs) and docs/bench/client.json ({per_process_hour:.2f} vend calls a service process-hour with",
        "zus-m2m-client). Durations were measured on this project's 2-core machine against moto and the Zus emulator:",
        "slower than Lambda on Graviton against DynamoDB, so the Lambda lines are on the high side.",
        "",
        "## N clients x M Zus API calls/s",
        "",
        "M is the Zus API calls a second the N clients' services make. **zus-m2m** (the services use",
        f"zus-m2m-client, {assumption('instances_per_client'):g} processes a client): each process calls the token"
        f" route {per_process_hour:.2f} times an hour",
        "(`make bench-client`: once at start, then once a token lifetime less the client's refresh window, as",
        "its refresh-ahead asks for more than the held token has left and so gets its successor; however many",
        "Zus API calls it makes), so vend calls a second are the smaller of M and that; **direct vend**: every",
        "Zus API call is a vend call (a service that asks the token route each time, without the client). The",
        "last column compares zus-m2m with the cheapest other option that stays under Zus's limit of 200 token",
        "requests an hour per app client.",
        "",
        "| clients | Zus API calls/s | vend calls/s | zus-m2m | direct vend | (a) every service mints its own "
        "| (b) caching proxy | Zus token requests an hour: zus-m2m, (a), (b) | zus-m2m against the cheapest |",
        "|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    instances = assumption("instances_per_client")
    rows: list[tuple[float, float, float]] = []
    for clients in CLIENTS:
        for rate in RATES:
            vend_rate = vend_rate_with_client(inputs, clients, rate)
            groups = zus_m2m(inputs, clients, vend_rate)
            ours = total(groups)
            direct = total(zus_m2m(inputs, clients, rate))
            minting_lines = every_service_mints(inputs, clients, rate)
            minting = sum(minting_lines.values())
            proxy = sum(caching_proxy(inputs, clients, rate).values())
            rows.append((ours, minting, proxy))
            zus = f"{clients * per_client_hour:,.0f}, {clients * instances:,.0f}, {clients:,}"
            verdict = _against_cheapest(groups, ours, minting, proxy, clients * instances)
            lines.append(
                f"| {clients:,} | {rate} | {vend_rate:.2f} | {money(ours)} | {money(direct)} | {money(minting)} "
                f"| {money(proxy)} | {zus} | {verdict} |"
            )
    cheapest = [min(range(3), key=row.__getitem__) for row in rows]
    proxy_fixed = sum(caching_proxy(inputs, 0, 0).values())
    low, high = RATES[0], RATES[-1]
    proxy_per_million = (sum(caching_proxy(inputs, 0, high).values()) - sum(caching_proxy(inputs, 0, low).values())) / (
        (high - low) * SECONDS_PER_MONTH / 1e6
    )
    reference = zus_m2m(inputs, *REFERENCE)
    per_million = sum(reference["vend path"].values()) / (REFERENCE[1] * SECONDS_PER_MONTH / 1e6)
    first, second = sorted(reference["vend path"].items(), key=lambda item: -item[1])[:2]
    monitoring = (
        reference["fixed"]["CloudWatch: custom metrics, alarms, dashboard"]
        + reference["vend path"][f"X-Ray traces (VendTracing: {inputs.vend_tracing})"]
    )
    scheduled_10k = sum(zus_m2m(inputs, 10_000, 1)["scheduled work"].values())
    lines += [
        "",
        f"## zus-m2m, {REFERENCE[0]:,} clients x {REFERENCE[1]} vend calls/s (direct vend), line by line",
        "",
        "| group | line | per month |",
        "|---|---|---:|",
    ]
    for group, items in reference.items():
        lines += [f"| {group} | {name} | {money(value)} |" for name, value in items.items()]
        lines.append(f"| {group} | **subtotal** | **{money(sum(items.values()))}** |")
    lines += [
        f"| | **total** | **{money(total(reference))}** |",
        "",
        "## Reading the table",
        "",
        f"* **Per call**, the largest lines are {first[0]} ({money(first[1])}) and {second[0]}"
        f" ({money(second[1])}) at {REFERENCE[0]:,} x {REFERENCE[1]};",
        "  the vend call's own compute is a fraction of them (use marks are at most one conditional token item",
        "  write per client and five minutes for the fleet). **Per client, the secret dominates**: $0.40 a month",
        "  in every option.",
        f"* **A million vend calls** cost {money(per_million)} on the vend path (at {REFERENCE[1]} vend calls a second,"
        " direct vend: the",
        "  lines of the vend path group below, per million calls). With zus-m2m-client there are few: a process",
        f"  asks {per_process_hour:.2f} times an hour, whatever its Zus API calls.",
        "* **Scheduled work grows with clients, not calls**, and stays small: "
        f"{money(scheduled_10k)} a month for 10,000 clients",
        "  (the worker, the scheduled jobs, their DynamoDB writes, Secrets Manager reads, SQS and logs).",
        f"* **(a) every service mints its own token** is the cheapest in {cheapest.count(1)} of the {len(rows)} rows"
        " (no API in",
        "  front; it pays per instance: each reads the secret every hour) and costs most in everything else: each",
        "  instance holds the client secret (every instance's role can read it; a rotation must reach all of",
        "  them), nothing records who got a token, and token requests grow with instances, not clients: Zus",
        "  answers 429 past 200 token requests an hour for one app client, that is past about 200 instances of",
        "  one client's services minting hourly (fewer with restarts and autoscaling, which mint again).",
        f"* **(b) a caching proxy** costs {money(proxy_fixed)} a month before its first call (two always-on"
        f" containers and a",
        f"  load balancer) and {money(proxy_per_million)} a million calls after that; it is the cheapest in"
        f" {cheapest.count(2)} of the {len(rows)}",
        f"  rows and cheaper than zus-m2m in {sum(proxy < ours for ours, _, proxy in rows)}. Its column counts"
        " no monitoring (this stack's",
        f"  metrics, alarms, dashboard and traces are {money(monitoring)} of the {REFERENCE[0]:,} x {REFERENCE[1]}"
        " total), and it is a",
        "  service to build and run: availability across zones, who may get which token, the audit trail,",
        "  rotation and its repair, patching. At hundreds of calls a second, this stack's vend path is the",
        "  part to move behind a container (the scheduled work and rotation stay as they are).",
        "",
        "## Assumptions (what no benchmark measures)",
        "",
        "| assumption | value | why |",
        "|---|---:|---|",
        *(f"| {name} | {value:g} | {why} |" for name, (value, why) in ASSUMPTIONS.items()),
        "",
        "Not counted (the same in every option, or outside the service): data transfer, CloudWatch Logs storage",
        "(it depends on LogRetentionDays), the callers' own compute, Zus.",
        "",
        f"## Prices ({inputs.date})",
        "",
        "| price | value | unit |",
        "|---|---:|---|",
        *(
            f"| {name} | {entry['value']:g} | [{entry['unit']}]({entry['source']}) |"
            for name, entry in inputs.price_table["prices"].items()
        ),
        "",
    ]
    return "\n".join(lines)


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if docs/cost.md is not what the inputs give")
    args = parser.parse_args(list(argv) if argv is not None else None)
    document = render(load_inputs())
    if args.check:
        if OUTPUT.read_text(encoding="utf-8") != document:
            print("docs/cost.md is out of date: run `make cost`", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(document, encoding="utf-8")
    print(f"wrote {OUTPUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
