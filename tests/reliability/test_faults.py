"""Faults: Zus failing under the service (5xx, 429, latency beyond the client's timeout, dropped
connections, at 10 %, 30 % and 100 %) on the token endpoint and on the admin routes, and moto (AWS)
stopped and started again mid-run. On the token endpoint also Auth0's own refusals: credentials refused
(401 ``access_denied``) and the tenant-wide limit (500 ``access_denied`` "Global limit has been
reached"), each worded in the dialect Zus's auth server speaks (Auth0's; the long profile repeats the
cases in RFC 6749's).

The contract checked on every answer: while a token with time left exists, every vend call returns it
(200); otherwise 429 or 503, problem+json with Retry-After; never a 500, never an answer slower than
the function's timeout (template.yaml). Provisioning under admin-route faults answers 503 with
Retry-After, never leaves a duplicate or orphan Zus client, and succeeds once the faults clear.
"""

from __future__ import annotations

import functools
import math
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from reliability_calls import Answer, retry_after, until_answered
from reliability_contract import TIMEOUTS, shown, token_issues, violations
from reliability_fixtures import Context
from reliability_results import RESULTS
from reliability_support import SOAK, fingerprint, parallel, profile, unique

from zus_m2m import wiring
from zus_m2m.tokens.policy import VendingPolicy
from zus_m2m.zus.client import DEFAULT_TIMEOUT

RATES = (0.1, 0.3, 1.0)
# Read timeouts of the Zus client each function uses: the latency fault goes one second beyond them.
VEND_READ_TIMEOUT = getattr(wiring, "TOKEN_VENDING_ZUS_TIMEOUT", DEFAULT_TIMEOUT)[1]
ADMIN_READ_TIMEOUT = DEFAULT_TIMEOUT[1]


def fault_spec(kind: str, read_timeout: float) -> dict[str, Any]:
    if kind == "latency":
        return {"latencyMs": int((read_timeout + 1.0) * 1000)}
    if kind == "drop":
        return {"drop": True}
    if kind == "global":
        return {"globalLimit": True, "retryAfter": 1}
    return {"status": int(kind), "retryAfter": 1}


def label(kind: str) -> str:
    special = {
        "latency": "latency > timeout",
        "drop": "dropped connection",
        "401": "credentials refused (401)",
        "global": "Auth0 global limit (500)",
    }
    return special.get(kind, f"HTTP {kind}")


# The fast profile runs every kind at every rate on the token endpoint (the latency ones cost a
# client timeout each) in Auth0's dialect, and a cheaper cut on the admin routes; the long profile
# runs everything, the token endpoint's cases in RFC 6749's dialect too (the global limit is Auth0's).
TOKEN_KINDS = profile(
    ("500", "429", "drop", "latency", "401", "global"), ("500", "503", "429", "drop", "latency", "401", "global")
)
# Latency at 10 % and 30 % waits out a client timeout per hit and proves what 100 % does: long profile.
TOKEN_CASES = [
    (dialect, kind, rate)
    for dialect in profile(("auth0",), ("auth0", "rfc6749"))
    for kind in TOKEN_KINDS
    for rate in RATES
    if (dialect == "auth0" or kind != "global") and (SOAK or kind != "latency" or rate == 1.0)
]
# Latency on the admin routes (the case that found a duplicate client) costs up to the function's 29 s a
# case, waiting out the Zus client's timeouts: the long profile runs it.
ADMIN_CASES = profile(
    [("503", 0.3), ("500", 1.0), ("429", 1.0), ("drop", 0.3), ("drop", 1.0)],
    [(kind, rate) for kind in ("500", "503", "429", "drop", "latency") for rate in RATES],
)

POLICY = VendingPolicy()
# The failure memory's jitter takes at most this share off a back-off (``UpstreamTokens.failed``).
JITTER_FLOOR = 0.8


