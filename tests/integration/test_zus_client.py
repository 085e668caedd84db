"""The Zus client against the emulator over real HTTP: every call, every error mapping (in both dialects
of Zus's auth server, Auth0's and RFC 6749's), retries."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests
from integration_support import assert_waits_as_zus_said, wait_until

from zus_emulator import EmulatorServer
from zus_emulator.config import AUTH0, OLD_THEN_NEW
from zus_m2m import deadline, errors
from zus_m2m.zus.client import ZusClient
from zus_m2m.zus.endpoints import ZusEndpoints

ADMIN_ID, ADMIN_SECRET = "local-admin", "local-admin-secret"


@pytest.fixture
def client(zus: EmulatorServer) -> ZusClient:
    endpoints = ZusEndpoints.for_environment("sandbox", api_base=zus.url, auth_base=zus.url)
    return ZusClient(endpoints, timeout=(1.0, 1.0))


@pytest.fixture
def admin_token(client: ZusClient) -> str:
    return client.request_token(ADMIN_ID, ADMIN_SECRET).access_token


def configure(zus: EmulatorServer, **settings: Any) -> None:
    requests.post(f"{zus.url}/_emulator/config", json=settings, timeout=5).raise_for_status()


def inject(zus: EmulatorServer, **fault: Any) -> None:
    requests.post(f"{zus.url}/_emulator/faults", json=fault, timeout=5).raise_for_status()


def stats(zus: EmulatorServer) -> dict[str, Any]:
    return dict(requests.get(f"{zus.url}/_emulator/stats", timeout=5).json())


def test_the_guides_flow_role_create_token_read(client: ZusClient, admin_token: str) -> None:
    role = client.find_role("Builder Admin", admin_token)
    created = client.create_app_client("billing-service", role.id, admin_token)
    token = client.request_token(created.app_client.client_id, created.client_secret)
    read = client.get_app_client(created.app_client.id, token.access_token)

    assert token.expires_in == 3600
    assert token.token_type == "Bearer"
    assert read == created.app_client
    assert read.name == "billing-service"
    assert read.role_id == role.id
    assert isinstance(read.created_at, int)


def test_role_lookup_accepts_a_one_element_array(zus: EmulatorServer, client: ZusClient, admin_token: str) -> None:
    configure(zus, rolesAsArray=True)

    assert client.find_role("Care Team User", admin_token).name == "Care Team User"


def test_an_unknown_role_lists_the_roles_that_exist(client: ZusClient, admin_token: str) -> None:
    with pytest.raises(errors.UnknownRole) as caught:
        client.find_role("Root", admin_token)

    assert caught.value.http_status == 422
    assert "Builder Admin" in str(caught.value)
    assert "Care Team User" in str(caught.value)


def test_list_follows_pages_and_delete_removes(client: ZusClient, admin_token: str) -> None:
    role = client.find_role("Builder Admin", admin_token)
    made = [client.create_app_client(f"svc-{i}", role.id, admin_token).app_client for i in range(60)]

    listed = client.list_app_clients(admin_token)
    client.delete_app_client(made[0].id, admin_token)

    assert {c.id for c in made} <= {c.id for c in listed}
    assert len(listed) == 61  # and the bootstrap admin
    with pytest.raises(errors.ZusNotFound):
        client.get_app_client(made[0].id, admin_token)
    with pytest.raises(errors.ZusNotFound) as caught:
        client.delete_app_client(made[0].id, admin_token)
    assert "delete app client" in str(caught.value)
    assert "404" in str(caught.value)


def test_rotate_secret_kills_the_old_secret_at_once(client: ZusClient, admin_token: str, dialect: str) -> None:
    role = client.find_role("Builder Admin", admin_token)
    created = client.create_app_client("rotating", role.id, admin_token)

    rotated = client.rotate_secret(created.app_client.id, admin_token)

    assert rotated.client_secret != created.client_secret
    assert client.request_token(rotated.app_client.client_id, rotated.client_secret).access_token
    with pytest.raises(errors.ZusCredentialsRefused) as caught:
        client.request_token(created.app_client.client_id, created.client_secret)
    assert caught.value.http_status == 503
    assert caught.value.reason == {"auth0": "access_denied", "rfc6749": "invalid_client"}[dialect]
    assert created.client_secret not in str(caught.value)
    assert "Unauthorized" not in str(caught.value)  # never the description


def test_with_propagation_the_old_secret_works_first(zus: EmulatorServer, client: ZusClient, admin_token: str) -> None:
    # Long enough that the two requests below fall within it on a loaded machine.
    configure(zus, secretPropagationSeconds=3, propagationMode=OLD_THEN_NEW)
    role = client.find_role("Builder Admin", admin_token)
    created = client.create_app_client("slow-rotation", role.id, admin_token)
    rotated = client.rotate_secret(created.app_client.id, admin_token)
    client_id = created.app_client.client_id

    assert client.request_token(client_id, created.client_secret).access_token
    with pytest.raises(errors.ZusCredentialsRefused):
        client.request_token(client_id, rotated.client_secret)

    # Then the new secret takes over: waited for (each try refused until then), not slept for.
    def new_secret_works() -> bool:
        try:
            return bool(client.request_token(client_id, rotated.client_secret).access_token)
        except errors.ZusCredentialsRefused:
            return False

    wait_until(new_secret_works, "the new secret to take over", timeout=30, interval=0.25)
    with pytest.raises(errors.ZusCredentialsRefused):
        client.request_token(client_id, created.client_secret)


def test_past_the_hourly_limit_zus_answers_429_with_when_to_retry(
    zus: EmulatorServer, client: ZusClient, dialect: str
) -> None:
    configure(zus, tokenLimitPerHour=3)
    for _ in range(3):
        client.request_token(ADMIN_ID, ADMIN_SECRET)

    with pytest.raises(errors.ZusRateLimited) as caught:
        client.request_token(ADMIN_ID, ADMIN_SECRET)

    # RFC 6749: Retry-After; Auth0: no Retry-After, x-ratelimit-reset in epoch seconds
    assert caught.value.http_status == 429
    assert 3500 < caught.value.retry_after <= 3600
    assert (caught.value.quota is not None) == (dialect == AUTH0)


def test_auth0s_rate_limit_headers_travel_with_the_token(zus: EmulatorServer, client: ZusClient) -> None:
    configure(zus, tokenLimitPerHour=5)

    issued = [client.request_token(ADMIN_ID, ADMIN_SECRET) for _ in range(2)]

    assert [token.quota.remaining for token in issued if token.quota] == [4, 3]
    assert all(token.quota and 3590 < token.quota.reset_at - time.time() <= 3601 for token in issued)


def test_a_reset_900_s_away_is_a_wait_of_900_s_not_a_default(zus: EmulatorServer, client: ZusClient) -> None:
    inject(zus, status=429, retryAfter=900, paths=["/oauth/token"])

    with pytest.raises(errors.ZusRateLimited) as caught:
        client.request_token(ADMIN_ID, ADMIN_SECRET)

    assert 899 <= caught.value.retry_after <= 901


def test_auth0s_global_limit_is_throttling_not_a_server_fault_nor_refused_credentials(
    zus: EmulatorServer, client: ZusClient
) -> None:
    inject(zus, globalLimit=True, retryAfter=20, paths=["/oauth/token"])

    with pytest.raises(errors.ZusRateLimited) as caught:
        client.request_token(ADMIN_ID, ADMIN_SECRET)

    assert caught.value.status == 500
    assert caught.value.reason == "access_denied (global limit)"
    assert 19 <= caught.value.retry_after <= 21
    assert "Global limit has been reached" not in str(caught.value)  # never the description


def test_any_other_500_on_the_token_endpoint_is_unavailable(zus: EmulatorServer, client: ZusClient) -> None:
    inject(zus, status=500, paths=["/oauth/token"])

    with pytest.raises(errors.ZusUnavailable) as caught:
        client.request_token(ADMIN_ID, ADMIN_SECRET)

    assert caught.value.retry_after == 5.0  # not x-ratelimit-reset: that is for throttling


def test_a_care_team_user_is_forbidden_admin_calls(client: ZusClient, admin_token: str) -> None:
    role = client.find_role("Care Team User", admin_token)
    care = client.create_app_client("care", role.id, admin_token)
    care_token = client.request_token(care.app_client.client_id, care.client_secret).access_token

    with pytest.raises(errors.ZusForbidden) as caught:
        client.find_role("Builder Admin", care_token)

    assert "403" in str(caught.value)
    assert client.get_app_client(care.app_client.id, care_token).name == "care"


def test_a_bad_bearer_is_unauthorized(client: ZusClient) -> None:
    with pytest.raises(errors.ZusUnauthorized):
        client.list_app_clients("not-a-token")


def test_a_wrong_audience_is_forbidden(zus: EmulatorServer, dialect: str) -> None:
    endpoints = ZusEndpoints(api_base=zus.url, auth_base=zus.url, audience="https://api.zusapi.com")
    with pytest.raises(errors.ZusForbidden) as caught:
        ZusClient(endpoints).request_token(ADMIN_ID, ADMIN_SECRET)
    assert "access_denied" in str(caught.value)


def test_5xx_on_a_read_is_retried_then_surfaces_as_unavailable(
    zus: EmulatorServer, client: ZusClient, admin_token: str
) -> None:
    inject(zus, status=503, rate=1.0, paths=["/auth/app-clients"])

    started = time.monotonic()
    with pytest.raises(errors.ZusUnavailable) as caught:
        client.list_app_clients(admin_token)

    assert caught.value.status == 503
    assert time.monotonic() - started >= 0.2  # backed off between attempts


def test_a_slow_read_times_out_and_surfaces_as_unavailable(
    zus: EmulatorServer, client: ZusClient, admin_token: str
) -> None:
    inject(zus, latencyMs=1500, paths=["/auth/app-clients"])

    with pytest.raises(errors.ZusUnavailable) as caught:
        client.list_app_clients(admin_token)

    assert "timed out" in str(caught.value)


def test_a_dropped_connection_surfaces_as_unavailable(zus: EmulatorServer, client: ZusClient, admin_token: str) -> None:
    inject(zus, drop=True, rate=1.0, paths=["/auth/roles"])

    with pytest.raises(errors.ZusUnavailable) as caught:
        client.find_role("Builder Admin", admin_token)

    assert "connection failed" in str(caught.value)


def test_a_create_that_times_out_is_never_retried(zus: EmulatorServer, client: ZusClient, admin_token: str) -> None:
    # Given Zus answers a create only after the client's read timeout
    role = client.find_role("Builder Admin", admin_token)
    inject(zus, latencyMs=1500, paths=["/auth/app-clients"])

    with pytest.raises(errors.ZusUnavailable):
        client.create_app_client("once", role.id, admin_token)

    # Then Zus received exactly one create (the emulator finishes it after the delay)
    assert stats(zus)["faultsFired"] == {"latency": {"/auth/app-clients": 1}}
    wait_until(lambda: stats(zus)["appClients"] == 2, "both app clients at Zus")
    inject(zus)
    assert stats(zus)["appClients"] == 2


def test_a_fault_429_carries_when_to_retry(zus: EmulatorServer, client: ZusClient, dialect: str) -> None:
    inject(zus, status=429, rate=1.0, retryAfter=7, paths=["/oauth/token"])

    sent = time.time()
    with pytest.raises(errors.ZusRateLimited) as caught:
        client.request_token(ADMIN_ID, ADMIN_SECRET)
    answered = time.time()

    assert_waits_as_zus_said(dialect, 7, sent, answered, caught.value.retry_after)


def test_transient_5xx_on_reads_are_absorbed_by_retries(
    zus: EmulatorServer, client: ZusClient, admin_token: str
) -> None:
    inject(zus, status=502, rate=0.3, paths=["/auth/app-clients"])

    outcomes = []
    for _ in range(30):
        try:
            client.list_app_clients(admin_token)
            outcomes.append("ok")
        except errors.ZusUnavailable:
            outcomes.append("unavailable")

    # One try fails 30% of the time; three tries fail 2.7% of the time.
    assert outcomes.count("ok") >= 24


def test_calls_shorten_their_timeouts_to_the_invocations_deadline(zus: EmulatorServer, admin_token: str) -> None:
    # Given a Zus that answers reads after 5 s, and a client that would wait 10 s per attempt
    endpoints = ZusEndpoints.for_environment("sandbox", api_base=zus.url, auth_base=zus.url)
    client = ZusClient(endpoints, timeout=(3.0, 10.0))
    inject(zus, latencyMs=5000, paths=["/auth/app-clients"])

    # When the invocation has 4 s left
    with deadline.within(4.0), pytest.raises(errors.ZusUnavailable) as caught:
        client.list_app_clients(admin_token)

    # Then each attempt waited only for its share of what was left: a 10 s read timeout would have met
    # the answer at 5 s; instead all three attempts (the call and its two retries) reached Zus and timed
    # out (counted by the emulator, not timed here)
    assert "timed out" in str(caught.value)
    assert stats(zus)["faultsFired"] == {"latency": {"/auth/app-clients": 3}}


def test_a_call_that_cannot_fit_in_the_time_left_is_not_started(zus: EmulatorServer, client: ZusClient) -> None:
    before = stats(zus)["tokenRequests"].get(ADMIN_ID, 0)

    with deadline.within(1.2), pytest.raises(errors.ZusUnavailable) as caught:
        client.request_token(ADMIN_ID, ADMIN_SECRET)

    assert "too little time" in str(caught.value)
    assert caught.value.http_status == 503
    assert stats(zus)["tokenRequests"].get(ADMIN_ID, 0) == before
