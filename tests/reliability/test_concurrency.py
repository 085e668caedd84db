"""Concurrency: many callers at once on one client.

20 parallel creates of one name make one Zus client; 10 parallel rotation requests start one rotation
(202 once, 409 for the rest, one new secret version); 200 parallel vend calls while a rotation runs
all answer 200 with a valid token of the client; 100 parallel reports of one refused token mint one
new token, which all of them get.
"""

from __future__ import annotations

import threading
import time

import pytest
from reliability_support import (
    RESULTS,
    TIMEOUTS,
    Answer,
    fingerprint,
    parallel,
    profile,
    token_issues,
    unique,
    violations,
)


def wait_for_rotation(ctx, name: str, before: str, timeout: float = 30.0) -> str:
    """The new AWSCURRENT version once the rotation finished (no AWSPENDING left)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        described = ctx.aws.secretsmanager.describe_secret(SecretId=ctx.aws.secret_id(name))
        stages = described["VersionIdsToStages"]
        current = next(version for version, labels in stages.items() if "AWSCURRENT" in labels)
        pending = [version for version, labels in stages.items() if "AWSPENDING" in labels]
        if current != before and not pending:
            return current
        time.sleep(0.1)
    pytest.fail(f"the rotation of {name} did not finish within {timeout:.0f} s")


def current_version(ctx, name: str) -> str:
    stages = ctx.aws.secretsmanager.describe_secret(SecretId=ctx.aws.secret_id(name))["VersionIdsToStages"]
    return next(version for version, labels in stages.items() if "AWSCURRENT" in labels)


@pytest.mark.parametrize("round_", range(profile(1, 5)), ids=lambda n: f"round{n}")
def test_parallel_creates_of_one_name_make_one_client(clean_faults, round_: int) -> None:
    ctx = clean_faults
    name = unique("same-name")
    before = ctx.emulator.stats()["appClients"]
    answers = parallel(lambda _: ctx.api.create(name), list(range(20)), 20)

    problems: list[str] = []
    for answer in answers:
        problems += violations(answer, {200, 201}, TIMEOUTS["provisioning"])
    created = [answer for answer in answers if answer.status == 201]
    if len(created) != 1:
        problems.append(f"{len(created)} answers were 201, expected exactly one")
    records = {answer.json()["appClientId"] for answer in answers if answer.status in (200, 201)}
    if len(records) != 1:
        problems.append(f"the answers name {len(records)} different Zus clients")
    delta = ctx.emulator.stats()["appClients"] - before
    if delta != 1:
        problems.append(f"Zus has {delta} new app clients, expected 1")
    integrity = ctx.integrity([name])

    row = RESULTS.row("concurrency: 20 parallel creates of one name")
    row.add(answers, bad=len(problems))
    row.data_lost += integrity.lost
    assert not problems, "\n".join(problems)
    assert not integrity.problems, integrity.problems


@pytest.mark.parametrize("round_", range(profile(1, 5)), ids=lambda n: f"round{n}")
def test_parallel_rotation_requests_start_one_rotation(clean_faults, round_: int) -> None:
    ctx = clean_faults
    record = ctx.provision("rotate-once")
    name = record["name"]
    versions_before = ctx.aws.version_count(name)
    current_before = current_version(ctx, name)
    answers = parallel(lambda _: ctx.api.rotate(name), list(range(10)), 10)

    problems: list[str] = []
    for answer in answers:
        problems += violations(answer, {202, 409}, TIMEOUTS["provisioning"])
    started = [answer for answer in answers if answer.status == 202]
    if len(started) != 1:
        problems.append(f"{len(started)} answers were 202, expected exactly one: {[a.status for a in answers]}")
    wait_for_rotation(ctx, name, current_before)
    new_versions = ctx.aws.version_count(name) - versions_before
    if new_versions != 1:
        problems.append(f"{new_versions} new secret versions, expected 1")
    vend = ctx.api.vend(name, min_ttl=0)
    if vend.status != 200:
        problems.append(f"no token after the rotation: {vend.status}")
    integrity = ctx.integrity([name])

    row = RESULTS.row("concurrency: 10 parallel rotation requests")
    row.add(answers, bad=len(problems))
    row.data_lost += integrity.lost
    assert not problems, "\n".join(problems)
    assert not integrity.problems, integrity.problems


# Seconds a rotated secret takes to take effect at Zus; meanwhile each token request is accepted or
# refused at random, whichever secret it carries (Auth0's behaviour, up to 30 s).
PROPAGATION = profile((0.0, 5.0), (0.0, 2.0, 30.0))


@pytest.mark.parametrize("propagation", PROPAGATION, ids=lambda p: f"propagation{p:g}s")
def test_parallel_vends_during_a_rotation_all_succeed(clean_faults, propagation: float) -> None:
    """The cached token is forgotten first, so the first of the 200 goes to Zus while the secret
    moves: the vendor must find the version Zus accepts whichever order the rotation is in, and while
    Zus accepts either secret at random."""
    ctx = clean_faults
    record = ctx.provision("busy")
    name = record["name"]
    requests_ = 200
    rounds = profile(1, 3)
    answers: list[Answer] = []
    problems: list[str] = []
    during = 0
    ctx.emulator.config(secretPropagationSeconds=propagation)
    try:
        for _ in range(rounds):
            before = current_version(ctx, name)
            ctx.aws.forget_token(name)
            rotation = ctx.api.rotate(name)
            assert rotation.status == 202, rotation.body
            finished: list[float] = []
            watcher = threading.Thread(
                target=lambda b=before, f=finished: f.append(wait_for_rotation(ctx, name, b) and time.monotonic())
            )
            watcher.start()
            wave = parallel(lambda _: ctx.api.vend(name), list(range(requests_)), requests_)
            watcher.join(timeout=40)
            assert finished, "the rotation did not finish"
            # The calls that started before the rotation was seen finished ran during it.
            during += sum(1 for answer in wave if answer.started < finished[0])
            answers += wave
            # and once more right after the rotation finished, from whatever tier holds the token
            answers += parallel(lambda _: ctx.api.vend(name), list(range(50)), 50)
            # Zus rotated before the rotation finished: its window is over by then (checked below).
            time.sleep(max(0.0, finished[0] + propagation - time.monotonic()))
    finally:
        ctx.emulator.config(secretPropagationSeconds=0)
    for answer in answers:
        problems += violations(answer, {200}, TIMEOUTS["token"])
        if answer.status == 200:
            problems += token_issues(answer, record["clientId"])
    if not during:
        problems.append("no vend call ran while the rotation did: the scenario tested nothing")
    integrity = ctx.integrity([name])

    scenario = f"concurrency: {requests_} parallel vends during a rotation" + (
        f" (random secret propagation {propagation:g} s)" if propagation else ""
    )
    row = RESULTS.row(scenario)
    row.add(answers, bad=len(problems))
    row.data_lost += integrity.lost
    print(f"{during} of {requests_ * rounds} vend calls started while the rotation ran")
    assert not problems, "\n".join(problems[:20])
    assert not integrity.problems, integrity.problems


def test_parallel_reports_of_one_refused_token_mint_one_token(clean_faults) -> None:
    """Every caller of a fleet meets Zus's 401 with the same token and reports it at once
    (``?refused=<fingerprint>``): one new token replaces it, for all of them."""
    ctx = clean_faults
    record = ctx.provision("refused")
    name, client_id = record["name"], record["clientId"]
    held = ctx.api.vend(name)
    assert held.status == 200, held.body
    refused = held.json()["access_token"]
    before = ctx.emulator.stats()["tokenRequests"].get(client_id, 0)
    reports = 100

    answers = parallel(lambda _: ctx.api.vend(name, refused=fingerprint(refused)), list(range(reports)), reports)

    problems: list[str] = []
    for answer in answers:
        problems += violations(answer, {200}, TIMEOUTS["token"])
        if answer.status == 200:
            problems += token_issues(answer, client_id)
    tokens = {answer.json()["access_token"] for answer in answers if answer.status == 200}
    if refused in tokens:
        problems.append("a report of the refused token was answered with it")
    if len(tokens) > 1:
        problems.append(f"the reports got {len(tokens)} different tokens, expected the one replacement")
    mints = ctx.emulator.stats()["tokenRequests"].get(client_id, 0) - before
    if mints != 1:
        problems.append(f"{mints} token requests reached Zus, expected 1")
    integrity = ctx.integrity([name])

    row = RESULTS.row(f"concurrency: {reports} parallel reports of one refused token")
    row.add(answers, bad=len(problems))
    row.data_lost += integrity.lost
    print(f"{reports} reports of one refused token: {mints} token request(s) at Zus")
    assert not problems, "\n".join(problems[:20])
    assert not integrity.problems, integrity.problems
