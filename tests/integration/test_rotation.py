"""Secret rotation against moto server and the Zus emulator, over real HTTP.

The test plays Secrets Manager's part as the local stack does: it starts a rotation with the service's
own ``SecretsManagerStore.start_rotation`` and drives the four steps with
``zus_local.secrets_manager_rotation``, calling the rotation steps or the rotation handler.

Vend calls during a rotation are *cold* (``cold_traffic``): each one deletes the client's cached token
and comes from a new container, so it succeeds only if the vendor mints a token with a secret version
that works at Zus at that moment; a cached token would hide a dead AWSCURRENT. Each call is counted by
the last rotation checkpoint passed when it started, and one runs synchronously at every checkpoint.
"""

from __future__ import annotations

import dataclasses
import io
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import TYPE_CHECKING

import pytest
from fakes import crash_at
from integration_support import CountingMetrics, LoadFunction

from zus_emulator.config import AUTH0, OLD_THEN_NEW
from zus_local.lambda_context import LocalLambdaContext
from zus_local.secrets_manager_rotation import drive_rotation
from zus_m2m import errors
from zus_m2m.admin_values import CreateRequest
from zus_m2m.rotation.steps import STEPS, RotationCheckpoints, RotationSteps
from zus_m2m.rotation.sweep import RotationCheck
from zus_m2m.tokens.policy import VendingPolicy
from zus_m2m.tokens.vendor import TokenVendor
from zus_m2m.values import AWSCURRENT, AWSPENDING

if TYPE_CHECKING:
    from integration_support import RotationStack as Stack

CLIENT = "billing-service"
ADMIN = "zus-m2m-admin"
ADMIN_SECRET = "zus-m2m/test/zus-m2m-admin"


STARTED = "started"  # the stage before the first checkpoint: a value-less AWSPENDING version


@dataclasses.dataclass
class ColdTraffic:
    """Vend calls that each need a fresh mint: the client's token and budget items deleted, a new
    container (empty memory) each time, one call at a time (a call that waited for another's fetch
    would be served from the table). ``calls``: how many started after each checkpoint.

    ``hold_while_unstored``: Zus refuses the old secret at once (no propagation), so from Zus's answer
    to the write of AWSPENDING (milliseconds) the new secret is in the rotation function's memory only
    and no stored one works: calls are held back while createSecret runs (``drive``), the call at its
    PENDING_STORED checkpoint excepted."""

    stack: Stack
    client: str
    hold_while_unstored: bool = True
    stage: str = STARTED
    calls: Counter[str] = dataclasses.field(default_factory=Counter)
    failures: list[str] = dataclasses.field(default_factory=list)
    # re-entrant: the checkpoint's call runs in the step that holds it back from the others
    lock: threading.RLock = dataclasses.field(default_factory=threading.RLock)

    def vend(self) -> None:
        with self.lock:
            stage = self.stage
            # A token the rotation's testSecret stored between the delete and the read proves nothing of
            # this call's choice of version: delete it again and ask again.
            for _ in range(3):
                self.stack.forget_tokens(self.client)
                vendor = self.stack.vendor()
                try:
                    # The bootstrap admin's token is never vended: provisioning and rotation take it as admin_token.
                    if self.client == ADMIN:
                        source = vendor.admin_token(60).source
                    else:
                        source = vendor.vend(self.stack.CONSUMER, self.client, 60).source
                except Exception as exc:  # every kind counts as a failure
                    self.failures.append(f"after {stage}: {type(exc).__name__}: {exc}")
                    break
                if source == "zus":
                    break
            else:
                self.failures.append(f"after {stage}: served from {source} three times, never minted")
            self.calls[stage] += 1

    def checkpoint(self, name: str) -> None:
        """The rotation's checkpoint hook: one cold call in the very state the step just made."""
        self.stage = name
        if not (name == RotationCheckpoints.ZUS_ROTATED and self.hold_while_unstored):
            self.vend()

    def drive(self, steps: RotationSteps, rotation: tuple[str, str], retries: int = 3) -> None:
        """``Stack.drive``, the other calls held back while createSecret runs (``hold_while_unstored``)."""

        def invoke(event: dict[str, str]) -> None:
            step = event["Step"]
            with self.lock if self.hold_while_unstored and step == "createSecret" else nullcontext():
                steps.run(step, event["SecretId"], event["ClientRequestToken"])

        steps.runtime = dataclasses.replace(steps.runtime, checkpoint=both(self.checkpoint, steps.runtime.checkpoint))
        drive_rotation(invoke, *rotation, retries=retries, pause=0.01)

    def sweep(self) -> RotationCheck:
        """The sweep's check of the client, stuck or not, then one more call."""
        check = self.stack.sweep(stuck_after=0).check(self.stack.CLIENT)
        self.stage = "swept"
        self.vend()
        return check

    def give_up(self, steps: RotationSteps, rotation: tuple[str, str], failing: str, retries: int) -> None:
        """Secrets Manager gives the rotation up: every try of the step that reaches checkpoint ``failing``
        fails there (``retries`` retries)."""
        steps.runtime = dataclasses.replace(steps.runtime, checkpoint=crash_at(failing, error=RuntimeError))
        with pytest.raises(RuntimeError):
            self.drive(steps, rotation, retries=retries)
        self.stage = "gave up"


