"""`make bench-tokens`: token vending under a fleet of simulated Lambda containers, and cold start.

Starts moto server and the Zus emulator as their own processes on 127.0.0.1, provisions two app
clients (their records naming the event's caller, events/apigw_get_token.json, as a consumer), then runs N
processes (each one simulated container with its own memory tier, serving one invocation at a time as
Lambda does, at the template's log level, INFO, its stdout flushed on every write as awslambdaric's
is) of M threads calling the real vend handler with that event (API Gateway's IAM authorizer
context included) for about a minute, with short-lived tokens so that refreshes happen. New containers
join every second; each one's first vend is a DynamoDB-tier hit (one strongly consistent GetItem of the
token item, which carries the record's copy), timed next to a bare boto3 GetItem of the token item (the
same consistency) in the same thread, so both meet the same load (right after the hit in odd rounds,
right before it in even ones); the containers' memory tier reads the
item again every MEMORY_REVALIDATION_SECONDS, and those reads count as DynamoDB-tier hits too.
Beside the two p50s' ratio, the p50 of each fresh container's hit less the bare GetItem beside it
(``paired_table_hit_minus_get_item_p50_ms``): what the handler adds to the read, less swayed by the
load than two populations' p50s are. Callers
of the fleet that waited on another's lease (``lease-wait``; rare: only while no token is stored) are
timed (the whole invocation) beside the fetch of the holder each waited for (the ``TokenFetchTime``
metric in the containers' EMF logs, paired with the wait by when the holder's invocation ended).

Then bursts, for the lease's waiters: R rounds of K fresh containers (processes, each a new handler
module per round, its connections warmed by a call for an unknown client) whose first calls for a
second client start together (a barrier) while its token needs a fetch: in even rounds a client's
first fetch (no token and no holder's fetch time in the item), in odd ones a refresh (the token
expired, the last holder's fetch time known). Each round is one holder and K-1 waiters. botocore's
events on the containers' clients say when each DynamoDB call answered. The figures, p50 over the
waiters or the holders:
- ``burst_waiter_wait``: a waiter's wait, from when it found the lease held (its refused lease write
  answered, or a read before it that showed the lease) to its answer (the handler returned): issue
  24's target compares it with the holders' fetch;
- ``burst_waiter_call``: a waiter's whole invocation (its own view read and lease write included);
- ``burst_holder_fetch``: the holder's ``TokenFetchTime``, from when its lease write answered to when
  its token write answered (secret read, budget, Zus, write);
- ``burst_holder_call``: the holder's whole invocation, with its parts before its lease write
  answered (``burst_holder_before_lease``: its view read and lease write) and after its token write
  answered (``burst_holder_after_write``: its in-use mark, audit line and metrics);
- ``burst_waiter_wait_beyond_its_holders_fetch`` (p50, max): a waiter's wait less its own holder's
  fetch (the same pairs, where the p50s above compare two populations);
- ``burst_waiter_after_write`` (p50 and max, and p50 by case): from the holder's token write's answer
  to the waiter's answer;
- ``burst_waiter_reads``: a waiter's reads of the item after it found the lease held (mean, max);
- ``burst_rounds`` (in the JSON only): each round's case, holder's fetch and waiters' waits.
The fewest upstream token requests count one per burst, and failed vend calls the bursts' too.

Cold start is measured in fresh processes as Lambda runs them (Python 3.13, isolated,
writing no bytecode, from `make build`'s function and layer): importing the vend handler module (its
module-level init included) next to a baseline that only imports boto3 and creates the same boto3 clients.

Then the bytes each vend call logs at the template's INFO level (its one line: the audit event in its
metrics' EMF document, what CloudWatch Logs ingests), in one more fresh process.

Prints a table, and as its last line one JSON object with every figure; ``--record`` also writes it to
docs/bench/tokens.json, which ``make cost`` reads.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import math
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import requests
from bench_servers import bench_environment, servers

ROOT = Path(__file__).resolve().parents[1]
HANDLER = ROOT / "functions" / "token_vending" / "app.py"
EVENT = ROOT / "events" / "apigw_get_token.json"
CLIENT = "bench-client"
# The client of the burst phase: its token made to need a fetch before each burst.
BURST_CLIENT = "bench-burst"
TABLE = "zus-m2m-bench"
# The caller of events/apigw_get_token.json is a session of this role: the bench client's consumer.
CONSUMER = "arn:aws:iam::123456789012:role/billing-service"
RECORD = ROOT / "docs" / "bench" / "tokens.json"


def environment(moto: str, zus: str, margin: int) -> dict[str, str]:
    # The template's level: each call writes its audit line, as on Lambda.
    return bench_environment(moto, zus, TABLE, margin, "INFO")


def provision(moto: str, zus: str, lifetime: int, names: tuple[str, ...] = (CLIENT,)) -> dict[str, str]:
    """Managed clients: each created at the emulator, its secret stored in moto, its record (claimed and
    completed, as provisioning writes it) naming ``CONSUMER``. Returns their clientIds by name."""
    from zus_local.aws_setup import create_table
    from zus_m2m.aws.client_records import DynamoClientRecords
    from zus_m2m.aws.table import TableKeys
    from zus_m2m.values import ClientCredentials, ClientRecord
    from zus_m2m.zus.client import ZusClient
    from zus_m2m.zus.endpoints import ZusEndpoints

    requests.post(f"{zus}/_emulator/config", json={"tokenLifetimeSeconds": lifetime}, timeout=5).raise_for_status()
    client = ZusClient(ZusEndpoints.for_environment("sandbox", api_base=zus, auth_base=zus))
    admin = client.request_token("local-admin", "local-admin-secret").access_token
    role = client.find_role("Builder Admin", admin)
    session = boto3.Session(region_name="us-east-1")
    dynamodb = session.client("dynamodb", endpoint_url=moto)
    create_table(dynamodb, TABLE)
    records = DynamoClientRecords(dynamodb, TABLE, TableKeys("zus-m2m-admin"))
    client_ids = {}
    for name in names:
        created = client.create_app_client(name, role.id, admin)
        credentials = ClientCredentials(
            name, created.app_client.id, created.app_client.client_id, created.client_secret, role.id, role.name
        )
        arn = session.client("secretsmanager", endpoint_url=moto).create_secret(
            Name=f"zus-m2m/bench/{name}", SecretString=credentials.to_json()
        )["ARN"]
        now = time.time()
        records.claim(name, role.name, (CONSUMER,), "bench", now, now + 40, previous_owner=None)
        app_client = created.app_client
        record = ClientRecord(name, app_client.id, app_client.client_id, role.id, role.name, arn, int(now), (CONSUMER,))
        if not records.complete(record, "bench"):
            raise SystemExit(f"could not write the record of {name!r}")
        client_ids[name] = app_client.client_id
    return client_ids


def percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1)]


def load_handler() -> Any:
    """A fresh module instance of the vend handler: what a new Lambda container initialises."""
    spec = importlib.util.spec_from_file_location(f"token_vending_app_{time.monotonic_ns()}", HANDLER)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def lambda_stdout(log: int) -> None:
    """Logs and EMF metrics go to stdout, as on Lambda, written as Lambda's runtime interface client
    writes them (awslambdaric's bootstrap: every write flushed at once); kept in the file ``log``, off
    the bench's output."""
    from awslambdaric.bootstrap import Unbuffered

    os.dup2(log, 1)
    sys.stdout = Unbuffered(sys.stdout)


def token_event(client: str, min_ttl: int) -> dict[str, Any]:
    event: dict[str, Any] = json.loads(EVENT.read_text())
    event["rawPath"] = event["requestContext"]["http"]["path"] = f"/app-clients/{client}/token"
    event["pathParameters"] = {"name": client}
    event["rawQueryString"] = f"minTtl={min_ttl}"
    event["queryStringParameters"] = {"minTtl": str(min_ttl)}
    return event


def container(
    env: dict[str, str], threads: int, seconds: float, min_ttl: int, think: float, log_path: str, results: Any
) -> None:
    """One simulated Lambda container: the handler module loaded once, called from several threads, one
    invocation at a time (as Lambda runs them; the handlers keep per-invocation state in the process);
    each call's latency is its invocation's, not its wait for the container.

    A scale-out thread also starts a new container every second (a fresh module instance, its own
    empty memory tier) and times its first vend: the DynamoDB tier's hit, on warm connections.
    """
    os.environ.update(env)
    lambda_stdout(os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC))
    module = load_handler()
    from zus_local.lambda_context import LocalLambdaContext

    event = token_event(CLIENT, min_ttl)
    latencies: dict[str, list[float]] = {"memory": [], "table": [], "lease-wait": [], "zus": []}
    failures: dict[str, int] = {}
    waits_ended: list[float] = []
    window = [math.inf, 0.0]
    lock = threading.Lock()
    invocation = threading.Lock()
    deadline = time.monotonic() + seconds

    def call(handler: Any) -> tuple[str | None, float]:
        """The call's tier (None for a failure) and its latency (ms)."""
        context = LocalLambdaContext(function_name="TokenVendingFunction", timeout_seconds=10)
        with invocation:
            started_at = time.time()
            started = time.perf_counter()
            response = handler.lambda_handler(event, context)
            elapsed = (time.perf_counter() - started) * 1000
        tier = response["headers"]["X-Token-Source"] if response["statusCode"] == 200 else None
        with lock:
            window[0] = min(window[0], started_at)
            window[1] = max(window[1], time.time())
            if tier is not None:
                latencies[tier].append(elapsed)
                if tier == "lease-wait":
                    waits_ended.append(time.time())
            else:
                key = str(response["statusCode"])
                failures[key] = failures.get(key, 0) + 1
        return tier, elapsed

    def caller() -> None:
        while time.monotonic() < deadline:
            call(module)
            time.sleep(think)

    # The baseline: a bare boto3 GetItem of the same item, timed in the same thread beside each fresh
    # container's DynamoDB-tier hit, so both meet the same load and the same contention for this
    # process's GIL: none from the container's other calls, which wait for the one in progress.
    dynamodb = boto3.client("dynamodb", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1")
    key = {"pk": {"S": f"client#{CLIENT}"}, "sk": {"S": "token"}}
    get_item: list[float] = []
    # A fresh container's DynamoDB-tier hit less the bare GetItem beside it: the pair's difference.
    table_over_get_item: list[tuple[bool, float]] = []

    def bare_get_item() -> float:
        get_item.append(timed_get_item(dynamodb, key, invocation))
        return get_item[-1]

    def scale_out() -> None:
        dynamodb.get_item(TableName=TABLE, Key=key, ConsistentRead=True)  # a warm connection, like the container's
        while time.monotonic() < deadline - 1:
            time.sleep(1.0)
            fresh = load_handler()
            # Warm its connections with an unknown client (403), as a container's earlier work would.
            with invocation:
                fresh.lambda_handler(token_event("bench-warm-up", min_ttl), LocalLambdaContext("TokenVendingFunction"))
            # The hit first in every other round (one bare GetItem a round so far).
            hit_first = len(get_item) % 2 == 0
            tier, hit, bare = in_turn(functools.partial(call, fresh), bare_get_item, hit_first=hit_first)
            if tier == "table":
                table_over_get_item.append((hit_first, hit - bare))

    workers = [threading.Thread(target=caller) for _ in range(threads)]
    workers.append(threading.Thread(target=scale_out))
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    results.put(
        {
            "latencies": latencies,
            "failures": failures,
            "window": window,
            "get_item": get_item,
            "table_over_get_item": table_over_get_item,
            "waits_ended": waits_ended,
        }
    )


def timed_get_item(dynamodb: Any, key: dict[str, Any], invocation: threading.Lock) -> float:
    """A bare GetItem of the token item (ms), as an invocation would run: alone in its container, holding
    ``invocation`` as the vend call it is compared with does (without it, the container's other calls
    took the GIL from it, and it read 0.5-0.7 ms slower than the vend call beside it: a bias in the
    DynamoDB tier's favour that the runs recorded before this was fixed carried)."""
    with invocation:
        started = time.perf_counter()
        dynamodb.get_item(TableName=TABLE, Key=key, ConsistentRead=True)
        return (time.perf_counter() - started) * 1000


def in_turn(
    hit: Callable[[], tuple[str | None, float]], bare: Callable[[], float], *, hit_first: bool
) -> tuple[str | None, float, float]:
    """A vend call and a bare GetItem one right after the other (the tier and both times): their order
    alternates, as which of two calls in a row goes first sways its time by about as much as the
    handler's own work does."""
    if hit_first:
        tier, hit_ms = hit()
        return tier, hit_ms, bare()
    bare_ms = bare()
    tier, hit_ms = hit()
    return tier, hit_ms, bare_ms


class DynamoCalls:
    """When this process's DynamoDB calls on the token items answered, as botocore's events report them
    (registered on the container's SDK session, ``wiring.aws_session()``, before a handler module creates
    its clients, so every client it creates carries them): the lease writes (taken or refused), the token
    writes and the reads."""

    def __init__(self) -> None:
        from zus_m2m import wiring

        self.seen: list[tuple[float, str]] = []
        session = wiring.aws_session()
        session.register("before-parameter-build.dynamodb", self._request)
        session.register("after-call.dynamodb", self._answer)

    # botocore calls event handlers with keyword arguments only.
    def _request(self, **event: Any) -> None:
        params, model, context = event["params"], event["model"], event["context"]
        update = str(params.get("UpdateExpression", ""))
        if model.name == "GetItem":
            context["bench"] = "read"
        elif update.startswith("SET leaseOwner = :owner, leaseUntil"):
            context["bench"] = "lease"
        elif "accessToken = :token" in update:
            context["bench"] = "token-written"

    def _answer(self, **event: Any) -> None:
        parsed, context = event["parsed"], event["context"]
        kind = context.get("bench")
        if kind == "lease":
            kind = "lease-refused" if "Error" in parsed else "lease-taken"
        elif kind == "read" and "leaseOwner" in parsed.get("Item", {}):
            kind = "read-held"  # a read that found the lease held (a holder gives it back with its token)
        if kind is not None:
            self.seen.append((time.time(), kind))

    def since(self, started: float) -> dict[str, list[float]]:
        found: dict[str, list[float]] = {}
        for at, kind in self.seen:
            if at >= started:
                found.setdefault(kind, []).append(at)
        return found


def burst_container(env: dict[str, str], rounds: int, min_ttl: int, log_path: str, barrier: Any, results: Any) -> None:
    """One of a burst's containers: each round a fresh handler module (a new container) warms its
    connections, waits at ``barrier`` for the others, and makes its first call for ``BURST_CLIENT``,
    whose token needs a fetch (the bench made it so): one of the round's containers takes the lease
    and fetches, the others wait for its token. Reports each call's DynamoDB calls and metrics."""
    os.environ.update(env)
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    lambda_stdout(log)
    calls = DynamoCalls()
    from zus_local.lambda_context import LocalLambdaContext

    event = token_event(BURST_CLIENT, min_ttl)
    reports = []
    for n in range(rounds):
        handler = load_handler()
        handler.lambda_handler(token_event("bench-warm-up", min_ttl), LocalLambdaContext("TokenVendingFunction"))
        sys.stdout.flush()
        logged = os.lseek(log, 0, os.SEEK_END)
        barrier.wait()
        started = time.time()
        response = handler.lambda_handler(event, LocalLambdaContext("TokenVendingFunction", timeout_seconds=10))
        ended = time.time()
        sys.stdout.flush()
        with open(log_path) as written:
            written.seek(logged)
            documents = [json.loads(line) for line in written.read().splitlines() if '"_aws"' in line]
        fetch = [
            float(value)
            for document in documents
            for value in (lambda found: found if isinstance(found, list) else [found])(
                document.get("TokenFetchTime", [])
            )
        ]
        reports.append(
            {
                "round": n,
                "status": response["statusCode"],
                "source": response["headers"].get("X-Token-Source"),
                "started": started,
                "ended": ended,
                "calls": calls.since(started),
                "fetch_ms": fetch[0] if fetch else None,
            }
        )
        barrier.wait()
    results.put(reports)


def bursts(env: dict[str, str], moto: str, rounds: int, size: int, min_ttl: int, log_dir: Path) -> list[dict[str, Any]]:
    """``rounds`` bursts of ``size`` fresh containers' first calls for ``BURST_CLIENT``, started together,
    its token needing a fetch each time: in even rounds as a client's first fetch (no token, no holder's
    fetch time known), in odd ones as a refresh (the token expired; the last holder's time known)."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(size + 1)
    results = ctx.Queue()
    processes = [
        ctx.Process(
            target=burst_container, args=(env, rounds, min_ttl, str(log_dir / f"burst-{n}.log"), barrier, results)
        )
        for n in range(size)
    ]
    for process in processes:
        process.start()
    dynamodb = boto3.client("dynamodb", endpoint_url=moto, region_name="us-east-1")
    key = {"pk": {"S": f"client#{BURST_CLIENT}"}, "sk": {"S": "token"}}
    for n in range(rounds):
        if n % 2:
            past = {":past": {"N": str(int(time.time()) - 1)}}
            dynamodb.update_item(
                TableName=TABLE, Key=key, UpdateExpression="SET expiresAt = :past", ExpressionAttributeValues=past
            )
        elif n:
            dynamodb.update_item(
                TableName=TABLE, Key=key, UpdateExpression="REMOVE accessToken, expiresAt, fetchSeconds"
            )
        barrier.wait(timeout=120)  # the round starts
        barrier.wait(timeout=60)  # every call of the round answered
    reports = [report for _ in processes for report in results.get(timeout=60)]
    for process in processes:
        process.join()
    return reports


def burst_figures(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """The bursts' waiters beside their holder (the round's caller that fetched). A waiter's wait: from
    when it found the lease held (its refused lease write answered, or a read before it that showed
    the lease) to its own answer; its call: the whole invocation. The holder's fetch: its
    ``TokenFetchTime`` (from its lease write's answer to its token write's answer); its call, and
    the parts of it before its lease write answered and after its token write answered. After the
    write: from the holder's token write's answer to the waiter's answer. Beyond its holder: a waiter's
    wait less its own holder's fetch. Reads: a waiter's reads of the item after it found the lease
    held."""
    sources: dict[str, int] = {}
    waits: list[float] = []
    beyond: list[float] = []
    waiter_calls: list[float] = []
    after: dict[str, list[float]] = {"first": [], "refresh": []}
    reads: list[int] = []
    fetches: list[float] = []
    holder_calls: list[float] = []
    before_lease: list[float] = []
    after_write: list[float] = []
    rounds: list[dict[str, Any]] = []
    failed = 0
    if not any(report["calls"] for report in reports):
        raise SystemExit(
            "no DynamoDB call of the bursts' handlers observed: are their clients made on wiring.aws_session()?"
        )
    for n in sorted({report["round"] for report in reports}):
        calls = [report for report in reports if report["round"] == n]
        holders = [call for call in calls if call["source"] == "zus" and call["calls"].get("token-written")]
        written = holders[0]["calls"]["token-written"][0] if len(holders) == 1 else None
        fetch = holders[0]["fetch_ms"] if len(holders) == 1 else None
        rounds.append({"case": "refresh" if n % 2 else "first fetch", "holder_fetch_ms": fetch, "waits_ms": []})
        for call in calls:
            sources[str(call["source"] or call["status"])] = sources.get(str(call["source"] or call["status"]), 0) + 1
            failed += call["status"] != 200
            ms = {kind: [(at - call["started"]) * 1000 for at in times] for kind, times in call["calls"].items()}
            whole = (call["ended"] - call["started"]) * 1000
            if call in holders:
                fetches.append(call["fetch_ms"])
                holder_calls.append(whole)
                before_lease.append(ms["lease-taken"][0])
                after_write.append(whole - ms["token-written"][0])
            elif call["source"] == "lease-wait":
                # It found the lease held: its lease write refused, or a read before it had one (none: it
                # took the lease once the holder's token was there, and never waited).
                found = min(ms.get("lease-refused", []) + ms.get("read-held", []), default=None)
                if found is None:
                    continue
                waits.append(whole - found)
                rounds[-1]["waits_ms"].append(round(whole - found, 1))
                if fetch is not None:
                    beyond.append(whole - found - fetch)
                waiter_calls.append(whole)
                reads.append(sum(1 for at in ms.get("read", []) + ms.get("read-held", []) if at > found))
                if written is not None:
                    after["refresh" if n % 2 else "first"].append((call["ended"] - written) * 1000)
    answered_after = after["first"] + after["refresh"]
    return {
        "burst_calls_by_source": sources,
        "burst_failed_vend_calls": failed,
        "burst_waiters": len(waits),
        "burst_waiter_wait_p50_ms": _rounded(percentile(waits, 0.5)),
        "burst_waiter_call_p50_ms": _rounded(percentile(waiter_calls, 0.5)),
        "burst_holder_fetch_p50_ms": _rounded(percentile(fetches, 0.5)),
        "burst_waiter_wait_beyond_its_holders_fetch_p50_ms": _rounded(percentile(beyond, 0.5)),
        "burst_waiter_wait_beyond_its_holders_fetch_max_ms": _rounded(max(beyond, default=None)),
        "burst_holder_call_p50_ms": _rounded(percentile(holder_calls, 0.5)),
        "burst_holder_before_lease_p50_ms": _rounded(percentile(before_lease, 0.5)),
        "burst_holder_after_write_p50_ms": _rounded(percentile(after_write, 0.5)),
        "burst_waiter_after_write_p50_ms": _rounded(percentile(answered_after, 0.5)),
        "burst_waiter_after_write_max_ms": _rounded(max(answered_after, default=None)),
        "burst_waiter_after_write_p50_ms_first_fetch": _rounded(percentile(after["first"], 0.5)),
        "burst_waiter_after_write_p50_ms_refresh": _rounded(percentile(after["refresh"], 0.5)),
        "burst_waiter_reads_mean": round(statistics.mean(reads), 2) if reads else None,
        "burst_waiter_reads_max": max(reads, default=None),
        "burst_rounds": rounds,
    }


def _rounded(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


# Cold start as Lambda runs it: Python 3.13 isolated (-I -S: no site, no PYTHON* variables), writing no
# bytecode (-B: /var/task and /opt are read-only), its path the built function, the built layer (with the
# .pyc the build ships) and the runtime's SDK (boto3, compiled, as Lambda's runtime has it).
COLD_HANDLER = """
import importlib.util, json, sys, time
sys.path[:0] = json.loads(sys.argv[1])
started = time.perf_counter()
spec = importlib.util.spec_from_file_location("token_vending_app", sys.argv[2])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
print(time.perf_counter() - started)
"""

COLD_BASELINE = """
import json, sys, time
sys.path[:0] = json.loads(sys.argv[1])
started = time.perf_counter()
import boto3
boto3.client("dynamodb")
boto3.client("secretsmanager")
print(time.perf_counter() - started)
"""

# The same with botocore's session, as the functions make their clients (zus_m2m.wiring.aws_client):
# printed beside, so that what skipping boto3's wrapper saves is not counted as the handler's own.
COLD_BOTOCORE_BASELINE = """
import json, sys, time
sys.path[:0] = json.loads(sys.argv[1])
started = time.perf_counter()
import botocore.session
session = botocore.session.get_session()
session.create_client("dynamodb")
session.create_client("secretsmanager")
print(time.perf_counter() - started)
"""
BUILD = ROOT / ".aws-sam" / "build"
PYTHON313 = ROOT / ".venv-313" / "bin" / "python"


LOG_PROBE = f"""
import importlib.util, json, sys
sys.path.insert(0, {str(ROOT / "scripts")!r})
from bench_tokens import token_event, CLIENT
from zus_local.lambda_context import LocalLambdaContext
spec = importlib.util.spec_from_file_location("token_vending_app", {str(HANDLER)!r})
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
event = token_event(CLIENT, 1)
for _ in range(int(sys.argv[1])):
    module.lambda_handler(event, LocalLambdaContext("TokenVendingFunction", timeout_seconds=10))
