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

from zus_local.lambda_context import LocalLambdaContext
from zus_local.secrets_manager_rotation import drive_rotation
from zus_m2m import errors
from zus_m2m.rotation.steps import STEPS, RotationCheckpoints
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


def test_a_secret_that_takes_20_s_to_propagate_rotates_without_a_failed_vend(stack: Stack) -> None:
    stack.emulator("config", secretPropagationSeconds=20)
    before = stack.current()
    rotation = stack.start()
    started = time.monotonic()

    with vend_stream(stack) as stream:
        stack.drive(stack.steps(), rotation)
        elapsed = time.monotonic() - started
        # A container with nothing cached gets a token too (the new secret now works at Zus).
        stack.table.purge(CLIENT)
        assert stack.vendor().vend(stack.CONSUMER, CLIENT, 60).access_token

    assert 15 <= elapsed <= 60  # testSecret waited for the new secret to take effect
    stack.assert_rotated_cleanly(before)
    assert stream.calls > 100
    assert stream.failures == []


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