def attempts_allowed(kind: str, span: float, minted: int) -> int:
    """The most token requests the shared back-off lets a client send in ``span`` seconds in which
    ``minted`` of them succeeded: between two successes, a chain of failures each followed by the back-off
    (a 429 or Auth0's global limit by its Retry-After, 1 s here); one request per fetch, the refused
    credentials' fetch up to ``refused_attempts`` (its fallback through the stored versions)."""
    chain, waited = 1, 0.0
    while True:
        # The policy's documented back-off, modelled here (not its ``backoff``, the line under test).
        backoff = min(POLICY.max_backoff, POLICY.first_backoff * 2.0 ** (chain - 1))
        pause = 1.0 if kind in ("429", "global") else JITTER_FLOOR * backoff
        if waited + pause > span:
            break
        waited += pause
        chain += 1
    per_fetch = POLICY.refused_attempts if kind == "401" else 1
    return (minted + (minted + 1) * chain) * per_fetch


COLD_CLIENTS = profile(3, 6)
# After a case's wave, rounds of calls that need Zus while its fault has not fired: until Zus got so
# many token requests that a working injector would have fired but for a chance under one in a million
# ((1 - rate) ** n), at most MAX_ROUNDS (not every round reaches Zus: a broken injector fails the case).
UNLUCKY = 1e-6
MAX_ROUNDS = 200
CALLS_PER_COLD = profile(4, 12)
WARM_CALLS = profile(8, 40)
WORKERS = profile(8, 16)


def zus_requests(ctx: Context, before: dict[str, int]) -> int:
    """Token requests Zus counted since ``before`` (its count by client then)."""
    return sum(count - before.get(client, 0) for client, count in ctx.emulator.stats()["tokenRequests"].items())


@pytest.fixture(scope="module")
def warm(ctx: Context) -> dict[str, Any]:
    """A client whose token is cached before any fault: every vend of it must answer 200 with it."""
    record = ctx.provision("warm")
    answer = ctx.api.vend(record["name"])
    assert answer.status == 200, answer.body
    return {"record": record, "token": answer.json()["access_token"]}


