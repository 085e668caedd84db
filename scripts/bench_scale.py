"""`make bench-scale`: the scheduled work of N clients (default 1,000), measured on moto server and the Zus
emulator.

Seeds N managed clients without the provisioning API (moto serves one request at a time, and copies the
whole table for each of provisioning's transactions): an app client at Zus and its secret in moto, as
provisioning makes them, and the items provisioning and vending leave in the table (``client_items``:
aws/table.py's builders, written with BatchWriteItem), its record and, for the clients in use (all but
``--idle-fraction``), the token item (with the record's copy and a token minted with the secret's current
version) and the budget; the whole population in the steady state of a running stack: tokens expiring
uniformly over the next token lifetime, rotation checks due uniformly over the next check interval.
Then runs the scheduled jobs on a clock it controls: every cycle is one minute (the pre-refresh job's
rate), every fifth also runs the rotation sweep (its rate): each job through the real scheduled handler,
then the work queue in moto drained through the real worker handler, batch by batch, as Lambda's event
source would (one batch at a time here).

Per cycle and job it prints the items the job found due, the DynamoDB items read (GetItem items and the
ScannedCount of queries and scans), the Secrets Manager calls by operation, the Zus token requests
(``/_emulator/stats``), the wall time, and the longest dispatcher and worker invocations against half
their timeouts (template.yaml). Then Zus token requests per client-hour against the minimum: for the
clients in use, one token per token lifetime less the refresh margin; for the idle ones, one health check
per check interval. Its last line is one JSON object with every figure (also DynamoDB's writes by the kind
of item written, and those that move an item in the due index); ``--record`` also writes it to
docs/bench/scale.json, which ``make cost`` reads.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import signal
import sys
import time
import uuid
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import requests
from aws_lambda_powertools import Metrics
from bench_servers import bench_environment, servers

if TYPE_CHECKING:
    from zus_m2m.values import ClientRecord, SecretNaming
    from zus_m2m.zus.client import ZusClient

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "template.yaml"
RECORD = ROOT / "docs" / "bench" / "scale.json"
STACK = "zus-m2m-bench"
TABLE = STACK
STAGE = "bench"
ADMIN = "zus-m2m-admin"
ADMIN_SECRET = f"zus-m2m/{STAGE}/{ADMIN}"
ADMIN_PRINCIPAL = "arn:aws:iam::123456789012:role/platform-admin"
CYCLE_SECONDS = 60.0  # the pre-refresh job's rate(1 minute)
SWEEP_EVERY = 5  # the rotation sweep's rate(5 minutes), in cycles
ZUS_LIMIT_PER_HOUR = 200  # the emulator's token requests per app client and hour (its default)


class Clock:
    """The time every part of the service goes by here: moved on one cycle at a time."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class CountingMetrics(Metrics):
    """The service's metrics, counted here instead of published."""

    def __init__(self) -> None:
        super().__init__(namespace="ZusM2MBench", service="bench")
        self.counts: defaultdict[str, float] = defaultdict(float)

    def add_metric(self, name: str, unit: Any, value: float, resolution: Any = 60) -> None:
        self.counts[name] += value