"""


def log_bytes_per_call(env: dict[str, str], calls: int) -> float:
    """What one vend call writes to stdout (its log group on Lambda) at the template's INFO level."""
    process_env = {**os.environ, **env, "POWERTOOLS_LOG_LEVEL": "INFO"}
    out = subprocess.run(
        [sys.executable, "-c", LOG_PROBE, str(calls)], env=process_env, capture_output=True, check=True
    )
    return len(out.stdout) / calls


def cold_start(env: dict[str, str], runs: int) -> tuple[float, float, float]:
    """Median seconds to import and init the built handler, the boto3-only baseline and the botocore-only
    one, alternating runs (``make build`` first: the layer's bytecode is part of what is measured)."""
    sdk = subprocess.run(
        [str(PYTHON313), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    function = BUILD / "TokenVendingFunction"
    handler_path = json.dumps([str(function), str(BUILD / "SharedLayer" / "python"), sdk])
    handler: list[float] = []
    baseline: list[float] = []
    botocore_baseline: list[float] = []
    process_env = {**os.environ, **env}
    for _ in range(runs):
        for code, path, samples in (
            (COLD_HANDLER, handler_path, handler),
            (COLD_BASELINE, json.dumps([sdk]), baseline),
            (COLD_BOTOCORE_BASELINE, json.dumps([sdk]), botocore_baseline),
        ):
            out = subprocess.run(
                [str(PYTHON313), "-I", "-S", "-B", "-c", code, path, str(function / "app.py")],
                env=process_env,
                capture_output=True,
                text=True,
                check=True,
            )
            samples.append(float(out.stdout.strip().splitlines()[-1]))
    return statistics.median(handler), statistics.median(baseline), statistics.median(botocore_baseline)


def gathered(
    collected: list[dict[str, Any]],
) -> tuple[dict[str, list[float]], dict[str, int], list[float], float]:
    """The containers' results together: latencies by tier, failures by status, bare GetItem timings,
    and the seconds from the first container's first call to the last one's last."""
    latencies: dict[str, list[float]] = {"memory": [], "table": [], "lease-wait": [], "zus": []}
    failures: dict[str, int] = {}
    get_item: list[float] = []
    windows = [result["window"] for result in collected if "window" in result]
    for result in collected:
        get_item.extend(result.get("get_item", []))
        for tier, values in result.get("latencies", {}).items():
            latencies[tier].extend(values)
        for status, count in result.get("failures", {}).items():
            failures[status] = failures.get(status, 0) + count
    vend_seconds = max(end for _, end in windows) - min(start for start, _ in windows)
    return latencies, failures, get_item, vend_seconds


def paired_figures(collected: list[dict[str, Any]]) -> dict[str, Any]:
    """The fresh containers' DynamoDB-tier hits, each less the bare GetItem beside it: p50 of all the
    pairs, and of those where the hit went first and those where it went second."""
    pairs = [
        (bool(first), difference) for result in collected for first, difference in result.get("table_over_get_item", [])
    ]
    figures: dict[str, Any] = {"paired_table_hits": len(pairs)}
    for suffix, chosen in (
        ("", pairs),
        ("_hit_first", [p for p in pairs if p[0]]),
        ("_hit_second", [p for p in pairs if not p[0]]),
    ):
        p50 = percentile([difference for _, difference in chosen], 0.5)
        figures[f"paired_table_hit_minus_get_item_p50_ms{suffix}"] = _rounded(p50, 3)
    return figures


def emf_documents(log_dir: Path, name: str) -> list[dict[str, Any]]:
    """The containers' EMF documents (one per invocation) that carry metric ``name``."""
    found = []
    for path in log_dir.glob("*.log"):
        for line in path.read_text().splitlines():
            if '"_aws"' in line and f'"{name}"' in line:
                found.append(json.loads(line))
    return found


def emf_samples(log_dir: Path, name: str) -> list[tuple[float, float]]:
    """Every value of metric ``name`` in the containers' EMF documents, with its document's timestamp
    (seconds; a document may carry several values of one metric)."""
    samples: list[tuple[float, float]] = []
    for document in emf_documents(log_dir, name):
        value = document[name]
        at = document["_aws"]["Timestamp"] / 1000
        samples.extend((at, float(one)) for one in (value if isinstance(value, list) else [value]))
    return samples


def waiting_figures(log_dir: Path, waits_ended: list[float]) -> dict[str, Any]:
    """The lease holders' own fetch time (p50, every holder), how often a waiter read the item (on
    average), and for the waiters: the fetch time of the holder each waited for (the holder whose
    invocation ended nearest the wait's end: its metrics' timestamp, after its token write), p50, and how
    long after that holder's invocation ended the waiter answered (p50)."""
    holders = emf_samples(log_dir, "TokenFetchTime")
    holder_p50 = percentile([fetch for _, fetch in holders], 0.5)
    reads = sum(value for _, value in emf_samples(log_dir, "LeaseWait"))
    # (the wait's end, the end of the holder's invocation it waited for, that holder's fetch time)
    paired = [(end, *min(holders, key=lambda holder: abs(end - holder[0]))) for end in waits_ended] if holders else []
    waited_p50 = percentile([fetch for _, _, fetch in paired], 0.5)
    after_p50 = percentile([(end - ended) * 1000 for end, ended, _ in paired], 0.5)
    return {
        "holder_fetches": len(holders),
        "holder_fetch_p50_ms": _rounded(holder_p50),
        "waited_holder_fetch_p50_ms": _rounded(waited_p50),
        "lease_wait_reads_per_waiter": round(reads / len(waits_ended), 2) if waits_ended else None,
        "lease_wait_after_holder_p50_ms": _rounded(after_p50),
    }


def verdicts(figures: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    """Issue 24's targets: (what, target, met) each; met None: not measured in this run (no burst's
    caller waited on another's lease). A waiter's target is about its wait (from its refused lease write
    to its answer) against the holder's fetch (from its lease to its token write), both in the bursts."""
    holder = figures["burst_holder_fetch_p50_ms"]
    waiter = figures["burst_waiter_wait_p50_ms"]
    return [
        ("DynamoDB-tier p50 / bare GetItem p50", "<= 1.0", _at_most(figures["table_p50_over_get_item_p50"], 1.0)),
        ("memory p50 / bare GetItem p50", "<= 0.03", _at_most(figures["memory_p50_over_get_item_p50"], 0.03)),
        ("cold start / boto3-only baseline", "<= 1.2", _at_most(figures["cold_start_ratio"], 1.2)),
        (
            f"lease waiter's wait p50 {waiter} ms vs its holders' fetch p50 {holder} ms",
            "<= holder + 50 ms",
            None if waiter is None or holder is None else waiter <= holder + 50,
        ),
        ("upstream token requests / minimum", "= 1.0", figures["upstream_over_minimum"] <= 1.0),
        ("failed vend calls", "0", figures["failed_vend_calls"] == 0),
    ]


def _at_most(value: float | None, limit: float) -> bool:
    return value is not None and value <= limit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=8)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=58.0)
    parser.add_argument("--lifetime", type=int, default=20, help="token lifetime at the emulator, seconds")
    parser.add_argument("--margin", type=int, default=5, help="refresh margin, seconds")
    parser.add_argument("--min-ttl", type=int, default=1)
    parser.add_argument("--cold-runs", type=int, default=7)
    parser.add_argument("--think-ms", type=float, default=20.0, help="each caller's pause between calls")
    parser.add_argument("--bursts", type=int, default=16, help="bursts of fresh containers whose token needs a fetch")
    parser.add_argument("--burst-size", type=int, default=5, help="containers per burst: 1 holder, the rest wait")
    parser.add_argument("--record", action="store_true", help=f"also write the JSON to {RECORD.relative_to(ROOT)}")
    args = parser.parse_args()
    os.environ.update({k: v for k, v in environment("", "", args.margin).items() if k.startswith("AWS_") and v})

    with servers() as (moto, zus):
        client_ids = provision(moto, zus, args.lifetime, (CLIENT, BURST_CLIENT))
        env = environment(moto, zus, args.margin)
        ctx = multiprocessing.get_context("spawn")
        results = ctx.Queue()
        print(f"running {args.processes} containers x {args.threads} threads for {args.seconds:.0f} s ...", flush=True)
        started = time.monotonic()
        log_dir = Path(tempfile.mkdtemp(prefix="bench-tokens-"))
        processes = [
            ctx.Process(
                target=container,
                args=(
                    env,
                    args.threads,
                    args.seconds,
                    args.min_ttl,
                    args.think_ms / 1000,
                    str(log_dir / f"{n}.log"),
                    results,
                ),
            )
            for n in range(args.processes)
        ]
        for process in processes:
            process.start()
        collected = [results.get(timeout=args.seconds + 120) for _ in processes]
        for process in processes:
            process.join()
        run_length = time.monotonic() - started
        print(f"running {args.bursts} bursts of {args.burst_size} fresh containers ...", flush=True)
        (log_dir / "bursts").mkdir()
        burst_reports = bursts(env, moto, args.bursts, args.burst_size, args.min_ttl, log_dir / "bursts")
        stats = requests.get(f"{zus}/_emulator/stats", timeout=5).json()
        print(f"measuring cold start ({args.cold_runs} fresh processes each) ...", flush=True)
        cold_handler, cold_baseline, cold_botocore = cold_start(env, args.cold_runs)
        log_bytes = log_bytes_per_call(env, 200)

    latencies, failures, get_item, vend_seconds = gathered(collected)
    burst = burst_figures(burst_reports)
    upstream = int(stats["tokenRequests"].get(client_ids[CLIENT], 0))
    burst_upstream = int(stats["tokenRequests"].get(client_ids[BURST_CLIENT], 0))
    # The fewest token requests that keep a token with more than the margin left for the whole run, and
    # one per burst.
    minimum = math.ceil(vend_seconds / (args.lifetime - args.margin)) + args.bursts
    upstream += burst_upstream
    bare_p50 = percentile(get_item, 0.5) or float("nan")
    figures: dict[str, Any] = {
        "callers": args.processes * args.threads,
        "vend_calls": sum(len(v) for v in latencies.values()) + sum(failures.values()),
        # The fleet's and the bursts'.
        "failed_vend_calls": sum(failures.values()) + burst["burst_failed_vend_calls"],
        "failures_by_status": failures,
        "run_seconds": round(run_length, 1),
        "vend_window_seconds": round(vend_seconds, 1),
        "upstream_token_requests": upstream,
        "burst_upstream_token_requests": burst_upstream,
        "theoretical_minimum": minimum,
        "upstream_over_minimum": round(upstream / minimum, 3),
        "hits": {tier: len(values) for tier, values in latencies.items()},
        "bare_get_item_p50_ms": round(bare_p50, 3),
    }
    for tier, values in latencies.items():
        for name, fraction in (("p50", 0.5), ("p99", 0.99)):
            value = percentile(values, fraction)
            figures[f"{tier.replace('-', '_')}_{name}_ms"] = _rounded(value, 3)
    figures["table_p50_over_get_item_p50"] = _ratio(figures["table_p50_ms"], bare_p50)
    figures |= paired_figures(collected)
    figures["memory_p50_over_get_item_p50"] = _ratio(figures["memory_p50_ms"], bare_p50)
    figures["cold_start_handler_ms"] = round(cold_handler * 1000, 1)
    figures["cold_start_baseline_ms"] = round(cold_baseline * 1000, 1)
    figures["cold_start_ratio"] = round(cold_handler / cold_baseline, 3)
    figures["cold_start_botocore_baseline_ms"] = round(cold_botocore * 1000, 1)
    figures["cold_start_over_botocore_baseline"] = round(cold_handler / cold_botocore, 3)
    figures["log_bytes_per_vend_call"] = round(log_bytes, 1)
    figures |= waiting_figures(log_dir, [end for result in collected for end in result.get("waits_ended", [])])
    figures |= burst

    report(figures, log_dir)
    if args.record:
        RECORD.parent.mkdir(parents=True, exist_ok=True)
        RECORD.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
    print(json.dumps(figures, sort_keys=True))


def report(figures: dict[str, Any], log_dir: Path) -> None:
    """The containers' ERROR lines (a few), every figure, and the targets met or not."""
    errors = [
        line for path in log_dir.rglob("*.log") for line in path.read_text().splitlines() if '"level":"ERROR"' in line
    ]
    print(f"containers' logs: {log_dir} ({len(errors)} ERROR lines)")
    for line in errors[:3]:
        print("  " + line[:400])

    print()
    for name, value in figures.items():
        if not isinstance(value, (dict, list)):
            print(f"{name:<46} {value!s:>12}")
    print()
    print("targets (issue 24):")
    for what, target, met in verdicts(figures):
        verdict = "not measured (no waiter)" if met is None else "met" if met else "NOT MET"
        print(f"  {what:<72} {target:<18} {verdict}")


def _ratio(value: float | None, base: float) -> float | None:
    return None if value is None or not base else round(value / base, 3)


if __name__ == "__main__":
    main()