def both(*hooks: Callable[[str], None]) -> Callable[[str], None]:
    def hook(name: str) -> None:
        for each in hooks:
            each(name)

    return hook


@contextmanager
def cold_traffic(stack: Stack, client: str = CLIENT, hold_while_unstored: bool = True) -> Iterator[ColdTraffic]:
    """Cold vend calls from a thread, back to back, for as long as the block runs (one before it starts)."""
    # Every call mints: far more token requests than Zus's 200 an hour allow one client.
    stack.emulator("config", tokenLimitPerHour=100_000)
    traffic = ColdTraffic(stack, client, hold_while_unstored)
    traffic.vend()
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            traffic.vend()
            stop.wait(0.02)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield traffic
    finally:
        stop.set()
        thread.join(timeout=30)


@pytest.fixture
def stack(rotation_stack: Stack) -> Stack:
    assert (rotation_stack.CLIENT, rotation_stack.ADMIN_SECRET) == (CLIENT, ADMIN_SECRET)
    return rotation_stack


# --- the steps -------------------------------------------------------------------------------------------


def test_the_four_steps_in_order_rotate_the_secret_and_cache_the_new_token(
    stack: Stack, counting_metrics: CountingMetrics
) -> None:
    before = stack.current()
    secret_arn, version = stack.start()
    steps = stack.steps(counting_metrics)

    outcomes = [steps.run(step, secret_arn, version) for step in STEPS]

    assert outcomes == ["created", "nothing-to-set", "tested", "finished"]
    stack.assert_rotated_cleanly(before)
    assert stack.stages()[version] == [AWSCURRENT]
    # The token issued for testSecret is the cached one: a new container needs no request to Zus.
    cached = stack.table.get(CLIENT, consistent=True).token
    assert cached is not None
    assert stack.vendor().vend(stack.CONSUMER, CLIENT, 60).access_token == cached.access_token
    assert counting_metrics.counts["RotationStep"] == 4


def test_each_step_run_twice_rotates_once(stack: Stack) -> None:
    before = stack.current()
    secret_arn, version = stack.start()
    steps = stack.steps()

    outcomes = [[steps.run(step, secret_arn, version) for _ in range(2)] for step in STEPS]

    assert [pair[1] for pair in outcomes] == ["already-created", "nothing-to-set", "tested", "already-current"]
    stack.assert_rotated_cleanly(before)


def test_a_stale_version_is_refused(stack: Stack) -> None:
    first_arn, first = stack.start()
    stack.drive(stack.steps(), (first_arn, first))
    secret_arn, second = stack.start()
    steps = stack.steps()
    previous = next(v for v, stages in stack.stages().items() if stages == ["AWSPREVIOUS"])

    with pytest.raises(errors.ResourceConflict, match="stale"):
        steps.run("createSecret", secret_arn, previous)
    with pytest.raises(errors.ResourceConflict, match="not a version"):
        steps.run("createSecret", secret_arn, "11111111-2222-4333-8444-555555555555")
    assert steps.run("finishSecret", secret_arn, first) == "already-current"

    assert stack.stages()[second] == [AWSPENDING]  # the rotation in progress is untouched


