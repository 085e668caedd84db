"""`make outage-drill`: a short Zus outage under steady callers, and what it costs.

Starts moto server and the Zus emulator as their own processes on 127.0.0.1, provisions one app client
(nothing cached), then runs N callers, each a simulated Lambda container (a fresh instance of the real
vend handler module, its own memory tier), calling the token route at a steady rate. The emulator's
token endpoint fails (``/_emulator/faults``: HTTP 503) for the first ``--outage`` seconds, then Zus is
back and the callers go on for ``--after`` seconds.

Prints the token requests Zus received during the outage (the emulator's count of requests its fault
hit; the service's own budget stamps beside it), the hourly budget it used, and the seconds from
Zus's return to the first 200; its last line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import boto3
import requests

# scripts/ is on the path when this runs as a script: the benchmark's servers and handler loading.
from bench_servers import servers
from bench_tokens import CLIENT, TABLE, environment, load_handler, provision, token_event


def budget_stamps(moto: str) -> list[float]:
    """When each token request counted in the client's budget item was sent (epoch seconds)."""
    dynamodb = boto3.client("dynamodb", endpoint_url=moto, region_name="us-east-1")
    item = dynamodb.get_item(
        TableName=TABLE, Key={"pk": {"S": f"client#{CLIENT}"}, "sk": {"S": "budget"}}, ConsistentRead=True
    ).get("Item", {})
    return sorted(float(entry["N"]) for entry in item.get("requests", {}).get("L", []))


def zus_faults_fired(zus: str) -> int:
    """The token requests the emulator's fault has hit so far (its ``/_emulator/stats``)."""
    fired = requests.get(f"{zus}/_emulator/stats", timeout=5).json().get("faultsFired", {})
    return sum(count for paths in fired.values() for path, count in paths.items() if path == "/oauth/token")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--callers", type=int, default=8)
    parser.add_argument("--rate", type=float, default=1.0, help="requests per second per caller")
    parser.add_argument("--outage", type=float, default=40.0, help="seconds the token endpoint fails")
    parser.add_argument("--after", type=float, default=20.0, help="seconds the callers go on once Zus is back")
    parser.add_argument("--budget", type=int, default=100, help="TOKEN_BUDGET_PER_HOUR")
    args = parser.parse_args()
    # Credentials for moto (never a real account): the benchmark's, set before any boto3 client.
    os.environ.update({k: v for k, v in environment("", "", 300).items() if k.startswith("AWS_") and v})

    with servers() as (moto, zus):
        provision(moto, zus, 3600)
        env = {**environment(moto, zus, 300), "TOKEN_BUDGET_PER_HOUR": str(args.budget)}
        os.environ.update(env)
        # The handlers log and emit metrics to stdout, as on Lambda: into a file, off the drill's output.
        log_path = Path(tempfile.mkstemp(prefix="outage-drill-", suffix=".log")[1])
        report = os.fdopen(os.dup(1), "w")
        os.dup2(os.open(log_path, os.O_WRONLY | os.O_TRUNC), 1)
        from zus_local.lambda_context import LocalLambdaContext

        containers = [load_handler() for _ in range(args.callers)]
        event = token_event(CLIENT, 60)
        answers: list[tuple[float, int]] = []  # (when the answer came, epoch seconds; status)
        lock = threading.Lock()
        stop = threading.Event()

        def caller(module: Any) -> None:
            while not stop.is_set():
                started = time.monotonic()
                response = module.lambda_handler(event, LocalLambdaContext("TokenVendingFunction", timeout_seconds=10))
                with lock:
                    answers.append((time.time(), int(response["statusCode"])))
                stop.wait(max(0.0, 1 / args.rate - (time.monotonic() - started)))

        fault = {"status": 503, "paths": ["/oauth/token"]}
        fired_before = zus_faults_fired(zus)
        requests.post(f"{zus}/_emulator/faults", json=fault, timeout=5).raise_for_status()
        down = time.time()
        print(
            f"{args.callers} callers at {args.rate:g}/s; the token endpoint fails for {args.outage:.0f} s ...",
            file=report,
            flush=True,
        )
        threads = [threading.Thread(target=caller, args=(module,)) for module in containers]
        for thread in threads:
            thread.start()
        time.sleep(args.outage)
        requests.post(f"{zus}/_emulator/faults", json={}, timeout=5).raise_for_status()
        up = time.time()
        # Zus's own count: every token request during the outage met the fault.
        zus_attempts = zus_faults_fired(zus) - fired_before
        time.sleep(args.after)
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        stamps = budget_stamps(moto)

    statuses = Counter(str(status) for _, status in answers)
    first_200 = min((at for at, status in answers if status == 200 and at >= up), default=None)
    figures: dict[str, Any] = {
        "callers": args.callers,
        "rate_per_caller": args.rate,
        "outage_seconds": round(up - down, 1),
        "vend_calls": len(answers),
        "answers_by_status": dict(sorted(statuses.items())),
        "vend_calls_during_outage": sum(1 for at, _ in answers if at < up),
        "upstream_attempts_during_outage": zus_attempts,
        "budget_stamps_during_outage": sum(1 for stamp in stamps if down <= stamp < up),
        "budget_used": len(stamps),
        "budget": args.budget,
        "seconds_to_first_200_after_zus_returned": None if first_200 is None else round(first_200 - up, 1),
        "handler_log": str(log_path),
    }
    print(file=report)
    print(f"{'figure':<42} {'value':>10}   target", file=report)
    targets = {"budget_used": f"< {args.budget}", "seconds_to_first_200_after_zus_returned": "<= 10"}
    for name, value in figures.items():
        if not isinstance(value, dict) and name != "handler_log":
            print(f"{name:<42} {value!s:>10}   {targets.get(name, '')}", file=report)
    print(f"answers by status: {figures['answers_by_status']}; handler logs: {log_path}", file=report)
    print(json.dumps(figures, sort_keys=True), file=report, flush=True)


if __name__ == "__main__":
    main()
