"""Secret rotation against moto server and the Zus emulator, over real HTTP.

The test plays Secrets Manager's part as the local stack does: it starts a rotation with the service's
own ``SecretsManagerStore.start_rotation`` and drives the four steps with
``zus_local.secrets_manager_rotation``, calling the rotation steps or the rotation handler.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import pytest
from fakes import crash_at

from zus_emulator.config import AUTH0, OLD_THEN_NEW
from zus_local.lambda_context import LocalLambdaContext
from zus_local.secrets_manager_rotation import drive_rotation
from zus_m2m import errors
from zus_m2m.rotation.steps import STEPS, RotationCheckpoints
from zus_m2m.tokens.policy import VendingPolicy
from zus_m2m.values import AWSCURRENT, AWSPENDING, CreateRequest

if TYPE_CHECKING:
    from conftest import RotationStack as Stack

CLIENT = "billing-service"
ADMIN = "zus-m2m-admin"
ADMIN_SECRET = "zus-m2m/test/zus-m2m-admin"


@dataclasses.dataclass
class VendStream:
    calls: int = 0
    failures: list[str] = dataclasses.field(default_factory=list)


@contextmanager
def vend_stream(stack: Stack, client: str = CLIENT, containers: int = 3) -> Iterator[VendStream]:
    """A thread calling vend every ~50 ms from other containers, for as long as the block runs."""
    vendors = [stack.vendor() for _ in range(containers)]

    def vend(vendor: Any) -> None:
        # The bootstrap admin's token is never vended: provisioning and rotation take it as admin_token.
        if client == ADMIN:
            vendor.admin_token(60)
        else:
            vendor.vend(stack.CONSUMER, client, 60)

    vend(vendors[0])  # warm: the table holds a token
    stream = VendStream()
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            vendor = vendors[stream.calls % containers]
            try:
                vend(vendor)
            except Exception as exc:  # every kind counts as a failure
                stream.failures.append(f"{type(exc).__name__}: {exc}")
            stream.calls += 1
            stop.wait(0.05)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield stream
    finally:
        stop.set()
        thread.join(timeout=10)


@pytest.fixture
def stack(rotation_stack: Stack) -> Stack:
    assert (rotation_stack.CLIENT, rotation_stack.ADMIN_SECRET) == (CLIENT, ADMIN_SECRET)
    return rotation_stack


# --- the steps -------------------------------------------------------------------------------------------


def test_the_four_steps_in_order_rotate_the_secret_and_cache_the_new_token(stack: Stack, counting_metrics) -> None:
    before = stack.current()
    secret_arn, version = stack.start()
    steps = stack.steps(counting_metrics)

    outcomes = [steps.run(step, secret_arn, version) for step in STEPS]

    assert outcomes == ["created", "nothing-to-set", "tested", "finished"]
    stack.assert_rotated_cleanly(before)
    assert stack.stages()[version] == [AWSCURRENT]
    # The token testSecret obtained is the cached one: a new container needs no request to Zus.
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


def test_the_rotation_handler_runs_the_steps_secrets_manager_sends(stack: Stack, load_function) -> None:
    before = stack.current()
    handler = load_function("rotation", stack.lambda_environment())
    rotation = stack.start()

    def invoke(event: dict[str, str]) -> None:
        handler.lambda_handler(event, LocalLambdaContext("zus-m2m-rotation", timeout_seconds=120))

    drive_rotation(invoke, *rotation)

    stack.assert_rotated_cleanly(before)
    with pytest.raises(errors.InvalidRequest):
        handler.lambda_handler({"Step": "createSecret"}, LocalLambdaContext("zus-m2m-rotation"))


# --- the crash matrix -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "checkpoint",
    [
        RotationCheckpoints.ZUS_ROTATED,
        RotationCheckpoints.PENDING_STORED,
        RotationCheckpoints.TESTED,
        RotationCheckpoints.CURRENT_MOVED,
        RotationCheckpoints.PENDING_REMOVED,
    ],
)
def test_a_crash_after_any_external_call_is_repaired_by_secrets_managers_retry(stack: Stack, checkpoint: str) -> None:
    before = stack.current()
    rotation = stack.start()
    steps = stack.steps()
    steps.checkpoint = crash_at(checkpoint, error=RuntimeError, once=True)

    with vend_stream(stack) as stream:
        stack.drive(steps, rotation)
        time.sleep(0.2)

    stack.assert_rotated_cleanly(before)
    assert stream.calls > 3
    assert stream.failures == []


def test_a_rotation_that_failed_for_good_is_finished_by_the_sweep(stack: Stack) -> None:
    before = stack.current()
    rotation = stack.start()
    steps = stack.steps()
    steps.checkpoint = crash_at(RotationCheckpoints.TESTED, error=RuntimeError)  # testSecret fails on every retry

    with vend_stream(stack) as stream:
        with pytest.raises(RuntimeError):
            stack.drive(steps, rotation, retries=2)
        check = stack.sweep(stuck_after=0).check(stack.CLIENT)

    assert check.outcome == "rolled-forward"
    stack.assert_rotated_cleanly(before)
    assert stream.failures == []


# --- propagation and the bootstrap admin ------------------------------------------------------------------


def test_a_secret_that_takes_3_s_to_take_effect_rotates_without_a_failed_vend(stack: Stack) -> None:
    # The new secret is refused, and the old one accepted, until the window ends: testSecret must wait.
    stack.emulator("config", secretPropagationSeconds=3, propagationMode=OLD_THEN_NEW)
    before = stack.current()
    rotation = stack.start()
    rotated_at: list[float] = []
    steps = stack.steps()
    steps.checkpoint = lambda name: (
        rotated_at.append(time.monotonic()) if name == RotationCheckpoints.ZUS_ROTATED else None
    )

    with vend_stream(stack) as stream:
        stack.drive(steps, rotation)
        tested_after = time.monotonic() - rotated_at[0]
        # A container with nothing cached gets a token too (the new secret now works at Zus).
        stack.table.purge(CLIENT)
        assert stack.vendor().vend(stack.CONSUMER, CLIENT, 60).access_token

    assert tested_after >= 3  # testSecret waited for the new secret to take effect
    stack.assert_rotated_cleanly(before)
    assert stream.calls > 10
    assert stream.failures == []


PROPAGATION = 30.0  # Auth0: a rotated secret "can take up to 30 seconds to take effect"
PHASES = ("before", "rotating", "settling", "settled")


@pytest.mark.parametrize("dialect", [AUTH0], indirect=True)  # random propagation is Auth0's
def test_200_vend_calls_that_each_need_a_token_meet_a_30_s_random_propagation(busy_rotation_stack: Stack) -> None:
    """Zus rotates; for 30 s each token request meets a node that knows the old or the new secret, at
    random. Meanwhile 200 vend calls stream from four containers wanting tokens almost as fresh as Zus
    issues them (tokens live 60 s; minTtl 58, which leaves a mint 2 s for its requests): a token serves
    the calls of 2 s, then the next call asks Zus again, with whichever secret versions are stored. Every
    call answers 200 and the rotation completes."""
    stack = busy_rotation_stack
    stack.emulator("config", secretPropagationSeconds=PROPAGATION, tokenLifetimeSeconds=60, tokenLimitPerHour=10_000)
    before = stack.current()
    # Refresh-ahead off (it would mint in the background); a budget for about 400 token requests.
    policy = VendingPolicy(refresh_margin=0, budget_per_hour=1000)
    containers = [stack.vendor(policy) for _ in range(4)]
    answers: list[tuple[float, str]] = []  # (when the call started, the tier that answered)
    failures: list[str] = []
    lock = threading.Lock()

    def stream(vendor) -> None:
        for _ in range(50):
            started = time.monotonic()
            try:
                source = vendor.vend(stack.CONSUMER, CLIENT, 58).source
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
    steps.checkpoint = mark
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
    before = stack.current(ADMIN_SECRET)
    rotation = stack.start(ADMIN_SECRET)

    with vend_stream(stack, client=ADMIN) as stream:
        stack.drive(stack.steps(), rotation)

    stack.assert_rotated_cleanly(before, ADMIN_SECRET)
    assert stream.failures == []
    # A container with nothing cached obtains an admin token with the new secret, and provisioning works.
    stack.table.purge(ADMIN)
    record, created = stack.provisioning().create_client(CreateRequest("after-admin-rotation"))
    assert created
    assert record.name == "after-admin-rotation"
    # ... and the admin rotates again (its previous rotation left nothing behind).
    again = stack.current(ADMIN_SECRET)
    stack.drive(stack.steps(), stack.start(ADMIN_SECRET))
    stack.assert_rotated_cleanly(again, ADMIN_SECRET, clients=3)