def test_the_rotation_handler_runs_the_steps_secrets_manager_sends(stack: Stack, load_function: LoadFunction) -> None:
    before = stack.current()
    handler = load_function("rotation", stack.lambda_environment())
    written = io.StringIO()
    for log_handler in handler.logger.handlers:
        log_handler.setStream(written)
    rotation = stack.start()

    def invoke(event: dict[str, str]) -> None:
        handler.lambda_handler(event, LocalLambdaContext("zus-m2m-rotation", timeout_seconds=120))

    drive_rotation(invoke, *rotation)

    stack.assert_rotated_cleanly(before)
    # Each step's lines name it and the module that wrote them; its keys end with its invocation.
    done = [json.loads(line) for line in written.getvalue().splitlines() if '"rotation step done"' in line]
    assert [line["step"] for line in done] == ["createSecret", "setSecret", "testSecret", "finishSecret"]
    assert {(line["name"], line["secret"], line["version"]) for line in done} == {
        ("zus_m2m.rotation.steps", rotation[0], rotation[1])
    }
    assert not {"step", "secret", "version"} & set(handler.logger.get_current_keys())
    with pytest.raises(errors.InvalidRequest):
        handler.lambda_handler({"Step": "createSecret"}, LocalLambdaContext("zus-m2m-rotation"))


# --- the crash matrix -------------------------------------------------------------------------------------


CHECKPOINTS = (
    RotationCheckpoints.ZUS_ROTATED,
    RotationCheckpoints.PENDING_STORED,
    RotationCheckpoints.TESTED,
    RotationCheckpoints.CURRENT_MOVED,
    RotationCheckpoints.PENDING_REMOVED,
)


@pytest.mark.parametrize("checkpoint", CHECKPOINTS)
def test_a_crash_after_any_external_call_is_repaired_by_secrets_managers_retry(stack: Stack, checkpoint: str) -> None:
    """Cold calls at every checkpoint, the crashed one included, and back to back meanwhile. From
    PENDING_STORED on, Zus refuses the old secret (it dies at once here), so a call succeeds only if
    the vendor picks AWSPENDING, then the new AWSCURRENT. A crash right after Zus rotated loses the new
    secret (createSecret's retry rotates again): there Zus keeps the old secret while the new one
    propagates (5 s, the old one alone meanwhile: a loaded machine took over 2 s to retry), as Auth0
    does, else no stored secret would work."""
    crash_before_stored = checkpoint == RotationCheckpoints.ZUS_ROTATED
    if crash_before_stored:
        stack.emulator("config", secretPropagationSeconds=5, propagationMode=OLD_THEN_NEW)
    before = stack.current()
    rotation = stack.start()
    steps = stack.steps()

    with cold_traffic(stack, hold_while_unstored=not crash_before_stored) as traffic:
        steps.runtime = dataclasses.replace(
            steps.runtime, checkpoint=crash_at(checkpoint, error=RuntimeError, once=True)
        )
        traffic.drive(steps, rotation)
        traffic.stage = "finished"
        traffic.vend()

    stack.assert_rotated_cleanly(before)
    assert traffic.failures == []
    # Cold calls met every state of the rotation, the crashed checkpoint twice or more (the crash and
    # the retry each pass it), but the one they were held back over.
    held = {RotationCheckpoints.ZUS_ROTATED} if not crash_before_stored else set()
    assert set(traffic.calls) == {STARTED, *CHECKPOINTS, "finished"} - held, traffic.calls
    assert traffic.calls[checkpoint] >= 2 or checkpoint in held, traffic.calls


def test_a_rotation_that_failed_for_good_is_finished_by_the_sweep(stack: Stack) -> None:
    before = stack.current()
    rotation = stack.start()
    steps = stack.steps()

    with cold_traffic(stack) as traffic:
        traffic.give_up(steps, rotation, RotationCheckpoints.TESTED, retries=2)
        traffic.vend()
        check = traffic.sweep()

    assert check.outcome == "rolled-forward"
    stack.assert_rotated_cleanly(before)
    assert traffic.failures == []
    assert traffic.calls["gave up"] >= 1


