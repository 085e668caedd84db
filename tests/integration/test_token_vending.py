"""Token vending against moto server and the Zus emulator, over real HTTP, in both dialects of Zus's auth
server (the ``vending_stack`` fixture runs each test in Auth0's and in RFC 6749's)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import pytest
from aws_lambda_powertools import Metrics
from integration_support import assert_waits_as_zus_said

from zus_emulator.config import AUTH0
from zus_m2m import errors, wiring
from zus_m2m.aws.secrets import SecretsManagerStore
from zus_m2m.aws.table import client_key
from zus_m2m.tokens import budget
from zus_m2m.tokens.policy import VendingPolicy
from zus_m2m.tokens.pre_refresh import TokenPreRefresh
from zus_m2m.tokens.vendor import TokenVendor
from zus_m2m.values import AWSCURRENT, REFRESH, CachedToken, fingerprint

if TYPE_CHECKING:
    from integration_support import VendingStack as Stack

CLIENT = "billing-service"


@pytest.fixture
def stack(vending_stack: Stack) -> Stack:
    assert vending_stack.CLIENT == CLIENT
    return vending_stack


def test_fifty_threads_in_fifty_containers_make_one_upstream_request(stack: Stack) -> None:
    # 50 containers in one process share its GIL and one moto: on a loaded machine the holder's fetch took
    # over the 3 s a waiter waits in production; this test counts mints, so its waiters wait longer.
    patient = VendingPolicy(wait_seconds=30.0)
    containers = [stack.vendor(patient) for _ in range(50)]
    start = threading.Barrier(50)

    def ask(vendor: TokenVendor) -> str:
        start.wait()
        return vendor.vend(stack.CONSUMER, CLIENT, min_ttl=60).access_token

    with ThreadPoolExecutor(max_workers=50) as pool:
        tokens = list(pool.map(ask, containers))

    assert len(set(tokens)) == 1
    assert stack.upstream_requests() == 1


def dynamodb_requests_of_a_new_container(stack: Stack) -> list[tuple[str, bool]]:
    """What a new container sends DynamoDB (operation, consistent read) for one vend call, observed
    through botocore's own events."""
    dynamodb = stack.aws.client("dynamodb")
    sent: list[tuple[str, bool]] = []
    dynamodb.meta.events.register(
        "provide-client-params.dynamodb.*",
        lambda params, model, **_: sent.append((model.name, bool(params.get("ConsistentRead")))),
    )
    container = wiring.Container(
        stack.settings,
        Metrics(namespace="ZusM2MTest", service="test"),
        aws=wiring.AwsClients(dynamodb=dynamodb, secretsmanager=stack.aws.client("secretsmanager")),
    )
    served = container.token_vendor(stack.zus_client).vend(stack.CONSUMER, CLIENT, min_ttl=60)
    assert served.source == "table"
    return sent


def test_a_dynamodb_tier_hit_is_one_consistent_get_item(stack: Stack) -> None:
    # Given a token in the table (the record's copy written with the record, at provisioning)
    stack.vendor().vend(stack.CONSUMER, CLIENT, min_ttl=60)
    # Then a new container's hit is one strongly consistent GetItem (another's recent in-use mark spares a write)
    assert dynamodb_requests_of_a_new_container(stack) == [("GetItem", True)]


def test_a_token_item_that_lost_the_records_copy_gets_it_back_from_the_first_read(stack: Stack) -> None:
    # Given a token item deleted (as TTL deletes it once its token expired), then a token stored again
    stack.vendor().vend(stack.CONSUMER, CLIENT, min_ttl=60)
    stack.aws.dynamodb.delete_item(TableName=stack.aws.table_name, Key=client_key(CLIENT, "token"))
    stack.vendor().vend(stack.CONSUMER, CLIENT, min_ttl=60)  # reads the record with a query

    # Then the copy is back: the next new container's hit is one GetItem again
    assert dynamodb_requests_of_a_new_container(stack) == [("GetItem", True)]


def test_the_token_item_carries_a_ttl_at_the_tokens_expiry(stack: Stack) -> None:
    token = stack.vendor().vend(stack.CONSUMER, CLIENT, min_ttl=60)

    item = stack.aws.dynamodb.get_item(TableName=stack.aws.table_name, Key=client_key(CLIENT, "token"))["Item"]

    assert int(item["ttl"]["N"]) == int(token.expires_at) + 1
    assert "leaseOwner" not in item


