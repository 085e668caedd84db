"""Token vending against moto server and the Zus emulator, over real HTTP."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import pytest

from zus_m2m import errors
from zus_m2m.aws.dynamo import client_key
from zus_m2m.tokens.pre_refresh import TokenPreRefresh
from zus_m2m.tokens.vendor import TokenVendor, VendingPolicy
from zus_m2m.work.items import REFRESH

if TYPE_CHECKING:
    from conftest import VendingStack as Stack

CLIENT = "billing-service"


@pytest.fixture
def stack(vending_stack: Stack) -> Stack:
    assert vending_stack.CLIENT == CLIENT
    return vending_stack


def test_fifty_threads_in_fifty_containers_make_one_upstream_request(stack: Stack) -> None:
    containers = [stack.vendor() for _ in range(50)]
    start = threading.Barrier(50)

    def ask(vendor: TokenVendor) -> str:
        start.wait()
        return vendor.vend(stack.CONSUMER, CLIENT, min_ttl=60).access_token

    with ThreadPoolExecutor(max_workers=50) as pool:
        tokens = list(pool.map(ask, containers))

    assert len(set(tokens)) == 1
    assert stack.upstream_requests() == 1


def test_the_token_item_carries_a_ttl_at_the_tokens_expiry(stack: Stack) -> None:
    token = stack.vendor().vend(stack.CONSUMER, CLIENT, min_ttl=60)

    item = stack.aws.dynamodb.get_item(TableName=stack.aws.table_name, Key=client_key(CLIENT, "token"))["Item"]

    assert int(item["ttl"]["N"]) == int(token.expires_at) + 1
    assert "leaseOwner" not in item


def test_an_expired_item_that_ttl_has_not_deleted_yet_is_not_served(stack: Stack) -> None:
    # Given tokens that live 2 s, and an item whose TTL deletion lags (moto never deletes)
    stack.emulator("config", tokenLifetimeSeconds=2)
    first = stack.vendor().vend(stack.CONSUMER, CLIENT, min_ttl=0)
    time.sleep(2.2)

    second = stack.vendor().vend(stack.CONSUMER, CLIENT, min_ttl=0)

    assert second.access_token != first.access_token
    assert stack.upstream_requests() == 2


def test_a_lease_whose_holder_died_expires_by_itself(stack: Stack) -> None:
    now = time.time()
    assert stack.table.acquire_lease(CLIENT, "crashed-container", now, now + 1.0)

    token = stack.vendor().vend(stack.CONSUMER, CLIENT, min_ttl=60)

    assert token.seconds_left(time.time()) > 3000
    assert stack.upstream_requests() == 1


def test_a_zus_429_is_remembered_in_the_table(stack: Stack) -> None:
    stack.emulator("faults", status=429, rate=1.0, retryAfter=30, paths=["/oauth/token"])

    with pytest.raises(errors.TemporarilyUnavailable) as first:
        stack.vendor().vend(stack.CONSUMER, CLIENT, min_ttl=60)
    stack.emulator("faults")  # Zus would answer now, but we promised to wait
    with pytest.raises(errors.TemporarilyUnavailable) as second:
        stack.vendor().vend(stack.CONSUMER, CLIENT, min_ttl=60)

    assert first.value.retry_after == 30
    assert 25 < second.value.retry_after <= 30
    assert stack.upstream_requests() == 0


def test_zus_failing_while_a_token_is_cached_still_serves_the_token(stack: Stack) -> None:
    vendor = stack.vendor(VendingPolicy(refresh_margin=3599))  # every token is due a refresh
    cached = vendor.vend(stack.CONSUMER, CLIENT, min_ttl=60)
    stack.emulator("faults", status=500, rate=1.0, paths=["/oauth/token"])

    served = [
        stack.vendor(VendingPolicy(refresh_margin=3599)).vend(stack.CONSUMER, CLIENT, min_ttl=60) for _ in range(5)
    ]

    assert {t.access_token for t in served} == {cached.access_token}


def test_zus_down_with_nothing_cached_is_503_with_retry_after(stack: Stack) -> None:
    stack.emulator("faults", status=503, rate=1.0, paths=["/oauth/token"])

    with pytest.raises(errors.ZusUnavailable) as caught:
        stack.vendor().vend(stack.CONSUMER, CLIENT, min_ttl=60)

    assert caught.value.http_status == 503
    assert caught.value.retry_after >= 1


def test_after_zus_rotated_the_pending_version_is_used(stack: Stack) -> None:
    # Given Zus rotated the secret and the new one is stored as AWSPENDING, not yet current
    rotated = stack.zus_client.rotate_secret(stack.app_client.id, stack.admin_token)
    stack.aws.secretsmanager.put_secret_value(
        SecretId=stack.secret_id,
        SecretString=stack.credentials.with_secret(rotated.client_secret).to_json(),
        VersionStages=["AWSPENDING"],
    )

    token = stack.vendor().vend(stack.CONSUMER, CLIENT, min_ttl=60)

    assert token.access_token
    assert stack.upstream_requests() == 2  # the dead current secret, then the pending one


def test_every_version_refused_is_503_after_one_try_each(stack: Stack) -> None:
    stack.zus_client.rotate_secret(stack.app_client.id, stack.admin_token)  # the new secret is lost

    with pytest.raises(errors.TemporarilyUnavailable) as caught:
        stack.vendor().vend(stack.CONSUMER, CLIENT, min_ttl=60)

    assert "invalid_client" in str(caught.value)
    assert stack.upstream_requests() == 1
    assert stack.credentials.client_secret not in str(caught.value)


def test_the_budget_is_counted_in_the_table_across_containers(stack: Stack) -> None:
    stack.emulator("config", tokenLifetimeSeconds=1)
    policy = VendingPolicy(budget_per_hour=3)
    for _ in range(3):
        stack.vendor(policy).vend(stack.CONSUMER, CLIENT, min_ttl=0)
        time.sleep(1.05)

    with pytest.raises(errors.Throttled) as caught:
        stack.vendor(policy).vend(stack.CONSUMER, CLIENT, min_ttl=0)

    assert caught.value.http_status == 429
    assert 3590 < caught.value.retry_after <= 3600
    assert stack.upstream_requests() == 3
    assert stack.table.budget_used(CLIENT, time.time()) == 3


def test_a_token_in_use_is_due_for_its_pre_refresh_and_its_renewal_moves_it_on(stack: Stack) -> None:
    stack.emulator("config", tokenLifetimeSeconds=400)
    vendor = stack.vendor(VendingPolicy(refresh_margin=300))
    first = vendor.vend(stack.CONSUMER, CLIENT, min_ttl=60)
    index = stack.new_container().due_index()
    stack.table.mark_requested(CLIENT, time.time())  # the vend did too, in the background
    [due] = index.due(REFRESH, time.time() + 3600, 10)
    assert (due.client, due.due_at) == (CLIENT, pytest.approx(first.expires_at - 300, abs=0.01))

    renewed = TokenPreRefresh(stack.vendor(VendingPolicy(refresh_margin=300)), horizon=120).refresh(CLIENT)

    assert renewed is True
    state = stack.table.get(CLIENT, consistent=True)
    assert state.token is not None
    assert state.token.access_token != first.access_token
    versions = stack.aws.secretsmanager.describe_secret(SecretId=stack.secret_id)["VersionIdsToStages"]
    assert versions[state.token.secret_version] == ["AWSCURRENT"]  # the version that minted it
    [moved] = index.due(REFRESH, time.time() + 3600, 10)  # its next pre-refresh moved with it
    assert moved.due_at == pytest.approx(state.token.expires_at - 300, abs=0.01)
