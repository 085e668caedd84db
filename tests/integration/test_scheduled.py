"""Scheduled work against moto server and the Zus emulator: a client's rotation check, the repair job, and
the handlers as Lambda invokes them: the scheduled function as EventBridge Scheduler does (handing due
work to the work queue in moto), the worker as the queue's event source does (partial batch failures,
redelivery, the dead letters)."""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from fakes import crash_at
from integration_support import CountingMetrics, LoadFunction, wait_until

from zus_emulator.config import AUTH0
from zus_local.lambda_context import LocalLambdaContext
from zus_local.secrets_manager_rotation import drive_rotation, find_started_rotations
from zus_m2m import errors
from zus_m2m.rotation.steps import RotationCheckpoints
from zus_m2m.tokens import budget
from zus_m2m.tokens.patience import Patience
from zus_m2m.values import AWSPENDING

if TYPE_CHECKING:
    from integration_support import RotationStack as Stack

CLIENT = "billing-service"
ADMIN = "zus-m2m-admin"
ADMIN_SECRET = "zus-m2m/test/zus-m2m-admin"
EVENTS = Path(__file__).resolve().parents[2] / "events"


@pytest.fixture
def stack(rotation_stack: Stack) -> Stack:
    assert (rotation_stack.CLIENT, rotation_stack.ADMIN_SECRET) == (CLIENT, ADMIN_SECRET)
    return rotation_stack


def started_secrets(stack: Stack) -> set[str]:
    """Names of the secrets with a rotation started and not yet driven."""
    describe = stack.aws.secretsmanager.describe_secret
    return {describe(SecretId=arn)["Name"] for arn, _ in find_started_rotations(stack.aws.secretsmanager)}


def scheduled_and_worker(stack: Stack, load_function: LoadFunction) -> tuple[Any, Any]:
    """The scheduled jobs' function and the worker function, each as a new container loads it."""
    environment = stack.lambda_environment()
    return load_function("scheduled", environment), load_function("worker", environment)


def test_a_check_of_a_healthy_client_starts_nothing(stack: Stack) -> None:
    checks = {client: stack.sweep().check(client) for client in (CLIENT, ADMIN)}

    assert {client: check.outcome for client, check in checks.items()} == {CLIENT: "healthy", ADMIN: "healthy"}
    assert find_started_rotations(stack.aws.secretsmanager) == []


def test_a_check_puts_the_resource_policy_on_secrets_that_lack_it_once(
    stack: Stack, counting_metrics: CountingMetrics
) -> None:
    def policy(secret_id: str) -> str | None:
        found: str | None = stack.aws.secretsmanager.get_resource_policy(SecretId=secret_id).get("ResourcePolicy")
        return found

    secrets = (stack.settings.secret_naming.secret_id(CLIENT), ADMIN_SECRET)
    assert [policy(secret) for secret in secrets] == [None, None]  # stored as an operator stores them

    for _ in range(2):
        for client in (CLIENT, ADMIN):
            stack.sweep(counting_metrics).check(client)

    for secret in secrets:
        assert json.loads(policy(secret) or "{}") == json.loads(stack.settings.secret_policy), secret
    assert counting_metrics.counts["SecretPolicyPut"] == 2  # once each: the second checks found it there


def test_due_clients_get_a_rotation_started_and_it_completes(stack: Stack) -> None:
    before = {secret: stack.current(secret) for secret in (stack.secret_id, ADMIN_SECRET)}

    outcomes = [stack.sweep(rotation_interval=0).check(client).outcome for client in (CLIENT, ADMIN)]

    assert outcomes == ["rotation-started", "rotation-started"]
    assert started_secrets(stack) == {stack.secret_id, ADMIN_SECRET}
    for rotation in find_started_rotations(stack.aws.secretsmanager):
        stack.drive(stack.steps(), rotation)
    for secret, credentials in before.items():
        stack.assert_rotated_cleanly(credentials, secret)


def test_a_rotation_in_progress_is_not_started_again(stack: Stack) -> None:
    _, version = stack.start()

    check = stack.sweep(rotation_interval=0).check(CLIENT)

    assert check.outcome == "in-progress"
    assert stack.stages()[version] == [AWSPENDING]  # the same rotation, not a new one


def test_a_stuck_rotation_is_rolled_forward(stack: Stack) -> None:
    before = stack.current()
    arn, version = stack.start()
    stack.steps().run("createSecret", arn, version)  # ... and the rotation died here

    assert stack.sweep(stuck_after=0).check(CLIENT).outcome == "rolled-forward"
    stack.assert_rotated_cleanly(before)