def test_an_expired_item_that_ttl_has_not_deleted_yet_is_not_served(stack: Stack) -> None:
    # Given tokens that live 8 s (time enough to arrive alive on a loaded machine), and an item whose TTL
    # deletion lags (moto never deletes)
    stack.emulator("config", tokenLifetimeSeconds=8)
    first = stack.vendor().vend(stack.CONSUMER, CLIENT, min_ttl=0)

    second = stack.vendor(ahead=10).vend(stack.CONSUMER, CLIENT, min_ttl=0)  # a container 10 s later

    assert second.access_token != first.access_token
    assert stack.upstream_requests() == 2


def test_a_lease_whose_holder_died_expires_by_itself(stack: Stack) -> None:
    now = time.time()
    assert stack.table.acquire_lease(CLIENT, "crashed-container", now, now + 1.0).taken

    token = stack.vendor().vend(stack.CONSUMER, CLIENT, min_ttl=60)

    assert token.seconds_left(time.time()) > 3000
    assert stack.upstream_requests() == 1


def test_a_zus_429_is_remembered_in_the_table(stack: Stack, dialect: str) -> None:
    stack.emulator("faults", status=429, rate=1.0, retryAfter=30, paths=["/oauth/token"])

    sent = time.time()
    with pytest.raises(errors.TemporarilyUnavailable) as first:
        stack.vendor().vend(stack.CONSUMER, CLIENT, min_ttl=60)
    answered = time.time()
    stack.emulator("faults")  # Zus would answer now, but we promised to wait
    with pytest.raises(errors.TemporarilyUnavailable) as second:
        stack.vendor().vend(stack.CONSUMER, CLIENT, min_ttl=60)

    assert_waits_as_zus_said(dialect, 30, sent, answered, first.value.retry_after)
    assert 25 < second.value.retry_after <= 31
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

    with pytest.raises(errors.TemporarilyUnavailable) as caught:
        stack.vendor().vend(stack.CONSUMER, CLIENT, min_ttl=60)

    assert caught.value.http_status == 503
    assert "HTTP 503" in caught.value.detail
    assert 0.8 <= caught.value.retry_after <= 1  # the first back-off, shared by every container
    state = stack.table.get(CLIENT, consistent=True)
    assert (state.failures, state.failed_by) == (1, "unavailable")


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
        stack.vendor(VendingPolicy(settle_seconds=0)).vend(stack.CONSUMER, CLIENT, min_ttl=60)  # stored long ago

    assert "every stored secret version" in str(caught.value)
    assert stack.upstream_requests() == 1
    assert stack.credentials.client_secret not in str(caught.value)
    assert stack.table.get(CLIENT, consistent=True).failed_by == "refused"


def test_the_budget_is_counted_in_the_table_across_containers(stack: Stack) -> None:
    stack.emulator("config", tokenLifetimeSeconds=8)
    policy = VendingPolicy(budget_per_hour=3)
    for later in range(3):  # each container 10 s after the last: the token before has expired for it
        stack.vendor(policy, ahead=10 * later).vend(stack.CONSUMER, CLIENT, min_ttl=0)

    with pytest.raises(errors.Throttled) as caught:
        stack.vendor(policy, ahead=30).vend(stack.CONSUMER, CLIENT, min_ttl=0)

    assert caught.value.http_status == 429
    assert 3540 < (caught.value.retry_after or 0) <= 3570  # the first stamp's hour, seen 30 s ahead
    assert stack.upstream_requests() == 3
    assert budget.used(stack.table, CLIENT, time.time()) == 3


def test_a_token_in_use_is_due_for_its_pre_refresh_and_its_renewal_moves_it_on(stack: Stack) -> None:
    stack.emulator("config", tokenLifetimeSeconds=400)
    vendor = stack.vendor(VendingPolicy(refresh_margin=300))
    first = vendor.vend(stack.CONSUMER, CLIENT, min_ttl=60)
    index = stack.new_container().due_index()  # the vend marked the client in use, in the call
    [due] = index.due(REFRESH, time.time() + 3600, 10)
    assert due.client == CLIENT
    assert due.due_at == pytest.approx(first.expires_at - 200, abs=0.01)

    # A 400 s token's margin is half its life (200 s): it enters it within a horizon of 250 s
    renewed = TokenPreRefresh(stack.vendor(VendingPolicy(refresh_margin=300)).flight, horizon=250).refresh(CLIENT)

    assert renewed is True
    state = stack.table.get(CLIENT, consistent=True)
    assert state.token is not None
    assert state.token.access_token != first.access_token
    versions = stack.aws.secretsmanager.describe_secret(SecretId=stack.secret_id)["VersionIdsToStages"]
    assert versions[state.token.secret_version] == ["AWSCURRENT"]  # the version that minted it
    [moved] = index.due(REFRESH, time.time() + 3600, 10)  # its next pre-refresh moved with it
    assert moved.due_at == pytest.approx(state.token.expires_at - 200, abs=0.01)


