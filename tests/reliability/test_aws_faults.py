"""Faults on the AWS side: DynamoDB, Secrets Manager and SQS throttling (``ThrottlingException``,
DynamoDB's ``ProvisionedThroughputExceededException``), failing (500), stalling beyond the SDK's read
timeout, and dropping connections, at 10 %, 30 % and 100 %, injected by the AWS fault proxy
(``zus_local.aws_fault_proxy``) the session stack's functions call moto through.

* **The vend path**: cold clients (no cached token) and a warm one streamed in parallel; every answer
  200 with a valid token, or 429/503 problem+json with Retry-After, within the function's timeout;
  once the faults clear every client gets its token.
* **A rotation**: requested, then its steps meet the faults; it finishes once they clear, and the
  client's new secret mints (the system check tries every client's secret at Zus).
* **The rotation's memory-only window**: the AWSPENDING write failing right after Zus rotated; how long
  until a token mints again (a note under the table).

The worker's rows are in ``test_queue.py`` (its stack plays SQS's redelivery at 120 times the speed).

Each case repeats its round until its fault fired (a broken injector fails it), and its row counts the
proxy's faults fired.
"""

from __future__ import annotations

import functools
import random
import time
from typing import Any

import pytest
from e2e_support import wait_until
from reliability_calls import Answer, until_answered
from reliability_contract import TIMEOUTS, token_issues, violations
from reliability_fixtures import Context
from reliability_results import RESULTS
from reliability_support import parallel, profile
from test_concurrency import current_version, wait_for_rotation

from zus_local.aws_fault_proxy import AwsFault
from zus_m2m import wiring

RATES = (0.1, 0.3, 1.0)
# botocore's Config sets its options as attributes at run time (its stubs declare none): read as a dict.
AWS_OPTIONS: dict[str, Any] = vars(wiring.AWS_CONFIG)
VENDING_AWS_OPTIONS: dict[str, Any] = vars(wiring.VENDING_AWS_CONFIG)
# The latency fault goes one second beyond the functions' boto3 read timeout.
LATENCY_MS = int((AWS_OPTIONS["read_timeout"] + 1.0) * 1000)
# Attempts the vending function's boto3 client makes of one call (``wiring.VENDING_AWS_CONFIG``).
VEND_ATTEMPTS = int(VENDING_AWS_OPTIONS["retries"]["total_max_attempts"])
MAX_ROUNDS = 20
COLD_CLIENTS = profile(2, 4)
CALLS_PER_COLD = profile(3, 8)
WORKERS = profile(6, 12)
# What the vend path calls: the token cache (DynamoDB) and, for a token from Zus, the client's secret.
VEND_CASES = profile(
    [("dynamodb", "throttle", rate) for rate in RATES] + [("secretsmanager", "500", 0.3), ("dynamodb", "latency", 1.0)],
    [
        (service, kind, rate)
        for service in ("dynamodb", "secretsmanager")
        for kind in ("throttle", "provisioned", "500", "latency", "drop")
        for rate in RATES
        if not (kind == "provisioned" and service != "dynamodb")
    ],
)
# The rotation's steps read and write the secret (Secrets Manager) and the client's record (DynamoDB).
ROTATION_OPERATIONS = frozenset({"GetSecretValue", "PutSecretValue", "UpdateSecretVersionStage", "DescribeSecret"})
ROTATION_CASES = profile(
    [("secretsmanager", "throttle", 0.3), ("secretsmanager", "500", 1.0)],
    [
        (service, kind, rate)
        for service in ("secretsmanager", "dynamodb")
        for kind in ("throttle", "500", "latency", "drop")
        for rate in RATES
    ]
    + [("secretsmanager", "lost", 1.0)],
)
# The "lost" case: every answer to createSecret's AWSPENDING write lost after the write landed, until
# createSecret gives up (its patience, 30 s) and Secrets Manager's retry of the step finds the stored
# value: it must not rotate at Zus again (that secret could never be stored under the same version).
LOST_OPERATIONS = frozenset({"PutSecretValue"})


def fault(service: str, kind: str, rate: float, operations: frozenset[str] = frozenset()) -> AwsFault:
    return AwsFault(service, kind, rate, operations, LATENCY_MS if kind == "latency" else 0)


def case_id(service: str, kind: str, rate: float) -> str:
    return f"{service}-{kind}-{rate:.0%}"


