"""Token vending against moto server and the Zus emulator, over real HTTP."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from aws_lambda_powertools import Metrics

from zus_m2m import errors, wiring
from zus_m2m.aws.token_table import DynamoTokenTable, client_key
from zus_m2m.credentials import ClientCredentials
from zus_m2m.settings import Settings
from zus_m2m.tokens.vendor import TokenVendor, VendingPolicy
from zus_m2m.zus.client import ZusClient

CLIENT = "billing-service"


class Stack:
    """The vending library wired to moto and the emulator, with one managed client stored."""

    def __init__(self, aws, zus) -> None:
        self.aws = aws
        self.zus = zus
        self.settings = Settings.from_env(
            {
                "TABLE_NAME": aws.table_name,
                "ADMIN_SECRET_NAME": "zus-m2m/test/zus-m2m-admin",
                "STAGE": "test",
                "ZUS_API_BASE_URL": zus.url,
                "ZUS_AUTH_BASE_URL": zus.url,
            }
        )
        self.zus_client = ZusClient(self.settings.zus, timeout=(1.0, 2.0))
        admin = self.zus_client.request_token("local-admin", "local-admin-secret").access_token
        role = self.zus_client.find_role("Builder Admin", admin)
        created = self.zus_client.create_app_client(CLIENT, role.id, admin)
        self.admin_token = admin
        self.app_client = created.app_client
        self.credentials = ClientCredentials(
            name=CLIENT,
            app_client_id=created.app_client.id,
            client_id=created.app_client.client_id,
            client_secret=created.client_secret,
            role_id=role.id,
            role_name=role.name,
            audience=self.settings.zus.audience,
        )
        self.secret_id = self.settings.secret_name(CLIENT)
        aws.secretsmanager.create_secret(Name=self.secret_id, SecretString=self.credentials.to_json())
        self.table = DynamoTokenTable(aws.dynamodb, aws.table_name)

    def container(self, policy: VendingPolicy | None = None) -> TokenVendor:
        """A fresh vendor: what one new Lambda container would build."""
        vendor = wiring.token_vendor(
            self.settings,
            Metrics(namespace="ZusM2MTest", service="test"),
            dynamodb=self.aws.client("dynamodb"),
            secretsmanager=self.aws.client("secretsmanager"),
            zus=ZusClient(self.settings.zus, timeout=(1.0, 2.0)),
        )
        if policy is not None:
            vendor.policy = policy
        return vendor

    def upstream_requests(self) -> int:
        counts = requests.get(f"{self.zus.url}/_emulator/stats", timeout=5).json()["tokenRequests"]
        return int(counts.get(self.credentials.client_id, 0))

    def emulator(self, route: str, **body) -> None:
        requests.post(f"{self.zus.url}/_emulator/{route}", json=body, timeout=5).raise_for_status()


@pytest.fixture
def stack(aws, zus) -> Stack:
    return Stack(aws, zus)


def test_fifty_threads_in_fifty_containers_make_one_upstream_request(stack: Stack) -> None:
    containers = [stack.container() for _ in range(50)]
    start = threading.Barrier(50)

    def ask(vendor: TokenVendor) -> str:
        start.wait()
        return vendor.vend(CLIENT, min_ttl=60).access_token

    with ThreadPoolExecutor(max_workers=50) as pool:
        tokens = list(pool.map(ask, containers))

    assert len(set(tokens)) == 1
    assert stack.upstream_requests() == 1


def test_the_token_item_carries_a_ttl_at_the_tokens_expiry(stack: Stack) -> None:
    token = stack.container().vend(CLIENT, min_ttl=60)

    item = stack.aws.dynamodb.get_item(TableName=stack.aws.table_name, Key=client_key(CLIENT, "token"))["Item"]

    assert int(item["ttl"]["N"]) == int(token.expires_at) + 1
    assert "leaseOwner" not in item


def test_an_expired_item_that_ttl_has_not_deleted_yet_is_not_served(stack: Stack) -> None:
    # Given tokens that live 2 s, and an item whose TTL deletion lags (moto never deletes)
    stack.emulator("config", tokenLifetimeSeconds=2)
    first = stack.container().vend(CLIENT, min_ttl=0)
    time.sleep(2.2)

    second = stack.container().vend(CLIENT, min_ttl=0)

    assert second.access_token != first.access_token
    assert stack.upstream_requests() == 2


def test_a_lease_whose_holder_died_expires_by_itself(stack: Stack) -> None:
    now = time.time()
    assert stack.table.acquire_lease(CLIENT, "crashed-container", now, now + 1.0)

    token = stack.container().vend(CLIENT, min_ttl=60)

    assert token.seconds_left(time.time()) > 3000
    assert stack.upstream_requests() == 1


def test_a_zus_429_is_remembered_in_the_table(stack: Stack) -> None:
    stack.emulator("faults", status=429, rate=1.0, retryAfter=30, paths=["/oauth/token"])

    with pytest.raises(errors.TemporarilyUnavailable) as first:
        stack.container().vend(CLIENT, min_ttl=60)
    stack.emulator("faults")  # Zus would answer now, but we promised to wait
    with pytest.raises(errors.TemporarilyUnavailable) as second:
        stack.container().vend(CLIENT, min_ttl=60)

    assert first.value.retry_after == 30
    assert 25 < second.value.retry_after <= 30
    assert stack.upstream_requests() == 0


def test_zus_failing_while_a_token_is_cached_still_serves_the_token(stack: Stack) -> None:
    vendor = stack.container(VendingPolicy(refresh_margin=3599))  # every token is due a refresh
    cached = vendor.vend(CLIENT, min_ttl=60)
    stack.emulator("faults", status=500, rate=1.0, paths=["/oauth/token"])

    served = [stack.container(VendingPolicy(refresh_margin=3599)).vend(CLIENT, min_ttl=60) for _ in range(5)]

    assert {t.access_token for t in served} == {cached.access_token}


def test_zus_down_with_nothing_cached_is_503_with_retry_after(stack: Stack) -> None:
    stack.emulator("faults", status=503, rate=1.0, paths=["/oauth/token"])

    with pytest.raises(errors.ZusUnavailable) as caught:
        stack.container().vend(CLIENT, min_ttl=60)

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

    token = stack.container().vend(CLIENT, min_ttl=60)

    assert token.access_token
    assert stack.upstream_requests() == 2  # the dead current secret, then the pending one


def test_every_version_refused_is_503_after_one_try_each(stack: Stack) -> None:
    stack.zus_client.rotate_secret(stack.app_client.id, stack.admin_token)  # the new secret is lost

    with pytest.raises(errors.TemporarilyUnavailable) as caught:
        stack.container().vend(CLIENT, min_ttl=60)

    assert "invalid_client" in str(caught.value)
    assert stack.upstream_requests() == 1
    assert stack.credentials.client_secret not in str(caught.value)


def test_the_budget_is_counted_in_the_table_across_containers(stack: Stack) -> None:
    stack.emulator("config", tokenLifetimeSeconds=1)
    policy = VendingPolicy(budget_per_hour=3)
    for _ in range(3):
        stack.container(policy).vend(CLIENT, min_ttl=0)
        time.sleep(1.05)

    with pytest.raises(errors.Throttled) as caught:
        stack.container(policy).vend(CLIENT, min_ttl=0)

    assert caught.value.http_status == 429
    assert 3590 < caught.value.retry_after <= 3600
    assert stack.upstream_requests() == 3
    assert stack.table.budget_used(CLIENT, time.time()) == 3


def test_pre_refresh_renews_a_recently_used_token_before_the_margin(stack: Stack) -> None:
    stack.emulator("config", tokenLifetimeSeconds=400)
    vendor = stack.container(VendingPolicy(refresh_margin=300))
    first = vendor.vend(CLIENT, min_ttl=60)
    stack.table.mark_requested(CLIENT, time.time())

    report = stack.container(VendingPolicy(refresh_margin=300)).pre_refresh(horizon=120)

    assert report == {"considered": 1, "refreshed": 1, "failed": 0}
    state = stack.table.get(CLIENT, consistent=True)
    assert state.token is not None
    assert state.token.access_token != first.access_token