# --- the token endpoint ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("dialect", "kind", "rate"), TOKEN_CASES, ids=[f"{d}-{k}-{r:.0%}" for d, k, r in TOKEN_CASES])
def test_token_endpoint_faults(
    clean_faults: Context, warm: dict[str, Any], dialect: str, kind: str, rate: float
) -> None:
    ctx = clean_faults
    scenario = f"faults ({dialect}): /oauth/token {label(kind)} at {rate:.0%}"
    cold = [ctx.provision("cold") for _ in range(COLD_CLIENTS)]
    for record in cold:
        ctx.aws.forget_token(record["name"])  # the next vend of it needs Zus
    calls: list[dict[str, Any]] = [record for record in cold for _ in range(CALLS_PER_COLD)]
    calls += [warm["record"]] * WARM_CALLS
    random.shuffle(calls)

    def vend(record: dict[str, Any]) -> tuple[dict[str, Any], Answer]:
        return record, ctx.api.vend(record["name"])

    def top_up(record: dict[str, Any]) -> tuple[dict[str, Any], Answer]:
        """A vend of a cold client that needs Zus again: it reports its last token refused (one new
        token replaces it), or asks for its first."""
        held = latest.get(record["name"])
        ctx.aws.replaceable_on_report(record["name"])  # reports are limited (issue 22): not this test's subject
        return record, ctx.api.vend(record["name"], refused=None if held is None else fingerprint(held))

    latest: dict[str, str] = {}
    fired_before = ctx.emulator.faults_fired()
    requests_before = ctx.emulator.stats()["tokenRequests"]
    topped_up: list[tuple[dict[str, Any], Answer]] = []
    with (
        ctx.emulator.speaking(dialect),
        ctx.emulator.faulted(**fault_spec(kind, VEND_READ_TIMEOUT), rate=rate, paths=["/oauth/token"]),
    ):
        answered = parallel(vend, calls, WORKERS)
        # At 10 % the wave sends Zus a few token requests and may meet no fault: more rounds that each
        # need Zus, until the fault has fired (a CI run once met none in 56 requests, as 0.3 % of runs do).
        enough = math.ceil(math.log(UNLUCKY) / math.log(1 - rate)) if rate < 1 else 1
        for _ in range(MAX_ROUNDS):
            if ctx.emulator.faults_fired() > fired_before or zus_requests(ctx, requests_before) >= enough:
                break
            pause = max((retry_after(a) for _, a in answered + topped_up if a.status in (429, 503)), default=0.0)
            time.sleep(min(pause, 1.0))  # the failure memory's back-off: no container asks Zus before
            for record, answer in answered + topped_up:
                if answer.status == 200:
                    latest[record["name"]] = answer.json()["access_token"]
            topped_up += parallel(top_up, cold, WORKERS)
    fired = ctx.emulator.faults_fired() - fired_before
    requests_after = ctx.emulator.stats()["tokenRequests"]

    problems: list[str] = []
    # Zus's own count (the faulted requests and those that reached the grant) within what the shared
    # back-off allows each client in the span of its calls.
    reached = sum(
        requests_after.get(record["clientId"], 0) - requests_before.get(record["clientId"], 0)
        for record in [*cold, warm["record"]]
    )
    allowed = 0
    for record in cold:
        mine = [answer for owner, answer in answered + topped_up if owner is record]
        span = max(answer.ended for answer in mine) - min(answer.started for answer in mine)
        minted = sum(1 for answer in mine if answer.status == 200 and answer.headers.get("x-token-source") == "zus")
        allowed += attempts_allowed(kind, span, minted)
    if fired + reached > allowed:
        problems.append(f"Zus got {fired + reached} token requests, more than the back-off allows ({allowed})")
    RESULTS.notes.append(f"{scenario}: {fired + reached} token requests at Zus (the back-off allows {allowed})")
    for record, answer in answered + topped_up:
        problems += violations(answer, {200, 429, 503}, TIMEOUTS["token"])
        if answer.status == 200:
            problems += token_issues(answer, record["clientId"])
    if not fired:
        problems.append(f"the fault never fired ({len(answered) + len(topped_up)} vend calls)")
    # While a token with time left exists, every vend call returns it.
    for _, answer in (pair for pair in answered if pair[0] is warm["record"]):
        if answer.status != 200 or answer.json()["access_token"] != warm["token"]:
            problems.append(f"the warm client's cached token was not served: {answer.status}")
    for record in cold:
        mine = [answer for owner, answer in answered if owner is record]
        served = [answer.ended for answer in mine if answer.status == 200]
        if served:
            first = min(served)
            late = [answer for answer in mine if answer.started > first and answer.status != 200]
            problems += [f"{record['name']}: {a.status} after a token was cached" for a in late]

    # Once the faults clear, every client gets its token.
    recovered = [until_answered(functools.partial(ctx.api.vend, record["name"]), {200}, 20) for record in cold]
    problems += [
        f"{answer.path}: {answer.status} after the faults cleared" for answer in recovered if answer.status != 200
    ]

    row = RESULTS.row(scenario)
    row.add([answer for _, answer in answered + topped_up], bad=len(problems))
    row.fired(fired)
    assert not problems, "\n".join(problems[:20])