@pytest.mark.parametrize(("service", "kind", "rate"), VEND_CASES, ids=[case_id(*case) for case in VEND_CASES])
def test_vend_path_under_aws_faults(clean_faults: Context, service: str, kind: str, rate: float) -> None:
    ctx = clean_faults
    scenario = f"aws faults: vend path, {service} {kind} at {rate:.0%}"
    cold = [ctx.provision("aws-cold") for _ in range(COLD_CLIENTS)]

    def vend(record: dict[str, Any]) -> tuple[dict[str, Any], Answer]:
        return record, ctx.api.vend(record["name"])

    answered: list[tuple[dict[str, Any], Answer]] = []
    fired_before, seen_before = ctx.proxy.fired(service), ctx.proxy.seen(service)
    # Each round forgets the cold clients' tokens (the next vend needs the cache, the secret and Zus)
    # until the fault has fired. A container keeps a secret it read in memory: the Secrets Manager
    # cases take new clients each round (provisioned with the faults off).
    for round_ in range(MAX_ROUNDS):
        if round_ and service == "secretsmanager":
            cold += [ctx.provision("aws-cold") for _ in range(COLD_CLIENTS)]
        fresh = cold[-COLD_CLIENTS:] if service == "secretsmanager" else cold
        for record in fresh:
            ctx.aws.forget_token(record["name"])
        calls = [record for record in fresh for _ in range(CALLS_PER_COLD)]
        random.shuffle(calls)
        with ctx.proxy.faulted(fault(service, kind, rate)):
            answered += parallel(vend, calls, WORKERS)
        if ctx.proxy.fired(service) > fired_before:
            break
    fired = ctx.proxy.fired(service) - fired_before
    seen = ctx.proxy.seen(service) - seen_before

    problems: list[str] = [] if fired else [f"the fault never fired ({len(answered)} vend calls)"]
    # Every call fails at 100 %: each vend call stops at its first failed AWS call, after the client's
    # attempts of it (no retry loop around boto3's own).
    if rate == 1.0 and seen > VEND_ATTEMPTS * len(answered):
        problems.append(f"{seen} {service} requests for {len(answered)} vend calls, over {VEND_ATTEMPTS} each")
    for record, answer in answered:
        problems += violations(answer, {200, 429, 503}, TIMEOUTS["token"])
        if answer.status == 200:
            problems += token_issues(answer, record["clientId"])
    # Once the faults clear, every client gets its token.
    recovered = [until_answered(functools.partial(ctx.api.vend, record["name"]), {200}, 30) for record in cold]
    problems += [f"{a.path}: {a.status} after the faults cleared" for a in recovered if a.status != 200]

    row = RESULTS.row(scenario)
    row.add([answer for _, answer in answered], bad=len(problems))
    row.fired(fired)
    assert not problems, "\n".join(problems[:20])


@pytest.mark.parametrize(("service", "kind", "rate"), ROTATION_CASES, ids=[case_id(*case) for case in ROTATION_CASES])
def test_rotation_under_aws_faults(clean_faults: Context, service: str, kind: str, rate: float) -> None:
    ctx = clean_faults
    scenario = f"aws faults: rotation, {service} {kind} at {rate:.0%}"
    record = ctx.provision("aws-rotate")
    name = record["name"]
    operations = ROTATION_OPERATIONS if service == "secretsmanager" else frozenset()
    operations = LOST_OPERATIONS if kind == "lost" else operations
    answers: list[Answer] = []
    problems: list[str] = []
    fired_before = ctx.proxy.fired(service)
    # Each round requests a rotation (faults off: the request is not the subject) and turns the faults on
    # while its steps run, until a fault hit one of them; the rotation then finishes once they clear.
    for _ in range(MAX_ROUNDS):
        before = current_version(ctx, name)
        requested = until_answered(lambda: ctx.api.rotate(name), {202}, 30)
        answers.append(requested)
        if requested.status != 202:
            problems.append(f"rotation request: {requested.status}")
            break
        with ctx.proxy.faulted(fault(service, kind, rate, operations)):
            if kind == "lost":
                finished = False
                _step_failed(ctx, name, "createSecret")
            else:
                finished = _finished_or_faulted(ctx, name, before, service)
        wait_for_rotation(ctx, name, before, timeout=90)
        if ctx.proxy.fired(service) > fired_before and not finished:
            break
    fired = ctx.proxy.fired(service) - fired_before
    if not fired:
        problems.append("the fault never fired")
    # The new secret mints: a vend with no cached token asks Zus with it.
    ctx.aws.forget_token(name)
    vend = until_answered(lambda: ctx.api.vend(name), {200}, 30)
    answers.append(vend)
    problems += violations(vend, {200}, TIMEOUTS["token"])
    if vend.status == 200:
        problems += token_issues(vend, record["clientId"])

    row = RESULTS.row(scenario)
    row.add(answers, bad=len(problems))
    row.fired(fired)
    assert not problems, "\n".join(problems[:20])