@dataclass
class Counts:
    """What the service asked of AWS while counting: DynamoDB items read, calls by operation, DynamoDB
    writes by the kind of item written (its sort key: DynamoDB bills a write by that item's size), and the
    writes that change a due mark (each moves the item in the due index: index writes of their own)."""

    items_read: int = 0
    index_items_read: int = 0
    calls: Counter[str] = field(default_factory=Counter)
    writes: Counter[str] = field(default_factory=Counter)
    due_changes: int = 0

    def reset(self) -> None:
        self.items_read = self.index_items_read = self.due_changes = 0
        self.calls.clear()
        self.writes.clear()

    def note_write(self, write: dict[str, Any]) -> None:
        from zus_m2m.aws.table import DUE_AT, DUE_KIND

        self.writes[(write.get("Key") or write["Item"])["sk"]["S"]] += 1
        names = write.get("ExpressionAttributeNames", {})
        changed = {names.get(word, word) for word in re.findall(r"[#\w]+", write.get("UpdateExpression", ""))}
        changed |= set(write.get("Item", {}))
        self.due_changes += int(bool(changed & {DUE_AT, DUE_KIND}))

    def hook(self, client: Any) -> Any:
        def counted(model: Any, **_: Any) -> None:
            self.calls[f"{client.meta.service_model.service_name}:{model.name}"] += 1

        def note_index(params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
            context["index"] = bool(params.get("IndexName"))
            if model.name in ("PutItem", "UpdateItem", "DeleteItem"):
                self.note_write(params)
            elif model.name == "TransactWriteItems":
                for entry in params["TransactItems"]:
                    for operation, write in entry.items():
                        if operation != "ConditionCheck":
                            self.note_write(write)

        def read(parsed: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
            if model.name == "GetItem":
                self.items_read += int("Item" in parsed)
            elif model.name in ("Query", "Scan"):
                self.items_read += int(parsed.get("ScannedCount", 0))
                if context.get("index"):
                    self.index_items_read += int(parsed.get("ScannedCount", 0))

        client.meta.events.register("before-call.*.*", counted)
        client.meta.events.register("before-parameter-build.dynamodb.*", note_index)
        client.meta.events.register("after-call.dynamodb.*", read)
        return client

    def calls_of(self, service: str) -> dict[str, int]:
        return {name.split(":", 1)[1]: n for name, n in sorted(self.calls.items()) if name.startswith(f"{service}:")}


def environment(moto: str, zus: str, queue_url: str, margin: int) -> dict[str, str]:
    return {
        **bench_environment(moto, zus, TABLE, margin, "ERROR"),
        "WORK_QUEUE_URL": queue_url,
        "POWERTOOLS_METRICS_DISABLED": "true",
    }


@dataclass(frozen=True)
class Population:
    in_use: list[str]
    idle: list[str]
    # When each client in use needs its next token (its token's expiry less the margin).
    refresh_due: dict[str, float]


@dataclass(frozen=True)
class SteadyState:
    """The moment ``t0`` the population is seeded in (module docstring): the tokens of the clients in use
    expire uniformly over the next token lifetime (above the margin), the rotation checks fall due uniformly
    over the next check interval."""

    t0: float
    lifetime: int
    margin: int
    check_interval: float


def client_items(
    record: ClientRecord, secret_version: str, spread: tuple[float, float], in_use: bool, state: SteadyState
) -> tuple[list[dict[str, Any]], float | None]:
    """The items a client provisioned and (if ``in_use``) vended from has in the table, built with
    aws/table.py's builders and names (the integration test compares them with what provisioning and
    vending write); and when its token is due for the pre-refresh (None: idle).

    The record, with its rotation check due within the check interval. In use: the token item, with the
    record's copy, a token of the secret's current version minted by Zus within the last lifetime, and the
    due marks of the pre-refresh (requested at ``t0``); and the budget item that spent one request on it.
    Idle: the record alone (its last token's item and budget expired with their TTLs)."""
    from zus_m2m.aws.table import (
        ACTIVE,
        BUDGET,
        DUE_AT,
        DUE_KIND,
        HOUR,
        RECORD_APP_CLIENT,
        RECORD_CONSUMERS,
        RECORD_STATUS,
        TOKEN,
        active_record_item,
        client_key,
        number,
        string,
        string_list,
    )
    from zus_m2m.values import REFRESH, CachedToken

    items = [{**active_record_item(record), DUE_AT: number(state.t0 + spread[0] * state.check_interval)}]
    if not in_use:
        return items, None
    expires = state.t0 + state.margin + spread[1] * (state.lifetime - state.margin)
    token = CachedToken(
        "seeded", "Bearer", expires, record.app_client_id, secret_version=secret_version, lifetime=state.lifetime
    )
    minted = expires - state.lifetime
    due = expires - token.refresh_margin(state.margin)
    items.append(
        {
            **client_key(record.name, TOKEN),
            RECORD_STATUS: string(ACTIVE),
            RECORD_APP_CLIENT: string(record.app_client_id),
            RECORD_CONSUMERS: string_list(record.consumers),
            "accessToken": string(token.access_token),
            "tokenType": string(token.token_type),
            "expiresAt": number(token.expires_at),
            "tokenLifetime": number(token.lifetime),
            "appClientId": string(token.app_client_id),
            "secretVersion": string(token.secret_version),
            "ttl": number(int(token.expires_at) + 1),
            "lastRequestedAt": number(state.t0),
            DUE_KIND: string(REFRESH),
            DUE_AT: number(due),
        }
    )
    items.append(
        {
            **client_key(record.name, BUDGET),
            "requests": {"L": [number(minted)]},
            "version": number(1),
            "ttl": number(int(minted + HOUR) + 1),
            # What Zus's answer said of its own count: one of the emulator's 200 an hour spent.
            "zusRemaining": number(ZUS_LIMIT_PER_HOUR - 1),
            "zusResetAt": number(minted + HOUR),
            "zusSeenAt": number(minted),
        }
    )
    return items, due


def seed_clients(
    dynamodb: Any,
    secretsmanager: Any,
    table: str,
    naming: SecretNaming,
    zus_client: ZusClient,
    names: list[str],
    idle: set[str],
    state: SteadyState,
    threads: int,
) -> dict[str, float]:
    """``names`` provisioned as provisioning leaves them, fast: each client's app client made at Zus (the
    emulator) and its secret stored in Secrets Manager, ``threads`` at a time, as provisioning does; its
    items (``client_items``) written with BatchWriteItem instead of provisioning's transactions (moto copies
    the whole table per transaction: quadratic). Returns when each client in use is due for the pre-refresh."""
    from zus_m2m.aws.secrets import SecretsManagerStore
    from zus_m2m.values import ClientCredentials, ClientRecord

    admin_token = zus_client.request_token("local-admin", "local-admin-secret").access_token
    role = zus_client.find_role("Builder Admin", admin_token)
    store = SecretsManagerStore(secretsmanager)
    rng = random.Random(11)
    spread = {name: (rng.random(), rng.random()) for name in names}

    def one(name: str) -> tuple[list[dict[str, Any]], float | None]:
        created = zus_client.create_app_client(name, role.id, admin_token)
        version = str(uuid.uuid4())
        credentials = ClientCredentials(
            name, created.app_client.id, created.app_client.client_id, created.client_secret, role.id, role.name
        )
        arn = store.create(
            naming.secret_id(name), credentials, kms_key_id="", tags=naming.tags(name), idempotency_key=version
        )
        record = ClientRecord(
            name, created.app_client.id, created.app_client.client_id, role.id, role.name, arn, int(state.t0)
        )
        return client_items(record, version, spread[name], name not in idle, state)

    refresh_due: dict[str, float] = {}
    pending: list[dict[str, Any]] = []
    pool = ThreadPoolExecutor(max_workers=threads)
    try:
        for done, (name, (items, due)) in enumerate(zip(names, pool.map(one, names), strict=True), start=1):
            if due is not None:
                refresh_due[name] = due
            pending.extend(items)
            while len(pending) >= BATCH or (pending and done == len(names)):
                write_batch(dynamodb, table, pending[:BATCH])
                del pending[:BATCH]
            if done % max(1, len(names) // 10) == 0:
                print(f"  seeded {done}/{len(names)}", flush=True)
    finally:
        pool.shutdown(cancel_futures=True)  # stopped (SIGTERM, an error): nothing more is started
    return refresh_due


BATCH = 25  # BatchWriteItem's most items per request


def write_batch(dynamodb: Any, table: str, items: list[dict[str, Any]]) -> None:
    """``items`` put with BatchWriteItem, what DynamoDB left unprocessed sent again until none is left."""
    requests_ = {table: [{"PutRequest": {"Item": item}} for item in items]}
    while requests_:
        requests_ = dynamodb.batch_write_item(RequestItems=requests_).get("UnprocessedItems") or {}


def seed(args: argparse.Namespace, moto: str, zus: str, t0: float) -> tuple[Population, dict[str, str]]:
    """N clients, in the steady state described in the module docstring. Returns them and the queues."""
    from zus_local.aws_setup import create_queues, create_table, store_admin_secret
    from zus_local.template_model import load_model
    from zus_m2m.values import ROTATION, SecretNaming
    from zus_m2m.zus.client import ZusClient
    from zus_m2m.zus.endpoints import ZusEndpoints

    session = boto3.Session(region_name="us-east-1", aws_access_key_id="bench", aws_secret_access_key="bench")
    dynamodb, sqs = session.client("dynamodb", endpoint_url=moto), session.client("sqs", endpoint_url=moto)
    secretsmanager = session.client("secretsmanager", endpoint_url=moto)
    create_table(dynamodb, TABLE)
    model = load_model(TEMPLATE, template_context())
    # Visibility 1 s: a message a worker failed comes back within the cycle.
    queues = create_queues(sqs, model.queues, time_scale=model.queues["WorkQueue"].visibility_timeout)
    requests.post(f"{zus}/_emulator/config", json={"tokenLifetimeSeconds": args.lifetime}, timeout=5).raise_for_status()
    zus_client = ZusClient(ZusEndpoints.for_environment("sandbox", api_base=zus, auth_base=zus))
    admin_token = zus_client.request_token("local-admin", "local-admin-secret").access_token
    admin = next(c for c in zus_client.list_app_clients(admin_token) if c.client_id == "local-admin")
    store_admin_secret(
        secretsmanager,
        ADMIN_SECRET,
        {"name": ADMIN, "appClientId": admin.id, "clientId": "local-admin", "clientSecret": "local-admin-secret"},
    )
    names = [f"bench-{number:05d}" for number in range(args.clients)]
    idle = set(random.Random(7).sample(names, round(args.clients * args.idle_fraction)))
    refresh_due = seed_clients(
        dynamodb,
        secretsmanager,
        TABLE,
        SecretNaming("zus-m2m", STAGE, ADMIN, ADMIN_SECRET),
        zus_client,
        names,
        idle,
        SteadyState(t0, args.lifetime, args.margin, args.check_interval),
        args.seed_threads,
    )
    # Every record was written with its due marks: nothing to enlist (the backfill is done).
    dynamodb.put_item(
        TableName=TABLE, Item={"pk": {"S": "due-backfill"}, "sk": {"S": ROTATION}, "done": {"N": str(t0)}}
    )
    in_use = [name for name in names if name not in idle]
    return Population(in_use, sorted(idle), refresh_due), queues


def load_handler(folder: str, env: dict[str, str]) -> Any:
    """A fresh import of ``functions/<folder>/app.py`` with ``env``: what a new Lambda container runs."""
    import importlib.util

    os.environ.update(env)
    spec = importlib.util.spec_from_file_location(
        f"bench_{folder}_{time.monotonic_ns()}", ROOT / "functions" / folder / "app.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class Phase:
    """One job's run and the draining of what it handed out."""

    job: str
    cycle: int
    due: int = 0
    dispatched: int = 0
    items_read: int = 0
    index_items_read: int = 0
    secrets_manager_calls: dict[str, int] = field(default_factory=dict)
    dynamodb_calls: dict[str, int] = field(default_factory=dict)
    dynamodb_writes_by_item: dict[str, int] = field(default_factory=dict)
    due_index_changes: int = 0
    sqs_calls: dict[str, int] = field(default_factory=dict)
    zus_token_requests: int = 0
    wall_seconds: float = 0.0
    dispatcher_seconds: float = 0.0
    worker_invocations: int = 0
    max_worker_seconds: float = 0.0
    refused: int = 0
    work_failed: int = 0

    def line(self) -> str:
        sm = sum(self.secrets_manager_calls.values())
        return (
            f"{self.cycle:>5} {self.job:<15} {self.due:>6} {self.items_read:>8} {self.index_items_read:>7} {sm:>6} "
            f"{self.zus_token_requests:>5} {self.wall_seconds:>8.2f} {self.dispatcher_seconds:>9.3f} "
            f"{self.max_worker_seconds:>9.3f}"
        )


HEADER = (
    f"{'cycle':>5} {'job':<15} {'due':>6} {'read':>8} {'index':>7} {'SM':>6} {'Zus':>5} {'wall s':>8} "
    f"{'dispatch s':>9} {'worker s':>9}"
)


class Bench:
    def __init__(self, args: argparse.Namespace, moto: str, zus: str, queues: dict[str, str], clock: Clock) -> None:
        from zus_local.template_model import load_model
        from zus_m2m import wiring
        from zus_m2m.settings import Settings

        self.zus = zus
        self.clock = clock
        self.counts = Counts()
        self.metrics = CountingMetrics()
        env = environment(moto, zus, queues["WorkQueue"], args.margin)
        self.scheduled = load_handler("scheduled", env)
        self.worker = load_handler("worker", env)
        session = boto3.Session(region_name="us-east-1", aws_access_key_id="bench", aws_secret_access_key="bench")
        self.sqs = session.client("sqs", endpoint_url=moto)
        clients = {
            name: self.counts.hook(session.client(name, endpoint_url=moto))
            for name in ("dynamodb", "secretsmanager", "sqs")
        }
        container = wiring.Container(
            Settings.from_env(env),
            self.metrics,
            aws=wiring.AwsClients(**clients),
            clock=clock,
        )
        # The handlers' own objects, on the bench's clock and counted clients.
        self.scheduled.dispatch = container.work_dispatch()
        self.worker.work = container.worker()
        self.queue_url = queues["WorkQueue"]
        model = load_model(TEMPLATE, template_context())
        self.timeouts = {
            "dispatcher": model.functions["ScheduledFunction"].timeout_seconds,
            "worker": model.functions["WorkerFunction"].timeout_seconds,
        }
        self.queue_arn = model.queues["WorkQueue"].arn

    def tokens_issued(self) -> int:
        return int(requests.get(f"{self.zus}/_emulator/stats", timeout=10).json()["tokensIssued"])

    def run(self, job: str, cycle: int) -> Phase:
        from zus_local.lambda_context import LocalLambdaContext
        from zus_local.queue_poller import handled, sqs_event

        phase = Phase(job, cycle)
        self.counts.reset()
        failed_before = self.metrics.counts["WorkFailed"]
        tokens_before = self.tokens_issued()
        started = time.perf_counter()
        report = self.scheduled.lambda_handler(
            {"job": job}, LocalLambdaContext("ScheduledFunction", self.timeouts["dispatcher"])
        )["report"]
        phase.dispatcher_seconds = time.perf_counter() - started
        phase.due, phase.dispatched = report["due"], report["dispatched"]
        while True:
            messages = self.sqs.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=10, AttributeNames=["All"]
            ).get("Messages", [])
            if not messages:
                if not self._in_flight():
                    break
                time.sleep(0.2)  # a message a worker failed, back after its visibility timeout
                continue
            invoked = time.perf_counter()
            answer = self.worker.lambda_handler(
                sqs_event(messages, self.queue_arn, "us-east-1"),
                LocalLambdaContext("WorkerFunction", self.timeouts["worker"]),
            )
            phase.max_worker_seconds = max(phase.max_worker_seconds, time.perf_counter() - invoked)
            phase.worker_invocations += 1
            done = handled(messages, answer, report_failures=True)
            phase.refused += len(messages) - len(done)
            if done:
                entries = [{"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(done)]
                self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)
        phase.wall_seconds = time.perf_counter() - started
        phase.items_read = self.counts.items_read
        phase.index_items_read = self.counts.index_items_read
        phase.secrets_manager_calls = self.counts.calls_of("secretsmanager")
        phase.dynamodb_calls = self.counts.calls_of("dynamodb")
        phase.dynamodb_writes_by_item = dict(self.counts.writes)
        phase.due_index_changes = self.counts.due_changes
        phase.sqs_calls = self.counts.calls_of("sqs")
        phase.zus_token_requests = self.tokens_issued() - tokens_before
        phase.work_failed = int(self.metrics.counts["WorkFailed"] - failed_before)
        return phase

    def table_items(self) -> int:
        """The items in the table now (not counted as the service's reads)."""
        pages = self._reader().get_paginator("scan").paginate(TableName=TABLE, Select="COUNT")
        return sum(int(page["Count"]) for page in pages)

    def item_sizes(self, client: str) -> dict[str, int]:
        """DynamoDB's size of a client's items (token with the emulator's token, record, budget), in bytes."""
        dynamodb = self._reader()
        sizes = {}
        for kind in ("token", "record", "budget"):
            key = {"pk": {"S": f"client#{client}"}, "sk": {"S": kind}}
            item = dynamodb.get_item(TableName=TABLE, Key=key).get("Item", {})
            sizes[kind] = item_size(item)
            if kind == "token":
                sizes["access_token"] = len(item["accessToken"]["S"].encode())
        return sizes

    def _reader(self) -> Any:
        return boto3.client(
            "dynamodb",
            endpoint_url=self.sqs.meta.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
        )

    def _in_flight(self) -> bool:
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"]
        )
        return int(attributes["Attributes"]["ApproximateNumberOfMessagesNotVisible"]) > 0


def item_size(item: dict[str, Any]) -> int:
    """An item's size as DynamoDB bills it: each attribute's name and value (strings by their UTF-8
    bytes, numbers about one byte per two digits plus one, lists three bytes plus their elements)."""

    def value_size(value: dict[str, Any]) -> int:
        [(kind, content)] = value.items()
        if kind == "S":
            return len(content.encode())
        if kind == "N":
            return len(content.replace("-", "").replace(".", "")) // 2 + 1
        if kind == "L":
            return 3 + sum(1 + value_size(element) for element in content)
        if kind == "M":
            return 3 + sum(len(name.encode()) + 1 + value_size(element) for name, element in content.items())
        return 1

    return sum(len(name.encode()) + value_size(value) for name, value in item.items())


def template_context() -> Any:
    """template.yaml resolved for the bench's stack."""
    from zus_local.stand_ins import ResolveContext

    return ResolveContext(stack_name=STACK, parameters={"AdminPrincipals": ADMIN_PRINCIPAL}, refs={"Table": TABLE})


def main() -> None:
    # SIGTERM: stop like Ctrl-C, so that the servers this started are stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--idle-fraction", type=float, default=0.1, help="clients nobody uses (default 0.1)")
    parser.add_argument("--cycles", type=int, default=60, help="one-minute cycles to run (default 60: an hour)")
    parser.add_argument("--lifetime", type=int, default=3600, help="token lifetime at the emulator, seconds")
    parser.add_argument("--margin", type=int, default=300, help="refresh margin, seconds")
    parser.add_argument("--check-interval", type=float, default=3600.0, help="the rotation check interval, seconds")
    parser.add_argument("--seed-threads", type=int, default=4)
    parser.add_argument("--record", action="store_true", help=f"also write the JSON to {RECORD.relative_to(ROOT)}")
    args = parser.parse_args()
    os.environ.update(
        {key: value for key, value in environment("", "", "", args.margin).items() if key.startswith("AWS_") and value}
    )

    with servers() as (moto, zus):
        t0 = math.floor(time.time())
        clock = Clock(t0)
        print(f"seeding {args.clients} clients ({args.idle_fraction:.0%} idle) ...", flush=True)
        seeding = time.perf_counter()
        population, queues = seed(args, moto, zus, t0)
        seed_seconds = time.perf_counter() - seeding
        print(f"seeded in {seed_seconds:.1f} s", flush=True)
        bench = Bench(args, moto, zus, queues, clock)
        print(HEADER, flush=True)
        phases: list[Phase] = []
        for cycle in range(1, args.cycles + 1):
            clock.now = t0 + cycle * CYCLE_SECONDS
            jobs = ["pre-refresh", *(["rotation-sweep"] if cycle % SWEEP_EVERY == 0 else [])]
            for job in jobs:
                phases.append(bench.run(job, cycle))
                print(phases[-1].line(), flush=True)
        figures = summary(args, population, phases, bench.timeouts, seed_seconds)
        # What one run of the scan this replaces read, every minute: the whole table.
        figures["table_items"] = bench.table_items()
        # The client refreshed first: its token is one Zus (the emulator) minted, its budget spent once
        figures["item_bytes"] = bench.item_sizes(min(population.refresh_due, key=population.refresh_due.__getitem__))
        # Reported before the servers stop: nothing measured is lost to a slow shutdown.
        report(args, figures)


def report(args: argparse.Namespace, figures: dict[str, Any]) -> None:
    print()
    for name, value in figures.items():
        if not isinstance(value, dict | list):
            print(f"{name:<44} {value}")
    text = json.dumps(figures, sort_keys=True)
    if args.record:
        RECORD.parent.mkdir(parents=True, exist_ok=True)
        RECORD.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
    print(text)


def summary(
    args: argparse.Namespace,
    population: Population,
    phases: list[Phase],
    timeouts: dict[str, float],
    seed_seconds: float,
) -> dict[str, Any]:
    window = args.cycles * CYCLE_SECONDS
    hours = window / 3600
    refreshes = [p for p in phases if p.job == "pre-refresh"]
    sweeps = [p for p in phases if p.job == "rotation-sweep"]
    refresh_tokens = sum(p.zus_token_requests for p in refreshes)
    check_tokens = sum(p.zus_token_requests for p in sweeps)
    in_use, idle = len(population.in_use), len(population.idle)
    # The fewest token requests that keep a token with more than the margin left, per client in use and hour;
    # and one health check per idle client and check interval.
    minimum_refresh = in_use * window / (args.lifetime - args.margin)
    minimum_checks = idle * window / args.check_interval
    refresh_rate = refresh_tokens / (in_use * hours) if in_use else 0.0
    minimum_rate = 3600 / (args.lifetime - args.margin)

    def per_due(group: list[Phase]) -> float | None:
        due = sum(p.due for p in group)
        return round(sum(p.items_read for p in group) / due, 2) if due else None

    def stats(group: list[Phase]) -> dict[str, Any]:
        return {
            "cycles": len(group),
            "due_per_cycle_mean": round(sum(p.due for p in group) / len(group), 1) if group else 0,
            "due_fraction_per_cycle_mean": round(sum(p.due for p in group) / len(group) / args.clients, 4)
            if group
            else 0,
            "items_read_per_cycle_mean": round(sum(p.items_read for p in group) / len(group), 1) if group else 0,
            "items_read_per_cycle_max": max((p.items_read for p in group), default=0),
            "index_items_read_total": sum(p.index_items_read for p in group),
            "due_total": sum(p.due for p in group),
            "items_read_per_due_item": per_due(group),
            "secrets_manager_calls": dict(sum((Counter(p.secrets_manager_calls) for p in group), Counter())),
            "dynamodb_calls": dict(sum((Counter(p.dynamodb_calls) for p in group), Counter())),
            "dynamodb_writes_by_item": dict(sum((Counter(p.dynamodb_writes_by_item) for p in group), Counter())),
            "due_index_changes": sum(p.due_index_changes for p in group),
            "sqs_calls": dict(sum((Counter(p.sqs_calls) for p in group), Counter())),
            "dispatcher_seconds_mean": round(sum(p.dispatcher_seconds for p in group) / len(group), 4) if group else 0,
            "dispatched_total": sum(p.dispatched for p in group),
            "zus_token_requests": sum(p.zus_token_requests for p in group),
            "wall_seconds_per_cycle_mean": round(sum(p.wall_seconds for p in group) / len(group), 3) if group else 0,
            "wall_seconds_per_cycle_max": round(max((p.wall_seconds for p in group), default=0.0), 3),
            "max_dispatcher_invocation_seconds": round(max((p.dispatcher_seconds for p in group), default=0.0), 3),
            "max_worker_invocation_seconds": round(max((p.max_worker_seconds for p in group), default=0.0), 3),
            "worker_invocations": sum(p.worker_invocations for p in group),
            "worker_seconds_per_message": round(
                sum(p.wall_seconds - p.dispatcher_seconds for p in group) / max(1, sum(p.dispatched for p in group)), 4
            ),
            "refused_messages": sum(p.refused for p in group),
            "work_failed": sum(p.work_failed for p in group),
        }

    longest_dispatcher = max((p.dispatcher_seconds for p in phases), default=0.0)
    longest_worker = max((p.max_worker_seconds for p in phases), default=0.0)
    return {
        "clients": args.clients,
        "clients_in_use": in_use,
        "clients_idle": idle,
        "seed_seconds": round(seed_seconds, 1),
        "simulated_minutes": round(window / 60, 1),
        "token_lifetime_seconds": args.lifetime,
        "refresh_margin_seconds": args.margin,
        "check_interval_seconds": args.check_interval,
        "pre_refresh": stats(refreshes),
        "rotation_sweep": stats(sweeps),
        "dispatcher_timeout_seconds": timeouts["dispatcher"],
        "worker_timeout_seconds": timeouts["worker"],
        "longest_dispatcher_invocation_seconds": round(longest_dispatcher, 3),
        "longest_worker_invocation_seconds": round(longest_worker, 3),
        "longest_over_half_timeout": round(
            max(longest_dispatcher / (timeouts["dispatcher"] / 2), longest_worker / (timeouts["worker"] / 2)), 4
        ),
        "refresh_token_requests": refresh_tokens,
        "refresh_token_requests_minimum": round(minimum_refresh, 1),
        "refresh_token_requests_per_client_hour": round(refresh_rate, 4),
        "refresh_token_requests_per_client_hour_minimum": round(minimum_rate, 4),
        "refresh_over_minimum": round(refresh_rate / minimum_rate, 4) if refresh_rate else None,
        "health_check_token_requests": check_tokens,
        "health_check_token_requests_minimum": round(minimum_checks, 1),
        "zus_token_requests_per_client_hour": round((refresh_tokens + check_tokens) / (args.clients * hours), 4),
        "zus_token_requests_per_client_hour_minimum": round(
            (minimum_refresh + minimum_checks) / (args.clients * hours), 4
        ),
        "zus_over_minimum": round((refresh_tokens + check_tokens) / (minimum_refresh + minimum_checks), 4),
    }


if __name__ == "__main__":
    main()