def test_a_rotation_that_died_before_storing_anything_is_restarted(stack: Stack) -> None:
    before = stack.current()
    _, stuck = stack.start()

    assert stack.sweep(stuck_after=0).check(CLIENT).outcome == "rotation-restarted"
    arn, version = stack.started(stack.secret_id)
    assert version != stuck
    stack.drive(stack.steps(), (arn, version))
    stack.assert_rotated_cleanly(before)


def test_a_lost_secret_starts_a_recovery_rotation_that_restores_it(
    stack: Stack, counting_metrics: CountingMetrics
) -> None:
    before = stack.current()
    stack.zus_client.rotate_secret(stack.app_client.id, stack.admin_token)  # the new secret is lost

    # A secret stored long ago (else a refusal of a settling version is asked again, patiently)
    assert stack.sweep(counting_metrics, settle_seconds=0).check(CLIENT).outcome == "recovery-started"
    assert counting_metrics.counts["SecretRecoveryStarted"] == 1
    assert counting_metrics.counts["SecretChangedAtZus"] == 1  # refused outside any rotation of ours
    stack.drive(stack.steps(), stack.started(stack.secret_id))
    stack.assert_rotated_cleanly(before)
    stack.forget_tokens(CLIENT)
    assert stack.vendor().vend(stack.CONSUMER, CLIENT, 60).access_token


def test_a_check_of_a_client_in_use_reuses_its_token_and_an_idle_ones_costs_one_request(stack: Stack) -> None:
    stack.vendor().vend(stack.CONSUMER, CLIENT, 60)  # in use: a token of the current version is cached
    requests_before = stack.stats()["tokensIssued"]

    checks = [stack.sweep().check(client).outcome for client in (CLIENT, ADMIN, CLIENT, ADMIN)]

    assert checks == ["healthy"] * 4
    # The admin's first check minted a token (of its current version); every other check reused one.
    assert stack.stats()["tokensIssued"] == requests_before + 1


@pytest.mark.long
@pytest.mark.parametrize("dialect", [AUTH0], indirect=True)  # random propagation is Auth0's
def test_a_check_during_a_new_secrets_random_propagation_finds_it_healthy(stack: Stack) -> None:
    stack.emulator("config", secretPropagationSeconds=30)
    stack.drive(stack.steps(), stack.start())  # AWSCURRENT: the new secret, accepted at random for 30 s
    sweep = stack.sweep(test_patience=Patience(seconds=30, first_pause=0.05, max_pause=0.2))
    outcomes = []

    for _ in range(8):
        stack.forget_tokens(CLIENT)  # no cached token proves the version: each check asks Zus
        outcomes.append(sweep.check(CLIENT).outcome)

    assert outcomes == ["healthy"] * 8  # never a recovery rotation for a secret still settling
    assert find_started_rotations(stack.aws.secretsmanager) == []


def test_a_dead_secret_is_repaired_after_its_callers_spent_the_budget(
    stack: Stack, counting_metrics: CountingMetrics
) -> None:
    before = stack.current()
    stack.zus_client.rotate_secret(stack.app_client.id, stack.admin_token)  # out of band: the stored secret is dead
    now = time.time()
    while budget.used(stack.table, CLIENT, now) < 90:  # callers spent the ordinary budget (90 of 100) on it
        budget.spend(stack.table, CLIENT, now, 100)
    for _ in range(6 * 3):  # six callers keep asking: our budget refuses them, Zus never sees them
        with pytest.raises(errors.Throttled):
            stack.vendor().vend(stack.CONSUMER, CLIENT, 60)

    check = stack.sweep(counting_metrics, settle_seconds=0).check(CLIENT)  # its health check: the reserve

    assert check.outcome == "recovery-started"
    stack.drive(stack.steps(), stack.started(stack.secret_id))  # testSecret: the reserve too
    stack.assert_rotated_cleanly(before)
    assert stack.vendor().vend(stack.CONSUMER, CLIENT, 60).source == "table"  # the token issued for testSecret
    assert budget.used(stack.table, CLIENT, time.time()) == 92


# --- the handlers, as EventBridge Scheduler and the work queue's event source invoke them ----------------