def _finished_or_faulted(ctx: Context, name: str, before: str, service: str) -> bool:
    """Wait (on Secrets Manager's state and the proxy's count) until the rotation finished (True) or a
    fault hit one of its calls, and a few more of its calls met the faults (False)."""
    fired_at_start = ctx.proxy.fired(service)
    seen_at_start = ctx.proxy.seen(service)
    for _ in range(600):
        stages = ctx.aws.secretsmanager.describe_secret(SecretId=ctx.aws.secret_id(name))["VersionIdsToStages"]
        current = next(version for version, labels in stages.items() if "AWSCURRENT" in labels)
        pending = any("AWSPENDING" in labels and version != current for version, labels in stages.items())
        if current != before and not pending:
            return True
        if ctx.proxy.fired(service) > fired_at_start and ctx.proxy.seen(service) >= seen_at_start + 6:
            return False
        ctx.proxy.wait_for_request(timeout=0.5)
    return False


def _step_failed(ctx: Context, name: str, step: str, timeout: float = 90.0) -> None:
    """Until the rotation player printed that ``step`` of the client's rotation failed once."""
    failed = f"rotation {ctx.aws.secret_id(name)}  {step}  failed"
    wait_until(lambda: any(failed in line for line in list(ctx.stack.lines)), timeout, f"{step} of {name} to fail")


# --- the rotation's memory-only window --------------------------------------------------------------------


def test_the_memory_only_window_of_a_rotation(clean_faults: Context) -> None:
    """Between Zus's rotate-secret answer and the AWSPENDING write the new secret exists only in the
    rotation function's memory, and Zus has retired the old one (no propagation window here). The write
    fails there: every attempt of the function's boto3 client (a 500 each), as a crash there would.
    Cold vend calls (the client's token forgotten before each) probe until one mints; the window is
    from the first failed write to that mint. Asserted: createSecret does not fail (the write is tried
    again within the invocation, so Zus is not asked to rotate again) and tokens mint again."""
    ctx = clean_faults
    record = ctx.provision("aws-window")
    name = record["name"]
    before = current_version(ctx, name)
    attempts = int(AWS_OPTIONS["retries"]["max_attempts"]) + 1  # botocore's max_attempts counts retries
    put = frozenset({"PutSecretValue"})
    fired_before = ctx.proxy.fired("secretsmanager", put)
    started = len(ctx.stack.lines)
    probes: list[tuple[float, Answer]] = []
    with ctx.proxy.faulted(AwsFault("secretsmanager", "500", 1.0, put, limit=attempts)):
        assert ctx.api.rotate(name).status == 202
        # The window opens when the write first fails (Zus answered just before).
        while ctx.proxy.fired("secretsmanager", put) == fired_before:
            ctx.proxy.wait_for_request(timeout=0.5)
        opened = time.monotonic()
        for _ in range(2000):
            ctx.aws.forget_token(name)
            answer = ctx.api.vend(name)
            probes.append((time.monotonic(), answer))
            if answer.status == 200:
                break
    minted = next((at for at, answer in probes if answer.status == 200), None)
    wait_for_rotation(ctx, name, before, timeout=60)
    lines = ctx.stack.lines[started:]
    failed_creates = [line for line in lines if f"/{name}  createSecret  failed" in line]

    problems: list[str] = []
    if ctx.proxy.fired("secretsmanager", put) - fired_before < attempts:
        problems.append("the write did not fail on every attempt of one call")
    if minted is None:
        problems.append(f"no token minted in {len(probes)} cold calls after the window opened")
    problems += [f"createSecret failed (Zus is asked to rotate again): {line.strip()}" for line in failed_creates]
    for _, answer in probes:
        problems += violations(answer, {200, 503}, TIMEOUTS["token"])
    window = (minted - opened) if minted is not None else float("nan")
    refused = sum(1 for _, answer in probes if answer.status != 200)
    RESULTS.notes.append(
        f"rotation's memory-only window (PutSecretValue failing {attempts} times after Zus rotated): "
        f"{window:.2f} s until a token minted, {refused} cold calls answered 503 meanwhile, "
        f"{len(failed_creates)} createSecret invocations failed"
    )
    row = RESULTS.row("aws faults: rotation, the AWSPENDING write failing right after Zus rotated")
    row.add([answer for _, answer in probes], bad=len(problems))
    row.fired(ctx.proxy.fired("secretsmanager", put) - fired_before)
    assert not problems, "\n".join(problems[:20])