# --- failures are remembered, not retried by everyone (issue 17) ---------------------------------------


def attempts_within(seconds: float, policy: VendingPolicy) -> int:
    """The most token requests a fleet can send during an outage of ``seconds``: one, then one more
    each time the shortest (jittered) back-off of the schedule has passed."""
    attempts, elapsed = 1, 0.0
    while True:
        elapsed += 0.8 * policy.backoff(attempts)
        if elapsed > seconds:
            return attempts
        attempts += 1


@pytest.mark.parametrize("dialect", [AUTH0], indirect=True)  # what is counted does not depend on the dialect
def test_an_outage_costs_one_token_request_per_back_off_interval_however_many_callers(stack: Stack) -> None:
    policy = VendingPolicy()
    containers = [stack.vendor(policy) for _ in range(8)]
    answers: list[str] = []
    stop = threading.Event()

    def call(vendor: TokenVendor) -> None:
        while not stop.is_set():
            try:
                vendor.vend(stack.CONSUMER, CLIENT, min_ttl=60)
                answers.append("200")
            except errors.ZusM2MError as exc:
                answers.append(str(exc.http_status))
            stop.wait(0.1)

    stack.emulator("faults", status=503, paths=["/oauth/token"])
    down = time.monotonic()
    callers = [threading.Thread(target=call, args=(vendor,)) for vendor in containers]
    for caller in callers:
        caller.start()
    try:
        # Zus stays down until the fleet has failed three times in a row (about 1 + 2 s), or has sent
        # more token requests than any back-off allows, or a minute has passed.
        while (
            stack.table.get(CLIENT, consistent=True).failures < 3
            and budget.used(stack.table, CLIENT, time.time()) < 20
            and time.monotonic() - down < 60
        ):
            time.sleep(0.1)
        during = budget.used(stack.table, CLIENT, time.time())
        stack.emulator("faults")
        outage = time.monotonic() - down
        while "200" not in answers:
            time.sleep(0.1)
    finally:
        stop.set()
        for caller in callers:
            caller.join(timeout=10)

    bound = attempts_within(outage, policy)
    assert 3 <= during <= bound  # not 3 per vend call of 8 callers
    assert budget.used(stack.table, CLIENT, time.time()) <= bound + 1 < policy.budget_per_hour
    assert len(answers) > 10 * bound  # while the callers kept asking
    assert set(answers) == {"503", "200"}


@pytest.mark.parametrize("dialect", [AUTH0], indirect=True)
def test_a_min_ttl_tokens_never_have_is_422_without_a_token_request(stack: Stack) -> None:
    stack.emulator("config", tokenLifetimeSeconds=400)
    stack.vendor().vend(stack.CONSUMER, CLIENT, min_ttl=60)

    refusals = []
    for _ in range(5):
        with pytest.raises(errors.UnprocessableRequest) as caught:
            stack.vendor().vend(stack.CONSUMER, CLIENT, min_ttl=3000)
        refusals.append(caught.value.detail)

    assert set(refusals) == {"tokens from Zus live 400 s; minTtl 3000 cannot be met"}
    assert stack.upstream_requests() == 1


@pytest.mark.parametrize("dialect", [AUTH0], indirect=True)  # only Auth0 reports the quota
def test_another_user_spending_the_clients_zus_quota_stops_ordinary_requests_before_zus_does(stack: Stack) -> None:
    stack.emulator("config", tokenLimitPerHour=30, tokenLifetimeSeconds=8)
    for _ in range(19):  # someone else uses the same client: Zus counts it, our budget cannot
        stack.zus_client.request_token(stack.credentials.client_id, stack.credentials.client_secret)
    stack.vendor().vend(stack.CONSUMER, CLIENT, min_ttl=0)  # the 20th: Zus reports 10 left, the reserve

    with pytest.raises(errors.Throttled) as caught:
        stack.vendor(ahead=10).vend(stack.CONSUMER, CLIENT, min_ttl=0)  # 10 s later: that token has expired

    assert caught.value.http_status == 429
    assert 3500 < (caught.value.retry_after or 0) <= 3601
    assert stack.upstream_requests() == 20
    assert budget.used(stack.table, CLIENT, time.time()) == 1


