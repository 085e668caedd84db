"""`make bench-client`: how often services that use zus-m2m-client call the token route.

Starts moto server and the Zus emulator as their own processes on 127.0.0.1 and provisions one app client
(as ``make bench-tokens`` does), then runs P simulated service processes, each with its own
``TokenProvider`` (clients/python, the library services use) and T threads making Zus API calls at a
steady rate, each call taking its bearer token from the provider. The providers reach the real vend
handler (two simulated Lambda containers, one invocation at a time each, with API Gateway's IAM
authorizer context of a consumer) through an in-process transport; every call of the token route is
counted.

Time is scaled down ``--scale`` times: Zus's tokens live 3600 s / scale at the emulator, and the
vend function's refresh margin (300 s), the provider's ``min_ttl`` (60 s) and ``refresh_margin`` (240 s)
are scaled alike, so one scaled hour passes every 3600 / scale seconds. The figure that matters is
vend calls per process per hour in the steady state (an hour over the mean time between a process's
calls; every process also makes one at start):
what the cost model (``make cost``) takes the vend path's load from, beside the direct-vend rows where
every Zus API call is a vend call. Prints a table and one JSON line; ``--record`` also writes it to
docs/bench/client.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench_servers import servers
from bench_tokens import CLIENT, environment, load_handler, provision, token_event

ROOT = Path(__file__).resolve().parents[1]
RECORD = ROOT / "docs" / "bench" / "client.json"
HOUR = 3600.0
# Production's shape, in seconds: Zus's token lifetime, the vend function's refresh margin
# (TokenRefreshMarginSeconds), and the provider's defaults.
LIFETIME, SERVER_MARGIN, MIN_TTL, CLIENT_MARGIN = 3600, 300, 60, 240


class HandlerTransport:
    """The client's ``Transport`` onto one simulated Lambda container of the vend function: its handler,
    one invocation at a time."""

    def __init__(self, module: Any) -> None:
        self._module = module
        self._invocation = threading.Lock()

    def request(self, method: str, path: str, *, query: Mapping[str, str] | None = None, body: object = None) -> Any:
        from zus_local.lambda_context import LocalLambdaContext
        from zus_m2m_client.transport import HttpResponse

        if method != "GET" or not path.endswith("/token"):
            raise ValueError(f"the benchmark serves the token route only, not {method} {path}")
        event = token_event(CLIENT, 0)
        event["queryStringParameters"] = dict(query or {})
        event["rawQueryString"] = "&".join(f"{key}={value}" for key, value in (query or {}).items())
        with self._invocation:
            answer = self._module.lambda_handler(event, LocalLambdaContext("TokenVendingFunction", timeout_seconds=10))
        headers = {key.lower(): value for key, value in answer.get("headers", {}).items()}
        return HttpResponse(answer["statusCode"], headers, answer.get("body", "").encode())


def run(args: argparse.Namespace) -> dict[str, Any]:
    from zus_m2m_client import TokenProvider

    lifetime = LIFETIME / args.scale
    os.environ.update({k: v for k, v in environment("", "", 0).items() if k.startswith("AWS_") and v})
    with servers() as (moto, zus):
        provision(moto, zus, round(lifetime))
        os.environ.update(environment(moto, zus, round(SERVER_MARGIN / args.scale)))
        # The handlers log and print EMF metrics on stdout, as on Lambda: kept off the bench's output.
        saved = os.dup(1)
        log, _ = tempfile.mkstemp(prefix="bench-client-", suffix=".log")
        os.dup2(log, 1)
        try:
            containers = [HandlerTransport(load_handler()) for _ in range(args.containers)]
            providers = []
            for number in range(args.processes):
                transport = CountingTransport(containers[number % len(containers)])
                provider = TokenProvider(
                    "https://zus-m2m.invalid",
                    CLIENT,
                    transport=transport,
                    min_ttl=MIN_TTL / args.scale,
                    refresh_margin=CLIENT_MARGIN / args.scale,
                )
                providers.append((provider, transport))
            zus_calls, failed = service_calls(providers, args)
        finally:
            os.dup2(saved, 1)
    vend = [len(transport.called_at) for _, transport in providers]
    scaled_hours = args.seconds / (HOUR / args.scale)
    # The steady state: the mean time between a process's calls (its first, at start, opens the first gap).
    gaps = [later - earlier for _, t in providers for earlier, later in itertools.pairwise(t.called_at)]
    mean_gap = statistics.mean(gaps) * args.scale if gaps else math.inf
    return {
        "scale": args.scale,
        "token_lifetime_seconds": LIFETIME,
        "processes": args.processes,
        "threads_per_process": args.threads,
        "zus_api_calls": zus_calls,
        "zus_api_calls_per_process_second": round(args.calls_per_second * args.threads, 2),
        "failed_calls": failed,
        "scaled_hours": round(scaled_hours, 2),
        "vend_calls": sum(vend),
        "vend_calls_per_process": vend,
        "mean_seconds_between_vend_calls": round(mean_gap, 1),
        "vend_calls_per_process_hour": round(HOUR / mean_gap, 3),
    }


class CountingTransport:
    """One process's transport: when it called the token route."""

    def __init__(self, inner: HandlerTransport) -> None:
        self._inner = inner
        self.called_at: list[float] = []

    def request(self, method: str, path: str, *, query: Mapping[str, str] | None = None, body: object = None) -> Any:
        self.called_at.append(time.monotonic())
        return self._inner.request(method, path, query=query, body=body)


def service_calls(providers: list[tuple[Any, CountingTransport]], args: argparse.Namespace) -> tuple[int, int]:
    """Every process's threads make Zus API calls for ``args.seconds``, each taking a token first."""
    deadline = time.monotonic() + args.seconds
    pause = 1.0 / args.calls_per_second
    counts = {"calls": 0, "failed": 0}
    lock = threading.Lock()

    def service(provider: Any) -> None:
        while time.monotonic() < deadline:
            try:
                provider.get_token()
                outcome = "calls"
            except Exception:  # a failed call is counted, and the service goes on as a real one would
                outcome = "failed"
            with lock:
                counts[outcome] += 1
            time.sleep(pause)

    threads = [
        threading.Thread(target=service, args=(provider,)) for provider, _ in providers for _ in range(args.threads)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return counts["calls"] + counts["failed"], counts["failed"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=8, help="simulated service processes")
    parser.add_argument("--threads", type=int, default=4, help="threads of each process making Zus API calls")
    parser.add_argument("--calls-per-second", type=float, default=5.0, help="each thread's Zus API calls a second")
    parser.add_argument("--containers", type=int, default=2, help="simulated Lambda containers of the vend function")
    parser.add_argument("--scale", type=float, default=60.0, help="how many times faster than production time runs")
    parser.add_argument("--seconds", type=float, default=240.0, help="how long the processes run")
    parser.add_argument("--record", action="store_true", help=f"also write the JSON to {RECORD.relative_to(ROOT)}")
    args = parser.parse_args()
    print(
        f"running {args.processes} processes x {args.threads} threads for {args.seconds:.0f} s "
        f"({args.seconds / (HOUR / args.scale):.1f} hours scaled {args.scale:g} times) ...",
        flush=True,
    )
    figures = run(args)
    for name, value in figures.items():
        print(f"{name:<36} {value!s:>12}")
    if args.record:
        RECORD.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
    print(json.dumps(figures, sort_keys=True))
    if figures["failed_calls"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
