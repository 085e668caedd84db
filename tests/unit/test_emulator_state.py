"""The Zus emulator's rules (zus_emulator.state and its parts) with a fake clock: no sockets."""

from __future__ import annotations

import random

import jwt
import pytest
from fakes import FakeClock

from zus_emulator.config import AUTH0, DIALECTS, OLD_THEN_NEW, RFC6749, EmulatorConfig, SettingsError, parse_fault
from zus_emulator.resources import BUILDER_ADMIN_ROLE_ID, CARE_TEAM_USER_ROLE_ID, PERMISSIONLESS_ROLE_ID
from zus_emulator.state import EmulatorState
from zus_emulator.tokens import SECRET_GENERATION_CLAIM, BearerError, OAuthError, TokenRequest

AUDIENCE = "https://api.sandbox.zusapi.com"
# What each dialect calls a wrong secret or an unknown client.
REFUSED = {AUTH0: "access_denied", RFC6749: "invalid_client"}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_700_000_000.0)


@pytest.fixture(params=DIALECTS)
def dialect(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def state(clock: FakeClock, dialect: str) -> EmulatorState:
    return EmulatorState(EmulatorConfig(clock=clock, token_limit_per_hour=3, dialect=dialect))


def request(client_id: str = "local-admin", secret: str = "local-admin-secret", **overrides: str) -> TokenRequest:
    fields = {
        "grant_type": "client_credentials",
        "client_id": client_id,
        "client_secret": secret,
        "audience": AUDIENCE,
        **overrides,
    }
    return TokenRequest(**fields)


def oauth_error(state: EmulatorState, req: TokenRequest) -> OAuthError:
    with pytest.raises(OAuthError) as caught:
        state.issue_token(req)
    return caught.value


def refused(state: EmulatorState, req: TokenRequest) -> bool:
    """Whether the token endpoint refuses the credentials, in its dialect's words."""
    error = oauth_error(state, req)
    return (error.status, error.code) == (401, REFUSED[state.settings.dialect])


def wait(state: EmulatorState, error: OAuthError, client_id: str = "local-admin") -> int:
    """The seconds a 429 asks the client to wait: Retry-After (RFC 6749), or x-ratelimit-reset (Auth0)."""
    if state.settings.dialect == RFC6749:
        assert error.retry_after is not None
        return error.retry_after
    assert error.retry_after is None  # Auth0 sends no Retry-After
    return int(state.rate_limit_headers(client_id)["x-ratelimit-reset"]) - int(state.now())


def test_starts_with_three_roles_and_the_admin(state: EmulatorState) -> None:
    assert [r.name for r in state.roles()] == ["Builder Admin", "Care Team User", "Permissionless"]
    assert [r.id for r in state.roles("Care Team User")] == [CARE_TEAM_USER_ROLE_ID]
    assert [r.id for r in state.roles("Permissionless")] == [PERMISSIONLESS_ROLE_ID]
    assert state.roles("nobody") == []
    [admin] = state.list_app_clients()
    assert admin.client_id == "local-admin"
    assert admin.role_id == BUILDER_ADMIN_ROLE_ID
    assert admin.is_admin


def test_token_claims_follow_the_clock(state: EmulatorState, clock: FakeClock) -> None:
    issued = state.issue_token(request())
    assert issued["expires_in"] == 3600
    assert issued["token_type"] == "Bearer"
    claims = jwt.decode(issued["access_token"], options={"verify_signature": False})
    assert claims["iat"] == int(clock.now)
    assert claims["exp"] == int(clock.now) + 3600
    assert claims["sub"] == "local-admin@clients"
    assert claims["aud"] == AUDIENCE
    assert state.authenticate(issued["access_token"]).client_id == "local-admin"
    clock.sleep(3599)
    assert state.authenticate(issued["access_token"]).client_id == "local-admin"
    clock.sleep(1)
    with pytest.raises(BearerError, match="expired"):
        state.authenticate(issued["access_token"])


def test_the_sliding_hour(state: EmulatorState, clock: FakeClock) -> None:
    for _ in range(3):
        state.issue_token(request())
        clock.sleep(10)
    # t = 30: three requests at 0, 10, 20 fill the window
    error = oauth_error(state, request())
    assert (error.status, error.code, wait(state, error)) == (429, "too_many_requests", 3570)
    clock.sleep(3569.5)  # t = 3599.5: the request at 0 still counts
    error = oauth_error(state, request())
    assert wait(state, error) == 1  # never less than 1
    clock.sleep(0.5)  # t = 3600: the request at 0 has left the window
    state.issue_token(request())
    assert wait(state, oauth_error(state, request())) == 10
    assert state.stats()["tokenRequests"] == {"local-admin": 3}
    assert state.stats()["rateLimited"] == 3
    clock.sleep(7200)
    assert state.stats()["tokenRequests"] == {}


def test_failed_secrets_count_429s_and_unknown_clients_do_not(state: EmulatorState) -> None:
    assert refused(state, request("nobody"))
    assert state.token_requests("nobody") == 0
    assert refused(state, request(secret="wrong"))
    assert oauth_error(state, request(audience="https://elsewhere")).code == "access_denied"
    assert state.token_requests("local-admin") == 2
    state.issue_token(request())
    assert oauth_error(state, request()).status == 429
    assert oauth_error(state, request(secret="wrong")).status == 429
    assert state.token_requests("local-admin") == 3
    assert state.stats()["tokensIssued"] == 1


def test_request_validation_order(state: EmulatorState) -> None:
    assert oauth_error(state, request(grant_type="")).code == "invalid_request"
    assert oauth_error(state, request(audience="")).code == "invalid_request"
    not_allowed = oauth_error(state, request(grant_type="password"))
    expected = {AUTH0: (403, "unauthorized_client"), RFC6749: (400, "unsupported_grant_type")}
    assert (not_allowed.status, not_allowed.code) == expected[state.settings.dialect]
    assert state.token_requests("local-admin") == 0


def test_auth0_words_every_refusal_as_auth0_does(clock: FakeClock) -> None:
    state = EmulatorState(EmulatorConfig(clock=clock, token_limit_per_hour=2))
    assert state.settings.dialect == AUTH0  # the default
    wrong = oauth_error(state, request(secret="wrong"))
    assert (wrong.status, wrong.code, wrong.description) == (401, "access_denied", "Unauthorized")
    unknown = oauth_error(state, request("nobody"))
    assert (unknown.status, unknown.code, unknown.description) == (401, "access_denied", "Unauthorized")
    audience = oauth_error(state, request(audience="https://elsewhere"))
    assert (audience.status, audience.code) == (403, "access_denied")
    limited = oauth_error(state, request())
    assert (limited.status, limited.code, limited.retry_after) == (429, "too_many_requests", None)
    assert state.rate_limit_headers("local-admin") == {
        "x-ratelimit-limit": "2",
        "x-ratelimit-remaining": "0",
        "x-ratelimit-reset": str(int(clock.now) + 3600),
    }
    assert state.rate_limit_headers("nobody")["x-ratelimit-remaining"] == "2"


def test_rfc6749_sends_no_rate_limit_headers(clock: FakeClock) -> None:
    state = EmulatorState(EmulatorConfig(clock=clock, dialect=RFC6749))
    state.issue_token(request())
    assert state.rate_limit_headers("local-admin") == {}


def test_rotation_without_propagation_swaps_at_once(state: EmulatorState) -> None:
    client, old = state.create_app_client("svc", BUILDER_ADMIN_ROLE_ID)
    rotated = state.rotate_secret(client.id)
    assert rotated is not None
    new = rotated[1]
    assert new != old
    assert refused(state, request(client.client_id, old))
    state.issue_token(request(client.client_id, new))
    assert state.rotate_secret("unknown") is None


def test_the_propagation_window_old_then_new(state: EmulatorState, clock: FakeClock) -> None:
    state.update_settings({"secretPropagationSeconds": 30, "tokenLimitPerHour": 100, "propagationMode": OLD_THEN_NEW})
    client, old = state.create_app_client("svc", BUILDER_ADMIN_ROLE_ID)
    rotated = state.rotate_secret(client.id)
    assert rotated is not None
    new = rotated[1]
    clock.sleep(29.9)
    state.issue_token(request(client.client_id, old))
    assert refused(state, request(client.client_id, new))
    clock.sleep(0.1)
    state.issue_token(request(client.client_id, new))
    assert refused(state, request(client.client_id, old))


def test_the_random_propagation_window_accepts_either_secret_by_chance(clock: FakeClock) -> None:
    state = EmulatorState(EmulatorConfig(clock=clock, token_limit_per_hour=1000), rng=random.Random(11))
    state.update_settings({"secretPropagationSeconds": 30})
    assert state.settings.propagation_mode == "random"  # the default
    client, old = state.create_app_client("svc", BUILDER_ADMIN_ROLE_ID)
    rotated = state.rotate_secret(client.id)
    assert rotated is not None
    new = rotated[1]

    secrets = {"old": old, "new": new}  # named, so that a failing assertion never shows a secret

    def accepted(which: str, times: int) -> int:
        refusals: list[tuple[int, str]] = []
        for _ in range(times):
            try:
                state.issue_token(request(client.client_id, secrets[which]))
            except OAuthError as exc:
                refusals.append((exc.status, exc.code))
        assert set(refusals) <= {(401, "access_denied")}
        return times - len(refusals)

    # Within the window the same secret is accepted by one request and refused by the next.
    assert 60 <= accepted("old", 200) <= 140
    assert 60 <= accepted("new", 200) <= 140
    clock.sleep(30)
    assert accepted("new", 20) == 20
    assert accepted("old", 20) == 0


def test_a_second_rotation_during_propagation_replaces_the_pending_secret(
    state: EmulatorState, clock: FakeClock
) -> None:
    state.update_settings({"secretPropagationSeconds": 30, "tokenLimitPerHour": 100, "propagationMode": OLD_THEN_NEW})
    client, first = state.create_app_client("svc", BUILDER_ADMIN_ROLE_ID)
    second = state.rotate_secret(client.id)
    assert second is not None
    clock.sleep(20)
    third = state.rotate_secret(client.id)
    assert third is not None
    clock.sleep(20)  # 40 s after the first rotation, 20 s after the second
    state.issue_token(request(client.client_id, first))
    assert refused(state, request(client.client_id, third[1]))
    clock.sleep(10)
    state.issue_token(request(client.client_id, third[1]))
    assert refused(state, request(client.client_id, first))
    assert refused(state, request(client.client_id, second[1]))


def test_a_token_names_the_secret_that_minted_it(state: EmulatorState, clock: FakeClock) -> None:
    """1 for the secret made at creation, +1 per rotation, through a propagation window too."""
    state.update_settings({"secretPropagationSeconds": 30, "tokenLimitPerHour": 100, "propagationMode": OLD_THEN_NEW})
    client, first = state.create_app_client("svc", BUILDER_ADMIN_ROLE_ID)

    def generation(secret: str) -> int:
        token = state.issue_token(request(client.client_id, secret))["access_token"]
        return int(jwt.decode(token, options={"verify_signature": False})[SECRET_GENERATION_CLAIM])

    assert generation(first) == 1
    rotated = state.rotate_secret(client.id)
    assert rotated is not None
    assert generation(first) == 1  # the old secret, still current during the window
    clock.sleep(30)
    assert generation(rotated[1]) == 2
    state.update_settings({"secretPropagationSeconds": 0})
    again = state.rotate_secret(client.id)
    assert again is not None
    assert generation(again[1]) == 3


def test_deleted_clients_lose_credentials_tokens_and_counters(state: EmulatorState) -> None:
    client, secret = state.create_app_client("svc", CARE_TEAM_USER_ROLE_ID)
    access_token = state.issue_token(request(client.client_id, secret))["access_token"]
    assert not state.authenticate(access_token).is_admin
    assert state.delete_app_client(client.id)
    assert not state.delete_app_client(client.id)
    with pytest.raises(BearerError):
        state.authenticate(access_token)
    assert refused(state, request(client.client_id, secret))
    assert client.client_id not in state.stats()["tokenRequests"]


def test_list_order_and_duplicates(state: EmulatorState, clock: FakeClock) -> None:
    clock.sleep(1)
    a, _ = state.create_app_client("same", BUILDER_ADMIN_ROLE_ID)
    b, _ = state.create_app_client("same", BUILDER_ADMIN_ROLE_ID)
    clock.sleep(1)
    c, _ = state.create_app_client("later", BUILDER_ADMIN_ROLE_ID)
    listed = state.list_app_clients()
    assert listed[0].client_id == "local-admin"
    assert listed[1:3] == sorted([a, b], key=lambda x: x.id)
    assert listed[3] is c
    with pytest.raises(KeyError):
        state.create_app_client("bad", "no-such-role")


def test_reset_restores_the_start(state: EmulatorState) -> None:
    admin_id = state.admin_app_client_id
    state.rotate_secret(admin_id)
    state.create_app_client("svc", BUILDER_ADMIN_ROLE_ID)
    started_with = state.settings.dialect
    state.update_settings({"tokenLimitPerHour": 1, "dialect": next(d for d in DIALECTS if d != started_with)})
    state.faults.set({"status": 500})
    state.reset()
    assert [c.id for c in state.list_app_clients()] == [admin_id]
    assert state.settings.token_limit_per_hour == 3
    assert state.settings.dialect == started_with
    assert state.faults.current is None
    state.issue_token(request())
    assert state.stats() == {
        "tokenRequests": {"local-admin": 1},
        "tokensIssued": 1,
        "appClients": 1,
        "rateLimited": 0,
        "faultsFired": {},
    }


@pytest.mark.parametrize(
    "patch",
    [
        {"tokenLifetimeSeconds": 1.5},
        {"tokenLimitPerHour": 0},
        {"secretPropagationSeconds": "1"},
        {"secretPropagationSeconds": float("nan")},
        {"rolesAsArray": "true"},
        {"dialect": "oauth1"},
        {"propagationMode": "never"},
        {"other": True},
        "tokenLimitPerHour",
    ],
)
def test_settings_validation(state: EmulatorState, patch: object) -> None:
    before = state.settings
    with pytest.raises(SettingsError):
        state.update_settings(patch)
    assert state.settings == before


def test_fault_sampling_and_matching(clock: FakeClock) -> None:
    state = EmulatorState(EmulatorConfig(clock=clock), rng=random.Random(7))
    state.faults.set({"status": 500, "rate": 0.25, "paths": ["/oauth/token"]})
    hits = sum(state.faults.pick("/oauth/token") is not None for _ in range(4000))
    assert 800 <= hits <= 1200
    assert state.faults.pick("/auth/roles") is None
    # Every hit is counted by what it does and where; misses, and paths the fault spares, are not.
    assert state.stats()["faultsFired"] == {"500": {"/oauth/token": hits}}
    state.faults.set({"latencyMs": 5, "drop": True, "paths": ["/auth/"]})
    state.faults.pick("/auth/roles")
    state.faults.pick("/auth/roles")
    fired = state.stats()["faultsFired"]
    assert fired["latency"] == fired["drop"] == {"/auth/roles": 2}
    state.faults.set({"globalLimit": True})
    state.faults.pick("/oauth/token")
    assert state.stats()["faultsFired"]["globalLimit"] == {"/oauth/token": 1}
    state.reset()
    assert state.stats()["faultsFired"] == {}
    state.faults.set({"latencyMs": 5})
    assert state.faults.pick("/auth/roles") is not None
    assert state.faults.pick("/_emulator/stats") is None
    assert state.faults.set({}) is None
    assert parse_fault({"drop": True}) is not None
    assert parse_fault({"globalLimit": True}) is not None
    for combined in ({"globalLimit": True, "status": 500}, {"globalLimit": True, "drop": True}):
        with pytest.raises(SettingsError, match="cannot be combined"):
            parse_fault(combined)
