"""Fixtures of the reliability suite: one local stack for the session (the e2e suite's launcher),
pointed at a moto this suite can stop and start (``moto_control.py``), with the handlers at DEBUG and
every line they print kept; and the results table, printed at the end of the session.

Fast profile by default (``make test``); ``ZUS_M2M_SOAK=1`` (``make soak``) for the long one, which
writes the table to ``ZUS_M2M_RELIABILITY_TABLE`` for ``make soak`` to print last.
"""

from __future__ import annotations

import re
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from reliability_calls import Api
from reliability_integrity import SystemCheck
from reliability_leaks import scan_for_leaks, signing_secrets
from reliability_outside import Aws, Emulator
from reliability_results import RESULTS
from reliability_stack import MotoControl, start_reliability_stack
from reliability_support import ADMIN_CLIENT_SECRET, SOAK, TABLE_FILE, TOKEN_ROUTE, unique

from zus_local.aws_fault_proxy import AwsFaultProxy


@dataclass
class Context:
    """Everything a scenario needs: the stack, the API, the emulator, moto and moto's switch; and the
    system check with the problems it has reported so far (each is counted once, where it appeared)."""

    stack: Any
    moto: MotoControl
    proxy: AwsFaultProxy
    api: Api
    emulator: Emulator
    aws: Aws
    system: SystemCheck
    reported: set[str] = field(default_factory=set)

    def provision(self, prefix: str) -> dict[str, Any]:
        """A new managed client (faults off); its record."""
        name = unique(prefix)
        answer = self.api.create(name)
        assert answer.status == 201, (answer.status, answer.body)
        return dict(answer.json())

    def new_problems(self, *, thorough: bool = False) -> list[str]:
        """What the system check finds now that it had not reported before."""
        found = self.system.run(self.api.deleted, thorough=thorough).problems
        new = [problem for problem in found if problem not in self.reported]
        self.reported.update(new)
        return new


@pytest.fixture(scope="session")
def moto() -> Iterator[MotoControl]:
    control = MotoControl()
    try:
        yield control
    finally:
        control.close()


@pytest.fixture(scope="session")
def aws_proxy(moto: MotoControl) -> Iterator[AwsFaultProxy]:
    """The AWS fault proxy the session stack's functions call moto through (test_aws_faults.py)."""
    proxy = AwsFaultProxy(moto.url).start()
    try:
        yield proxy
    finally:
        proxy.stop()


@pytest.fixture(scope="session")
def stack(moto: MotoControl, aws_proxy: AwsFaultProxy) -> Iterator[Any]:
    running = start_reliability_stack(moto, functions_endpoint=aws_proxy.url)
    try:
        yield running
    finally:
        code = running.terminate(timeout=20)
        assert code == 0, running.output[-5000:]


@pytest.fixture(scope="session")
def ctx(stack: Any, moto: MotoControl, aws_proxy: AwsFaultProxy) -> Iterator[Context]:
    emulator, aws = Emulator(stack.zus), Aws(moto.url, "zus-m2m-local")
    context = Context(
        stack=stack,
        moto=moto,
        proxy=aws_proxy,
        api=Api(stack.api, stack.credentials_file),
        emulator=emulator,
        aws=aws,
        system=SystemCheck(emulator, aws),
    )
    yield context
    # Every line the session's stack printed and every answer it gave, scanned for every secret moto
    # still holds and every token seen (test_leaks.py runs the thorough version on a stack of its own).
    time.sleep(0.5)
    secrets = context.aws.every_secret_value() | {ADMIN_CLIENT_SECRET} | signing_secrets(stack.credentials_file)
    tokens = context.aws.cached_tokens() | {
        answer.json()["access_token"]
        for answer in context.api.answers
        if TOKEN_ROUTE.match(answer.path) and answer.status == 200
    }
    lines = stack.lines + stack.errors
    leaks = scan_for_leaks(lines, context.api.answers, secrets, tokens)
    row = RESULTS.row(f"leaks: the session's {len(lines)} output lines and {len(context.api.answers)} answers")
    row.violations += len(leaks)
    # The session's end: the whole system once more, every client's secret tried at Zus.
    problems = context.new_problems(thorough=True)
    row.integrity_checked += 1
    row.data_lost += len(problems)
    assert not leaks, "\n".join(leaks[:10])
    assert not problems, "\n".join(problems[:20])


# A failed test's share of the session stack's lines (kept in memory only), for whoever looks into it.
FAILED_LINES = Path(__file__).resolve().parents[2] / ".pytest_cache" / "reliability-failed"
_CALL_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call":
        item.stash[_CALL_FAILED] = report.failed
    return report


@pytest.fixture(autouse=True)
def system_intact(request: pytest.FixtureRequest) -> Iterator[None]:
    """After every test on the session's stack, the system check; what it newly finds is the data lost
    of every row the test wrote, and fails the test. A failed test's lines of the stack are written to
    ``FAILED_LINES``."""
    if "ctx" not in request.fixturenames:
        yield
        return
    context: Context = request.getfixturevalue("ctx")
    RESULTS.begin()
    first_line, first_error = len(context.stack.lines), len(context.stack.errors)
    yield
    if request.node.stash.get(_CALL_FAILED, False):
        FAILED_LINES.mkdir(parents=True, exist_ok=True)
        kept = FAILED_LINES / (re.sub(r"[^\w.-]+", "_", request.node.nodeid) + ".log")
        kept.write_text("\n".join(context.stack.lines[first_line:] + context.stack.errors[first_error:]) + "\n")
        print(f"the stack's lines during this test: {kept}")
    problems = context.new_problems()
    for row in RESULTS.written():
        row.integrity_checked += 1
        row.data_lost += len(problems)
    assert not problems, "\n".join(problems[:20])


@pytest.fixture
def clean_faults(ctx: Context) -> Iterator[Context]:
    """The session context, with no fault left behind by a failing test (Zus's or AWS's)."""
    ctx.emulator.clear_faults()
    ctx.proxy.clear_faults()
    try:
        yield ctx
    finally:
        ctx.emulator.clear_faults()
        ctx.proxy.clear_faults()


# --- the table -----------------------------------------------------------------------------------------


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: Any) -> None:
    if not RESULTS.rows:
        return
    table = RESULTS.table()
    if SOAK and TABLE_FILE:
        Path(TABLE_FILE).parent.mkdir(parents=True, exist_ok=True)
        Path(TABLE_FILE).write_text(f"reliability (long profile)\n{table}\n")
        return
    terminalreporter.section(f"reliability ({'long' if SOAK else 'fast'} profile)")
    for line in table.splitlines():
        terminalreporter.write_line(line)