def test_the_scheduled_jobs_hand_due_work_to_the_queue_and_the_worker_does_it_once(
    stack: Stack, load_function: LoadFunction
) -> None:
    queue = stack.work_queue()
    scheduled, worker = scheduled_and_worker(stack, load_function)
    context = LocalLambdaContext("zus-m2m-scheduled", timeout_seconds=300)
    # A client in use whose token enters the refresh margin before the next run
    stack.emulator("config", tokenLifetimeSeconds=180)  # its margin: half its life, 90 s
    first = stack.vendor().vend(stack.CONSUMER, CLIENT, 60)
    stack.table.mark_requested(CLIENT, time.time())

    refresh = scheduled.lambda_handler(json.loads((EVENTS / "scheduler_pre_refresh.json").read_text()), context)
    again = scheduled.lambda_handler(json.loads((EVENTS / "scheduler_pre_refresh.json").read_text()), context)
    delivered, answer = queue.deliver(worker)

    assert refresh == {
        "job": "pre-refresh",
        "report": {"due": 1, "dispatched": 1, "superseded": 0, "unsent": 0, "capped": 0},
    }
    assert again["report"]["due"] == 0  # claimed: not handed out twice
    assert [json.loads(body)["client"] for body in delivered] == [CLIENT]
    assert answer == {"batchItemFailures": []}
    token = stack.table.get(CLIENT, consistent=True).token
    assert token is not None
    assert token.access_token != first.access_token

    # The rotation sweep: the client's record (due at once) and the bootstrap admin (enlisted)
    swept = scheduled.lambda_handler(json.loads((EVENTS / "scheduler_rotation_sweep.json").read_text()), context)
    delivered, answer = queue.deliver(worker)

    assert swept["report"] | {"enlisted": 1} == {
        "due": 2,
        "dispatched": 2,
        "superseded": 0,
        "unsent": 0,
        "capped": 0,
        "enlisted": 1,
    }
    assert sorted(json.loads(body)["client"] for body in delivered) == sorted([CLIENT, ADMIN])
    assert answer == {"batchItemFailures": []}
    assert scheduled.lambda_handler({"job": "rotation-sweep"}, context)["report"]["due"] == 0  # next in an hour
    with pytest.raises(errors.InvalidRequest, match="unknown scheduled job 'rotate-everything'"):
        scheduled.lambda_handler({"job": "rotate-everything"}, context)
    with pytest.raises(errors.InvalidRequest, match="unknown scheduled job None"):
        scheduled.lambda_handler({}, context)


def test_the_sweep_starts_due_rotations_with_the_rotation_function(stack: Stack, load_function: LoadFunction) -> None:
    queue = stack.work_queue()
    scheduled, worker = scheduled_and_worker(stack, load_function)
    worker.work.sweep.policy = dataclasses.replace(worker.work.sweep.policy, rotation_interval=0)

    scheduled.lambda_handler({"job": "rotation-sweep"}, LocalLambdaContext("zus-m2m-scheduled", 300))
    queue.deliver(worker)

    assert started_secrets(stack) == {stack.secret_id, ADMIN_SECRET}
    description = stack.aws.secretsmanager.describe_secret(SecretId=ADMIN_SECRET)
    assert description["RotationLambdaARN"] == stack.settings.rotation_function_arn


def test_the_worker_takes_the_sample_sqs_event_and_answers_which_messages_failed(
    stack: Stack, load_function: LoadFunction
) -> None:
    worker = load_function("worker", stack.lambda_environment())
    event = json.loads((EVENTS / "sqs_work_queue.json").read_text())
    [record] = event["Records"]
    assert json.loads(record["body"])["client"] == CLIENT

    # billing-service has no token item yet (nobody asked for its token): no refresh of it is due
    answer = worker.lambda_handler(event, LocalLambdaContext("zus-m2m-worker", 60))

    assert answer == {"batchItemFailures": [{"itemIdentifier": record["messageId"]}]}
    stack.vendor().vend(stack.CONSUMER, CLIENT, 60)  # now it has one, due at another time: superseded
    assert worker.lambda_handler(event, LocalLambdaContext("zus-m2m-worker", 60)) == {"batchItemFailures": []}