# --- the admin routes -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "rate"), ADMIN_CASES, ids=[f"{k}-{r:.0%}" for k, r in ADMIN_CASES])
def test_admin_route_faults(clean_faults: Context, kind: str, rate: float) -> None:
    ctx = clean_faults
    scenario = f"faults: /auth/* {label(kind)} at {rate:.0%}"
    to_delete = [ctx.provision("retire")["name"] for _ in range(profile(1, 3))]
    to_create = [unique("new") for _ in range(profile(3, 6))]
    before = ctx.emulator.stats()["appClients"]
    jobs = [("create", name) for name in to_create] + [("delete", name) for name in to_delete]

    def run(job: tuple[str, str]) -> tuple[str, str, Answer]:
        action, name = job
        return action, name, ctx.api.create(name) if action == "create" else ctx.api.delete(name)

    fired_before = ctx.emulator.faults_fired()
    with ctx.emulator.faulted(**fault_spec(kind, ADMIN_READ_TIMEOUT), rate=rate, paths=["/auth/"]):
        answered = parallel(run, jobs, WORKERS)
        # Until the fault has fired: one more create at a time (a broken injector fails the case).
        for _ in range(MAX_ROUNDS):
            if ctx.emulator.faults_fired() > fired_before:
                break
            to_create.append(unique("new"))
            answered.append(run(("create", to_create[-1])))
    fired = ctx.emulator.faults_fired() - fired_before

    problems: list[str] = [] if fired else [f"the fault never fired ({len(answered)} calls)"]
    for action, _, answer in answered:
        allowed = {201, 503} if action == "create" else {204, 503}
        problems += violations(answer, allowed, TIMEOUTS["provisioning"])
    # Once the faults clear, every create and delete succeeds when repeated.
    for action, name, answer in answered:
        if answer.status in (503,):
            if action == "create":
                again = until_answered(functools.partial(ctx.api.create, name), {200, 201}, 60)
            else:
                again = until_answered(functools.partial(ctx.api.delete, name), {204}, 60)
            if again.status >= 300:
                problems.append(f"{action} {name}: {again.status} after the faults cleared: {shown(again.body, 200)}")
    after = ctx.emulator.stats()["appClients"]
    if after - before != len(to_create) - len(to_delete):
        problems.append(f"Zus has {after - before:+d} app clients, expected {len(to_create) - len(to_delete):+d}")

    row = RESULTS.row(scenario)
    row.add([answer for _, _, answer in answered], bad=len(problems))
    row.fired(fired)
    assert not problems, "\n".join(problems[:20])


# --- moto stopped and started again -------------------------------------------------------------------------


def test_moto_restart(clean_faults: Context) -> None:
    """moto's port closes (connections refused, open ones cut) for a while and opens again with the
    state it had, as AWS endpoints come back after an outage. Meanwhile: 200 from a container's
    memory or 503 problem+json with Retry-After; afterwards every client recovers."""
    ctx = clean_faults
    outage = profile(4.0, 20.0)
    scenario = f"moto stopped {outage:.0f} s, restarted"
    known = [ctx.provision("outage") for _ in range(3)]
    for record in known:
        assert ctx.api.vend(record["name"]).status == 200
    new_name = unique("outage-new")
    answered: list[tuple[str, Answer]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def load(worker: int) -> None:
        while not stop.is_set():
            name = known[worker % len(known)]["name"]
            calls: list[tuple[str, Callable[[], Answer]]] = [
                ("vend", functools.partial(ctx.api.vend, name)),
                ("get", functools.partial(ctx.api.get, name)),
            ]
            if worker == 0:
                calls.append(("create", lambda: ctx.api.create(new_name)))
            for what, call in calls:
                answer = call()
                with lock:
                    answered.append((what, answer))

    ctx.moto.stop()
    stopped_at = time.monotonic()
    try:
        workers = [threading.Thread(target=load, args=(n,)) for n in range(4)]
        for worker in workers:
            worker.start()
        time.sleep(outage)
        stop.set()
        for worker in workers:
            worker.join(timeout=60)
    finally:
        ctx.moto.start()
    downtime = time.monotonic() - stopped_at

    problems: list[str] = []
    for what, answer in answered:
        allowed = {"vend": {200, 503}, "get": {200, 503}, "create": {201, 503}}[what]
        timeout = TIMEOUTS["token" if what == "vend" else "provisioning"]
        problems += violations(answer, allowed, timeout)
    refused = sum(1 for _, answer in answered if answer.status == 503)
    if not refused:
        problems.append("no call noticed that moto was down")
    after = [until_answered(functools.partial(ctx.api.vend, record["name"]), {200}, 30) for record in known]
    created = until_answered(lambda: ctx.api.create(new_name), {200, 201}, 60)
    problems += [f"{a.path}: {a.status} after moto came back" for a in [*after, created] if a.status >= 300]

    row = RESULTS.row(scenario)
    row.add([answer for _, answer in answered], bad=len(problems))
    row.fired(refused)  # the outage is no emulator fault: the calls that met it
    assert downtime >= outage
    assert not problems, "\n".join(problems[:20])
