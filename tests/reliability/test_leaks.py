"""Leaks: the end-to-end flow (provision → token → rotation → token → delete, with refusals and Zus
faults along the way) on its own local stack at POWERTOOLS_LOG_LEVEL=DEBUG with event logging on,
90-second tokens (inside the 300 s refresh margin: every vend refreshes ahead, so secrets are used
again and again) and the
pre-refresh schedule firing every second.

Captured: every line the stack printed (the handlers' JSON logs, the EMF metrics documents, the
emulator's request lines, the scheduler's and rotation player's lines, any traceback) and every HTTP
answer (status line, headers, body). There are no trace documents to capture: the handlers carry no
X-Ray SDK and no Powertools Tracer (template.yaml's ``Tracing: Active`` makes Lambda record its own
segments, which hold no request data).

Asserted: no client secret (every version of every secret moto holds, and the bootstrap admin's)
appears anywhere, and no access token (every token a token route answered or DynamoDB cached, sampled
after every step) appears anywhere but in the body of the token route's 200 answers.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from local_stack_process import StackProcess
from reliability_calls import Api, until_answered
from reliability_integrity import SystemCheck
from reliability_leaks import scan_for_leaks, signing_secrets
from reliability_outside import Aws, Emulator
from reliability_results import RESULTS
from reliability_stack import MotoControl, start_reliability_stack
from reliability_support import ADMIN_CLIENT_SECRET, TOKEN_ROUTE, unique


@pytest.fixture(scope="module")
def leak_stack() -> Iterator[tuple[StackProcess, MotoControl]]:
    moto = MotoControl()
    stack = None
    try:
        stack = start_reliability_stack(
            moto, "--schedule-scale", "60", "--env", "POWERTOOLS_LOGGER_LOG_EVENT=true", "--stack-name", "zus-m2m-leaks"
        )
        yield stack, moto
    finally:
        if stack is not None:
            stack.terminate(timeout=20)
        moto.close()


def test_no_secret_or_token_leaks_through_logs_metrics_or_answers(leak_stack: tuple[StackProcess, MotoControl]) -> None:
    stack, moto = leak_stack
    api = Api(stack.api, stack.credentials_file)
    emulator = Emulator(stack.zus)
    aws = Aws(moto.url, "zus-m2m-leaks")
    tokens: set[str] = set()
    secrets: set[str] = {ADMIN_CLIENT_SECRET} | signing_secrets(stack.credentials_file)

    def sample() -> None:
        """Tokens cached now, and every secret version stored now (a deleted secret cannot be read)."""
        tokens.update(aws.cached_tokens())
        secrets.update(aws.every_secret_value())

    emulator.config(tokenLifetimeSeconds=90)
    name = unique("leaky")
    other = unique("leaky-other")
    try:
        assert api.create(name).status == 201
        assert api.create(other, "Care Team User").status == 201
        sample()
        for _ in range(3):
            assert api.vend(name, min_ttl=5).status == 200
            assert api.vend(other, min_ttl=5).status == 200
        sample()
        assert api.get(name).status == 200
        assert api.call("GET", "/app-clients").status == 200
        # refusals: each logs why, none may echo more than it should
        assert api.vend("no-such-client").status == 403  # a consumer does not learn which names exist
        assert api.vend(name, min_ttl=-1).status == 400
        assert api.vend(name, min_ttl=100).status == 422  # tokens live 90 s
        assert (
            api.call("POST", "/app-clients", data=b'{"name": 1}', headers={"content-type": "application/json"}).status
            == 400
        )
        assert api.create(name, "Care Team User").status == 409
        # Zus failing: the vendor's fallbacks and the provisioner's errors log their reasons
        with emulator.faulted(status=401, paths=["/oauth/token"]):
            api.vend(name, min_ttl=89)
        with emulator.faulted(status=503, retryAfter=2, paths=["/auth/"]):
            api.create(unique("leaky-failed"))
        sample()
        # rotation, then tokens from the new secret
        before = aws.current_credentials(name)
        assert api.rotate(name).status == 202
        deadline = time.monotonic() + 30
        while aws.current_credentials(name) == before and time.monotonic() < deadline:
            time.sleep(0.1)
        assert aws.current_credentials(name) != before, "the rotation did not finish"
        sample()
        until_answered(lambda: api.vend(name, min_ttl=85), {200}, 20)
        # The pre-refresh schedule (every second) renews the token inside the refresh margin: wait for
        # the cached token to change (observed, not slept for), so its lines are in the output.
        cached = (aws.token_item(name) or {}).get("accessToken")
        deadline = time.monotonic() + 20
        while (aws.token_item(name) or {}).get("accessToken") == cached and time.monotonic() < deadline:
            time.sleep(0.1)
        assert (aws.token_item(name) or {}).get("accessToken") != cached, "the pre-refresh did not renew the token"
        sample()
        assert until_answered(lambda: api.vend(name, min_ttl=85), {200}, 20).status == 200
        sample()
        assert api.delete(name).status == 204
        assert api.delete(other).status == 204
        sample()
    finally:
        emulator.clear_faults()
        emulator.config(tokenLifetimeSeconds=3600)
    time.sleep(0.5)  # the last lines (EMF after each invocation) reach the readers

    secrets.update(aws.every_secret_value())
    tokens.update(
        answer.json()["access_token"]
        for answer in api.answers
        if TOKEN_ROUTE.match(answer.path) and answer.status == 200
    )
    assert len(secrets) >= 4, "expected the admin's, two clients' and a rotated secret"
    assert tokens, "no token was captured"

    output = stack.lines + stack.errors
    leaks = scan_for_leaks(output, api.answers, secrets, tokens)
    # The scan itself works: the token route's bodies hold the tokens it looks for.
    allowed = [answer for answer in api.answers if TOKEN_ROUTE.match(answer.path) and answer.status == 200]
    assert scan_for_leaks([answer.body.decode() for answer in allowed], [], set(), tokens)
    log_lines = [line for line in output if line.startswith("{") and '"level"' in line]
    metrics = [line for line in output if line.startswith('{"_aws"')]
    # Its own stack's whole system (the session's is checked after every test).
    integrity = SystemCheck(emulator, aws).run(api.deleted, thorough=True)
    row = RESULTS.row("leaks: e2e flow at DEBUG, every line and answer scanned")
    row.add(api.answers, bad=len(leaks))
    row.integrity_checked += 1
    row.data_lost += integrity.lost
    assert log_lines, "no JSON log line was captured: is --verbose still passing the handlers' logs?"
    assert metrics, "no EMF metrics document was captured"
    print(
        f"scanned {len(output)} lines ({len(log_lines)} JSON log lines, {len(metrics)} EMF documents) and "
        f"{len(api.answers)} answers for {len(secrets)} secrets and {len(tokens)} tokens"
    )
    assert not leaks, "\n".join(leaks[:10])
    assert not integrity.problems, integrity.problems
