"""`make bench-scale`'s machinery on 20 clients (its own moto and emulator processes): it seeds, runs the
scheduled jobs through the real handlers and the work queue, and its figures add up."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from zus_m2m.admin_values import CreateRequest
from zus_m2m.tokens.policy import VendingPolicy
from zus_m2m.values import SecretNaming

if TYPE_CHECKING:
    from integration_support import ProvisioningStack

ROOT = Path(__file__).resolve().parents[2]


def test_bench_scale_runs_and_its_jobs_read_only_what_is_due() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_scale.py"), "--clients", "20", "--cycles", "10"],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])

    assert (figures["clients"], figures["clients_in_use"], figures["clients_idle"]) == (20, 18, 2)
    for job in ("pre_refresh", "rotation_sweep"):
        phase = figures[job]
        assert phase["due_total"] > 0, job
        assert phase["index_items_read_total"] == phase["due_total"], job  # the due items, no others
        assert phase["dispatched_total"] == phase["due_total"], job
        assert (phase["refused_messages"], phase["work_failed"]) == (0, 0), job
        # every write counted by the item it wrote; some of them moved a due mark
        writes = phase["dynamodb_writes_by_item"]
        calls = phase["dynamodb_calls"]
        assert sum(writes.values()) == sum(calls.get(op, 0) for op in ("PutItem", "UpdateItem", "DeleteItem")), job
        assert 0 < phase["due_index_changes"] < sum(writes.values()), job
    # a refresh writes the token item (claim, lease, token) and the budget; a check the record
    assert set(figures["pre_refresh"]["dynamodb_writes_by_item"]) == {"token", "budget"}
    assert set(figures["rotation_sweep"]["dynamodb_writes_by_item"]) >= {"record"}
    assert figures["rotation_sweep"]["cycles"] == 2  # every fifth cycle
    # every refresh cost one token request; the idle clients' checks one each, the others' none
    assert figures["refresh_token_requests"] == figures["pre_refresh"]["due_total"]
    assert figures["health_check_token_requests"] <= figures["clients_idle"]
    assert figures["longest_over_half_timeout"] < 1
    assert figures["table_items"] > figures["pre_refresh"]["items_read_per_cycle_max"]


def shapes(stack: ProvisioningStack, client: str) -> dict[str, dict[str, str]]:
    """A client's items by kind, each as its attributes' names and DynamoDB types (values differ by client)."""
    items = stack.aws.dynamodb.query(
        TableName=stack.aws.table_name,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": f"client#{client}"}},
        ConsistentRead=True,
    )["Items"]
    return {item["sk"]["S"]: {name: next(iter(value)) for name, value in item.items()} for item in items}


def test_bench_scale_seeds_the_items_provisioning_and_vending_write(
    provisioning_stack: ProvisioningStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bench's fast seed (BatchWriteItem) writes each client's items with the attributes, of the same
    types, that the real provisioning and a vend call write: for a client in use its record, its token item
    (the record's copy, the token, the pre-refresh's due marks) and its budget; for an idle one the record."""
    stack = provisioning_stack
    stack.provisioning().create_client(CreateRequest(stack.CLIENT, consumers=(stack.CONSUMER_ROLE,)))
    stack.vendor().vend(stack.CONSUMER, stack.CLIENT, 60)
    real = shapes(stack, stack.CLIENT)
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    bench_scale: Any = importlib.import_module("bench_scale")

    due = bench_scale.seed_clients(
        stack.aws.dynamodb,
        stack.aws.secretsmanager,
        stack.aws.table_name,
        SecretNaming("zus-m2m", "test", stack.ADMIN, stack.ADMIN_SECRET),
        stack.zus_client,
        ["seeded-in-use", "seeded-idle"],
        {"seeded-idle"},
        bench_scale.SteadyState(time.time(), 3600, 300, 3600.0),
        threads=1,
    )

    assert set(due) == {"seeded-in-use"}
    assert sorted(real) == ["budget", "record", "token"]
    in_use, idle = shapes(stack, "seeded-in-use"), shapes(stack, "seeded-idle")
    assert sorted(in_use) == sorted(real)
    for kind, attributes in real.items():
        assert sorted(in_use[kind].items()) == sorted(attributes.items()), kind
    assert idle == {"record": real["record"]}


def allowed_attempts(outage: float, policy: VendingPolicy) -> int:
    """The most token requests one client's shared back-off lets through in ``outage`` seconds: one at
    once, then one after each pause, the pauses doubling from ``first_backoff`` up to ``max_backoff``
    (the policy's documented schedule, written out here), each at least 0.8 of it (the jitter's floor)."""
    attempts, elapsed = 1, 0.0
    while True:
        elapsed += 0.8 * min(policy.max_backoff, policy.first_backoff * 2.0 ** (attempts - 1))
        if elapsed > outage:
            return attempts
        attempts += 1


def test_a_short_outage_drill_counts_what_zus_received() -> None:
    """`make outage-drill`, short: 3 callers at 2/s through 5 s of token-endpoint 503s. Zus's own count
    of the token requests it received during the outage is no more than the shared back-off allows, and
    what the service's budget recorded, and the callers get tokens once Zus is back."""
    drill = [sys.executable, str(ROOT / "scripts" / "outage_drill.py"), "--callers", "3", "--rate", "2"]
    result = subprocess.run(
        [*drill, "--outage", "5", "--after", "8"], capture_output=True, text=True, timeout=240, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])

    attempts = figures["upstream_attempts_during_outage"]  # the emulator's count
    assert attempts >= 1
    # + 1: an attempt racing the outage's end (sent before the drill turned the fault off, at Zus after).
    budget = VendingPolicy(budget_per_hour=figures["budget"])
    assert attempts <= allowed_attempts(figures["outage_seconds"], budget) + 1, figures
    assert 0 <= figures["budget_stamps_during_outage"] - attempts <= 1, figures
    assert figures["vend_calls_during_outage"] > attempts  # most calls were answered without asking Zus
    assert figures["seconds_to_first_200_after_zus_returned"] is not None, figures