def test_zus_rotated_and_secrets_manager_gave_up_with_the_new_secret_in_awspending_only(stack: Stack) -> None:
    """createSecret crashed right after storing AWSPENDING, and Secrets Manager gave up (no retry):
    Zus refuses AWSCURRENT's secret, and the one that works is held by the AWSPENDING version alone,
    which no finished stage names. Cold calls still get tokens (the vendor tries AWSPENDING), and the
    sweep recovers the rotation: it rolls it forward to that secret."""
    before = stack.current()
    rotation = stack.start()
    steps = stack.steps()

    with cold_traffic(stack) as traffic:
        traffic.give_up(steps, rotation, RotationCheckpoints.PENDING_STORED, retries=0)
        pending = stack.secrets.read_version(stack.secret_id, rotation[1])
        assert pending is not None
        assert stack.stages()[rotation[1]] == [AWSPENDING]
        with pytest.raises(errors.ZusCredentialsRefused):
            stack.zus_client.request_token(before.client_id, before.client_secret)
        for _ in range(3):
            traffic.vend()
        check = traffic.sweep()

    assert check.outcome == "rolled-forward"
    stack.assert_rotated_cleanly(before)
    assert stack.current().client_secret == pending.client_secret  # the stranded secret, now AWSCURRENT
    assert traffic.failures == []
    assert traffic.calls["gave up"] >= 3


# --- propagation and the bootstrap admin ------------------------------------------------------------------


def test_a_secret_that_takes_3_s_to_take_effect_rotates_without_a_failed_vend(stack: Stack) -> None:
    # The new secret is refused, and the old one accepted, until the window ends: testSecret must wait.
    stack.emulator("config", secretPropagationSeconds=3, propagationMode=OLD_THEN_NEW)
    before = stack.current()
    rotation = stack.start()
    steps = stack.steps()
    old_refused_when_tested: list[bool] = []

    def old_secret_refused() -> bool:
        try:
            stack.zus_client.request_token(before.client_id, before.client_secret)
        except errors.ZusCredentialsRefused:
            return True
        return False

    with cold_traffic(stack, hold_while_unstored=False) as traffic:
        steps.runtime = dataclasses.replace(
            steps.runtime,
            checkpoint=lambda name: (
                old_refused_when_tested.append(old_secret_refused()) if name == RotationCheckpoints.TESTED else None
            ),
        )
        traffic.drive(steps, rotation)

    # testSecret passed only once the window was over (the old secret refused from then on): it waited.
    assert old_refused_when_tested == [True]
    stack.assert_rotated_cleanly(before)
    # Calls met the window with the new secret stored and still refused (AWSCURRENT's served them).
    assert traffic.calls[RotationCheckpoints.PENDING_STORED] >= 2, traffic.calls
    assert traffic.failures == []


PROPAGATION = 30.0  # Auth0: a rotated secret "can take up to 30 seconds to take effect"
PHASES = ("before", "rotating", "settling", "settled")