# --- a token Zus refused, reported by fingerprint (?refused=): replaced once for the fleet -----------------
# The dialect changes nothing here: these run in Auth0's only.


def test_twenty_reports_of_one_refused_token_from_four_containers_mint_one_token(auth0_vending_stack: Stack) -> None:
    stack = auth0_vending_stack
    # The reported token was minted a moment ago: replaceable here whatever its age.
    containers = [stack.vendor(VendingPolicy(refused_min_token_age=0.0)) for _ in range(4)]
    refused = {container.vend(stack.CONSUMER, CLIENT, min_ttl=60).access_token for container in containers}
    assert len(refused) == 1  # each container holds it in memory
    (token,) = refused
    before = stack.upstream_requests()
    start = threading.Barrier(20)

    def report(vendor: TokenVendor) -> str:
        start.wait()
        return vendor.vend(stack.CONSUMER, CLIENT, min_ttl=60, refused=fingerprint(token)).access_token

    with ThreadPoolExecutor(max_workers=20) as pool:
        replaced = set(pool.map(report, containers * 5))

    assert stack.upstream_requests() - before == 1
    assert len(replaced) == 1
    assert replaced != refused
    stored = stack.table.get(CLIENT, consistent=True).token
    assert stored is not None
    assert {stored.access_token} == replaced
    # a late report of the same token gets the replacement, from any container, and mints nothing
    late = stack.vendor(VendingPolicy(refused_min_token_age=0.0)).vend(
        stack.CONSUMER, CLIENT, min_ttl=60, refused=fingerprint(token)
    )
    assert {late.access_token} == replaced
    assert stack.upstream_requests() - before == 1


def chained_reports(stack: Stack, policy: VendingPolicy, reports: int) -> list[str]:
    """One consumer's chain: each call reports the token the previous call answered, as a caller whose
    every token Zus refuses would; the answers, in order."""
    vendor = stack.vendor(policy)
    held = vendor.vend(stack.CONSUMER, CLIENT, min_ttl=60).access_token
    answers = []
    for _ in range(reports):
        held = vendor.vend(stack.CONSUMER, CLIENT, min_ttl=60, refused=fingerprint(held)).access_token
        answers.append(held)
    return answers


def test_thirty_chained_reports_by_one_consumer_cost_at_most_two_token_requests(auth0_vending_stack: Stack) -> None:
    # Token age is no obstacle here (0 s): only the gap between replacements limits the chain.
    stack = auth0_vending_stack

    answers = chained_reports(stack, VendingPolicy(refused_min_token_age=0.0), 30)

    assert stack.upstream_requests() <= 2, f"{stack.upstream_requests()} token requests at Zus for 30 reports"
    assert len(set(answers)) == 1  # one replacement, then the reports are ignored and it is answered
    stored = stack.table.get(CLIENT, consistent=True)
    assert stored.token is not None
    assert {stored.token.access_token} == set(answers)
    assert stored.refused_replaced_at > 0


def test_a_token_younger_than_ten_seconds_is_never_replaced_on_a_report(auth0_vending_stack: Stack) -> None:
    # No gap between replacements (0 s): only the token's age keeps the chain from minting.
    stack = auth0_vending_stack

    answers = chained_reports(stack, VendingPolicy(refused_replacement_min_gap=0.0), 30)

    assert stack.upstream_requests() == 1, f"{stack.upstream_requests()} token requests at Zus for 30 reports"
    assert len(set(answers)) == 1


def test_a_report_naming_another_token_gets_the_cached_one_and_mints_nothing(auth0_vending_stack: Stack) -> None:
    stack = auth0_vending_stack
    cached = stack.vendor().vend(stack.CONSUMER, CLIENT, min_ttl=60)

    answer = stack.vendor().vend(stack.CONSUMER, CLIENT, min_ttl=60, refused=fingerprint("another-token"))

    assert answer.access_token == cached.access_token
    assert stack.upstream_requests() == 1