def test_a_redelivered_message_does_its_work_once_and_a_poisoned_one_reaches_the_dead_letters(
    stack: Stack, load_function: LoadFunction
) -> None:
    queue = stack.work_queue()
    scheduled, worker = scheduled_and_worker(stack, load_function)
    stack.emulator("config", tokenLifetimeSeconds=180)  # its margin: half its life, 90 s
    stack.vendor().vend(stack.CONSUMER, CLIENT, 60)
    stack.table.mark_requested(CLIENT, time.time())
    scheduled.lambda_handler({"job": "pre-refresh"}, LocalLambdaContext("zus-m2m-scheduled", 300))
    [message] = queue.receive()
    poison = {"kind": "refresh", "client": "nobody", "dueAt": 1.0}
    queue.sqs.send_message(QueueUrl=queue.url, MessageBody=json.dumps(poison))
    tokens_before = stack.stats()["tokensIssued"]

    # The same message twice (a worker that timed out after the work): the work is done once
    _, first = queue.deliver(worker, [message])
    _, second = queue.deliver(worker, [message])

    assert first == second == {"batchItemFailures": []}
    assert stack.stats()["tokensIssued"] == tokens_before + 1
    # The poisoned one: refused at each of its three receives, then SQS moves it to the dead letters
    for _ in range(3):
        [received] = wait_until(
            queue.receive, "the poisoned message to come back after its visibility timeout", interval=0.1
        )
        _, answer = queue.deliver(worker, [received])
        assert answer == {"batchItemFailures": [{"itemIdentifier": received["MessageId"]}]}

    def dead_letters() -> list[dict[str, Any]]:
        assert queue.receive() == []  # SQS moves it when a receive finds it past maxReceiveCount
        return queue.receive(queue.dead_letters_url)

    [dead] = wait_until(dead_letters, "the message in the dead-letter queue", interval=0.1)
    assert json.loads(dead["Body"]) == poison


# --- a failed rotation step, recorded by the rotation function and repaired by the repair job --------------

REPAIR = json.loads((EVENTS / "scheduler_rotation_repair.json").read_text())


def test_a_failed_step_is_recorded_and_repaired_by_the_second_repair_run(
    stack: Stack, load_function: LoadFunction
) -> None:
    # Given a rotation whose createSecret failed for good (Zus refused rotate-secret) in the rotation function
    rotation = load_function("rotation", stack.lambda_environment())
    scheduled = load_function("scheduled", stack.lambda_environment())
    context = LocalLambdaContext("zus-m2m-scheduled", timeout_seconds=300)
    before = stack.current()
    arn, version = stack.start()
    stack.emulator("faults", status=500, rate=1.0, paths=["/auth/app-clients"])

    def invoke(event: dict[str, str]) -> None:
        rotation.lambda_handler(event, LocalLambdaContext("zus-m2m-rotation", timeout_seconds=120))

    with pytest.raises(errors.ZusError):
        drive_rotation(invoke, arn, version, retries=1, pause=0.01)
    stack.emulator("faults")  # Zus is back; Secrets Manager has given up on that rotation

    # When the repair job runs: the first run leaves Secrets Manager's own retries one interval, the
    # second repairs (nothing was stored: the rotation starts again)
    first = scheduled.lambda_handler(REPAIR, context)
    second = scheduled.lambda_handler(REPAIR, context)

    assert first["report"]["clients"] == {CLIENT: "waiting"}
    assert second["report"]["clients"] == {CLIENT: "rotation-restarted"}
    restarted = stack.started(stack.secret_id)
    assert restarted[1] != version
    stack.drive(stack.steps(), restarted)
    stack.assert_rotated_cleanly(before)
    assert scheduled.lambda_handler(REPAIR, context)["report"] == {"failures": 0, "counts": {}, "clients": {}}


def test_a_failed_test_step_is_rolled_forward_by_the_repair_job(stack: Stack) -> None:
    before = stack.current()
    rotation = stack.start()
    steps = stack.steps()
    steps.runtime = replace(
        steps.runtime, checkpoint=crash_at(RotationCheckpoints.TESTED, error=RuntimeError)
    )  # testSecret fails on every retry
    with pytest.raises(RuntimeError):
        stack.drive(steps, rotation, retries=1)
    repair = stack.new_container().rotation_repair()

    reports = [repair.run(), repair.run()]

    assert [report["clients"] for report in reports] == [{CLIENT: "waiting"}, {CLIENT: "rolled-forward"}]
    stack.assert_rotated_cleanly(before)
    assert repair.run()["failures"] == 0


def test_a_step_that_fails_then_succeeds_on_secrets_managers_retry_leaves_nothing_to_repair(stack: Stack) -> None:
    before = stack.current()
    rotation = stack.start()
    steps = stack.steps()
    steps.runtime = replace(
        steps.runtime, checkpoint=crash_at(RotationCheckpoints.PENDING_STORED, error=RuntimeError, once=True)
    )

    stack.drive(steps, rotation)

    stack.assert_rotated_cleanly(before)
    assert stack.new_container().rotation_repair().run()["failures"] == 0
