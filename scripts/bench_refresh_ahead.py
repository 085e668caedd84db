"""`make bench-refresh-ahead`: what refresh-ahead costs the caller that finds a token inside its margin, if
it renews the token in its own invocation, or if it hands the renewal to the work queue instead.

Lambda freezes an environment once its handler returns, so refresh-ahead cannot run after the answer
(docs/design.md, Refresh-ahead). Against moto and the Zus emulator (as ``make bench-tokens``), with one
provisioned client and the vend handler loaded in this process as one container, each round times:

* ``memory``: a vend call served from memory (what every other caller pays);
* ``in_invocation``: the renewal that caller runs before it answers (``SingleFlight.refresh``: a
  consistent read, the lease, Zus's token request, the write), forced due with a long horizon;
* ``hand_off``: one SendMessage of the client's work item to a queue in moto, what that caller would
  pay instead (the worker then renews it: a second invocation, and three SQS requests).

``--zus-latency-ms`` delays the emulator's token endpoint (Auth0's answers in the order of 100-300 ms);
each renewal spends one of the client's budgeted token requests, so rounds are few. Prints each
figure's median and p95, and the dollars per renewal of both ways at Lambda's and SQS's list prices.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from typing import Any

import boto3
import requests
from bench_servers import servers
from bench_tokens import CLIENT, environment, load_handler, percentile, provision, token_event

# us-east-1 list prices: Lambda on arm64 per GB-second and per request, SQS standard per request.
LAMBDA_GB_SECOND = 0.0000133334
LAMBDA_REQUEST = 0.20 / 1_000_000
SQS_REQUEST = 0.40 / 1_000_000
VENDING_GB = 512 / 1024  # template.yaml: TokenVendingFunction MemorySize
WORKER_GB = 256 / 1024  # template.yaml: WorkerFunction MemorySize


def timed(call: Any) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30, help="renewals of each way (each spends budget)")
    parser.add_argument("--zus-latency-ms", type=int, default=150)
    args = parser.parse_args()
    with servers() as (moto, zus):
        os.environ.update(environment(moto, zus, margin=300))
        provision(moto, zus, lifetime=3600)
        if args.zus_latency_ms:
            fault = {"latencyMs": args.zus_latency_ms, "paths": ["/oauth/token"]}
            requests.post(f"{zus}/_emulator/faults", json=fault, timeout=5).raise_for_status()
        sqs = boto3.client("sqs", endpoint_url=moto, region_name="us-east-1")
        queue = sqs.create_queue(QueueName="bench-refresh-ahead")["QueueUrl"]
        module = load_handler()
        from zus_m2m.access import Caller

        vendor = module.vendor
        caller = Caller(token_event(CLIENT, 60)["requestContext"]["authorizer"]["iam"]["userArn"])
        vendor.vend(caller, CLIENT, 60)  # the container's first call: the token, in memory
        figures: dict[str, list[float]] = {"memory": [], "in_invocation": [], "hand_off": []}
        message = json.dumps({"kind": "refresh", "client": CLIENT, "dueAt": round(time.time(), 3)})
        for _ in range(args.rounds):
            figures["memory"].append(timed(lambda: vendor.vend(caller, CLIENT, 60)))
            figures["in_invocation"].append(timed(lambda: vendor.flight.refresh(CLIENT, horizon=10**6)))
            figures["hand_off"].append(timed(lambda: sqs.send_message(QueueUrl=queue, MessageBody=message)))
    renew_seconds = statistics.median(figures["in_invocation"]) / 1000
    send_seconds = statistics.median(figures["hand_off"]) / 1000
    # In the invocation: the caller's invocation runs longer by the renewal.
    in_invocation = renew_seconds * VENDING_GB * LAMBDA_GB_SECOND
    # Handed off: the caller's SendMessage, then the worker's invocation renews it (receive and delete:
    # the other two SQS requests), at the worker's memory.
    hand_off = (
        send_seconds * VENDING_GB * LAMBDA_GB_SECOND
        + LAMBDA_REQUEST
        + renew_seconds * WORKER_GB * LAMBDA_GB_SECOND
        + 3 * SQS_REQUEST
    )
    result: dict[str, Any] = {"rounds": args.rounds, "zus_latency_ms": args.zus_latency_ms}
    for name, values in figures.items():
        result[f"{name}_p50_ms"] = round(statistics.median(values), 2)
        result[f"{name}_p95_ms"] = round(percentile(values, 0.95) or 0.0, 2)
    result["in_invocation_usd_per_million_renewals"] = round(in_invocation * 1_000_000, 3)
    result["hand_off_usd_per_million_renewals"] = round(hand_off * 1_000_000, 3)
    for name, value in result.items():
        print(f"{name:<42} {value}")
    print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    main()