def test_a_refused_token_that_expires_later_than_its_replacement_is_still_replaced(auth0_vending_stack: Stack) -> None:
    stack = auth0_vending_stack
    stack.emulator("config", tokenLifetimeSeconds=600)  # Zus now issues tokens that live 10 minutes
    app_client = stack.credentials.app_client_id
    refused = CachedToken("refused-long-lived", "Bearer", time.time() + 3000, app_client, lifetime=3600)
    stack.table.put_token(CLIENT, refused, owner=None)

    token = stack.vendor().vend(stack.CONSUMER, CLIENT, min_ttl=60, refused=refused.fingerprint)

    stored = stack.table.get(CLIENT, consistent=True).token
    assert stored is not None
    assert stored.access_token == token.access_token != refused.access_token
    assert stored.expires_at < refused.expires_at


def test_the_budget_holds_when_many_containers_spend_it_at_once(auth0_vending_stack: Stack) -> None:
    """16 containers (threads, each with its own boto3 clients and vendor) start at once and each asks
    Zus for a new token six times, by the three paths that spend the budget: a vend reporting the token
    it holds as refused (a new token for everyone), refresh-ahead, and a recovery check's issue_with
    (which may spend the reserve). 96 attempts against a budget of 10: the version-checked write on moto
    lets exactly as many requests through as it stored, never more than 10; every other attempt is
    a 429 or 503 with a Retry-After."""
    stack = auth0_vending_stack
    stack.emulator("config", tokenLimitPerHour=10_000)  # the budget, not Zus, is the limit here
    limit = 10
    # Reports unlimited (no gap, any age): each one is a try at the budget.
    policy = VendingPolicy(budget_per_hour=limit, refused_replacement_min_gap=0.0, refused_min_token_age=0.0)
    containers = 16
    vendors = [stack.vendor(policy) for _ in range(containers)]
    start = threading.Barrier(containers)
    answers: list[str] = []  # "token", "no-refresh", or "<status> retry-after <s>"
    unexpected: list[str] = []
    lock = threading.Lock()

    def spend(number: int) -> None:
        vendor = vendors[number]
        held: CachedToken | None = None
        start.wait()
        for attempt in range(number, number + 6):  # each container starts with another of the three
            try:
                if attempt % 3 == 0:
                    refused = None if held is None else held.fingerprint
                    held = vendor.vend(stack.CONSUMER, CLIENT, 60, refused=refused)
                    outcome = "token"
                elif attempt % 3 == 1:
                    outcome = "token" if vendor.flight.refresh(CLIENT, horizon=7200) else "no-refresh"
                else:
                    held = vendor.issue_with(CLIENT, stack.credentials)
                    outcome = "token"
            except (errors.Throttled, errors.TemporarilyUnavailable) as exc:
                outcome = f"{exc.http_status} retry-after {exc.retry_after:g}"
                if exc.retry_after is None or exc.retry_after < 1:
                    with lock:
                        unexpected.append(f"{exc.http_status} without a Retry-After of at least 1 s")
            except Exception as exc:  # every other kind is a failure of the contract
                outcome = type(exc).__name__
                with lock:
                    unexpected.append(f"{type(exc).__name__}: {exc}")
            with lock:
                answers.append(outcome)

    with ThreadPoolExecutor(max_workers=containers) as pool:
        list(pool.map(spend, range(containers)))

    stored = budget.used(stack.table, CLIENT, time.time())
    upstream = stack.upstream_requests()
    refused = [answer for answer in answers if answer.startswith(("429", "503"))]
    assert unexpected == []
    assert len(answers) == containers * 6
    assert upstream <= limit
    assert stored == upstream  # every request Zus saw was counted, once
    assert upstream >= limit - policy.budget_reserve  # demand far beyond it spent the ordinary part
    assert refused, "no attempt met the spent budget: nothing was contended"


def test_a_secret_version_known_to_be_current_is_read_once_per_container(stack: Stack) -> None:
    # Given a container's store that read the client's secret (AWSCURRENT) two minutes ago
    client = stack.aws.client("secretsmanager")
    reads: list[str] = []
    client.meta.events.register("before-call.secretsmanager.GetSecretValue", lambda **_: reads.append("read"))
    now = [1_000.0]
    store = SecretsManagerStore(client, max_age=60, clock=lambda: now[0])
    first = store.read(stack.secret_id, AWSCURRENT)
    assert first is not None
    now[0] += 120

    # When the pre-refresh asks again, knowing the version that minted the token it renews
    again = store.read(stack.secret_id, AWSCURRENT, current_version=first.version_id)
    # Then it is answered from the container's cache; a caller that knows no version, or another, reads
    assert (again, reads) == (first, ["read"])
    store.read(stack.secret_id, AWSCURRENT, current_version="another-version")
    assert reads == ["read", "read"]