@pytest.mark.long
@pytest.mark.parametrize("dialect", [AUTH0], indirect=True)  # random propagation is Auth0's
def test_200_vend_calls_that_each_need_a_token_meet_a_30_s_random_propagation(busy_rotation_stack: Stack) -> None:
    """Zus rotates; for 30 s each token request meets a node that knows the old or the new secret, at
    random. Meanwhile 200 vend calls stream from four containers wanting tokens almost as fresh as Zus
    issues them (tokens live 60 s; minTtl 55, which leaves a mint 5 s for its requests: 2 s was not enough
    on a loaded machine): a token serves the calls of 5 s, then the next call asks Zus again, with whichever
    secret versions are stored. Every call answers 200 and the rotation completes."""
    stack = busy_rotation_stack
    stack.emulator("config", secretPropagationSeconds=PROPAGATION, tokenLifetimeSeconds=60, tokenLimitPerHour=10_000)
    before = stack.current()
    # Refresh-ahead off (only the callers' own misses mint); a budget for about 400 token requests.
    policy = VendingPolicy(refresh_margin=0, budget_per_hour=1000)
    containers = [stack.vendor(policy) for _ in range(4)]
    answers: list[tuple[float, str]] = []  # (when the call started, the tier that answered)
    failures: list[str] = []
    lock = threading.Lock()

    def stream(vendor: TokenVendor) -> None:
        for _ in range(50):
            started = time.monotonic()
            try:
                source = vendor.vend(stack.CONSUMER, CLIENT, 55).source
            except Exception as exc:  # every kind counts as a failure
                with lock:
                    failures.append(f"{type(exc).__name__}: {exc}")
            else:
                with lock:
                    answers.append((started, source))
            time.sleep(0.72)

    marks: dict[str, float] = {}  # when the rotation passed each checkpoint

    def mark(name: str) -> None:
        marks.setdefault(name, time.monotonic())

    steps = stack.steps()
    steps.runtime = dataclasses.replace(steps.runtime, checkpoint=mark)
    client_id = before.client_id
    requests_before = stack.stats()["tokenRequests"].get(client_id, 0)
    threads = [threading.Thread(target=stream, args=(vendor,)) for vendor in containers]
    for thread in threads:
        thread.start()
    time.sleep(2.0)  # the stream has started
    started = time.monotonic()
    stack.drive(steps, stack.start())
    finished = time.monotonic()
    for thread in threads:
        thread.join(timeout=120)

    rotated = marks[RotationCheckpoints.ZUS_ROTATED]
    settled = rotated + PROPAGATION

    def phase(at: float) -> str:
        """before Zus rotated; within the 30 s window while the rotation runs (rotating) and after it
        finished (settling); after the window (settled)."""
        if at < rotated:
            return "before"
        if at >= settled:
            return "settled"
        return "rotating" if at < marks[RotationCheckpoints.PENDING_REMOVED] else "settling"

    met = {name: [source for at, source in answers if phase(at) == name] for name in PHASES}
    tested = marks[RotationCheckpoints.TESTED] - rotated
    token_requests = stack.stats()["tokenRequests"].get(client_id, 0) - requests_before
    print(
        f"\n200 vend calls: {len(answers)} answered 200, {len(failures)} failed; the rotation took "
        f"{finished - started:.1f} s (testSecret passed {tested:.1f} s after Zus rotated); "
        f"{token_requests} token requests to Zus for the client; "
        + "; ".join(f"{name}: {len(sources)} calls, {sources.count('zus')} minted" for name, sources in met.items())
    )
    assert failures == []
    assert len(answers) == 200
    # The calls met the rotation: they came before, during and after the window (testSecret may pass at
    # once, or only late in the window), and during it they were served by tokens minted then, with
    # both secrets in play (each token serves them 2 s).
    in_window = met["rotating"] + met["settling"]
    assert [name for name, sources in (("before", met["before"]), ("settled", met["settled"])) if not sources] == []
    assert in_window.count("zus") >= 5
    while time.monotonic() < settled:  # the window ends: the old secret is refused everywhere from now
        time.sleep(0.2)
    stack.assert_rotated_cleanly(before)


def test_the_bootstrap_admin_rotates_and_admin_calls_still_work(stack: Stack) -> None:
    # Cold admin tokens throughout: Zus keeps the old secret for 5 s (no moment without a working stored
    # secret; see the crash matrix; a loaded machine took over 1 s from Zus's rotation to AWSPENDING), then
    # only the new one works, from AWSPENDING until finishSecret.
    stack.emulator("config", secretPropagationSeconds=5, propagationMode=OLD_THEN_NEW)
    before = stack.current(ADMIN_SECRET)
    rotation = stack.start(ADMIN_SECRET)
    steps = stack.steps()

    with cold_traffic(stack, client=ADMIN, hold_while_unstored=False) as traffic:
        traffic.drive(steps, rotation)

    stack.assert_rotated_cleanly(before, ADMIN_SECRET)
    assert traffic.failures == []
    assert set(traffic.calls) == {STARTED, *CHECKPOINTS}, traffic.calls
    # A container with nothing cached is vended an admin token minted with the new secret, and provisioning works.
    stack.forget_tokens(ADMIN)
    record, created = stack.provisioning().create_client(CreateRequest("after-admin-rotation"))
    assert created
    assert record.name == "after-admin-rotation"
    # ... and the admin rotates again (its previous rotation left nothing behind).
    again = stack.current(ADMIN_SECRET)
    stack.drive(stack.steps(), stack.start(ADMIN_SECRET))
    stack.assert_rotated_cleanly(again, ADMIN_SECRET, clients=3)
