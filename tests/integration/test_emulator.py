"""The Zus emulator over real HTTP: the guide's shapes, errors, limits, rotation, faults and control routes."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session  # type: ignore[import-untyped]
from integration_support import wait_until

from zus_emulator import BUILDER_ADMIN_ROLE_ID, CARE_TEAM_USER_ROLE_ID, EmulatorConfig, EmulatorServer
from zus_emulator.config import AUTH0, DIALECTS, OLD_THEN_NEW, RFC6749

AUDIENCE = "https://api.sandbox.zusapi.com"
ADMIN_ID = "local-admin"
ADMIN_SECRET = "local-admin-secret"
JSON_API = "application/vnd.api+json"
TIMEOUT = 10


# --- helpers --------------------------------------------------------------------------------------


def token_response(zus: EmulatorServer, client_id: str, secret: str, audience: str = AUDIENCE) -> requests.Response:
    body = {"client_id": client_id, "client_secret": secret, "audience": audience, "grant_type": "client_credentials"}
    return requests.post(f"{zus.url}/oauth/token", json=body, timeout=TIMEOUT)


def token(zus: EmulatorServer, client_id: str = ADMIN_ID, secret: str = ADMIN_SECRET) -> str:
    response = token_response(zus, client_id, secret)
    assert response.status_code == 200, response.text
    access_token: str = response.json()["access_token"]
    return access_token


def bearer(access_token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {access_token}", "Accept": JSON_API}


def create_body(name: str, role_id: str = BUILDER_ADMIN_ROLE_ID) -> dict[str, Any]:
    return {
        "data": {
            "type": "auth/app-clients",
            "attributes": {"type": "machine_to_machine", "name": name, "userType": "builder"},
            "relationships": {"auth/roles": {"data": {"type": "auth/roles", "id": role_id}}},
        }
    }


def create(zus: EmulatorServer, admin_token: str, name: str, role_id: str = BUILDER_ADMIN_ROLE_ID) -> dict[str, Any]:
    response = requests.post(
        f"{zus.url}/auth/app-clients",
        data=json.dumps(create_body(name, role_id)),
        headers={**bearer(admin_token), "Content-Type": JSON_API},
        timeout=TIMEOUT,
    )
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def set_config(zus: EmulatorServer, **settings: Any) -> None:
    response = requests.post(f"{zus.url}/_emulator/config", json=settings, timeout=TIMEOUT)
    assert response.status_code == 200, response.text


def set_faults(zus: EmulatorServer, **fault: Any) -> None:
    response = requests.post(f"{zus.url}/_emulator/faults", json=fault, timeout=TIMEOUT)
    assert response.status_code == 200, response.text


def stats(zus: EmulatorServer) -> dict[str, Any]:
    response = requests.get(f"{zus.url}/_emulator/stats", timeout=TIMEOUT)
    assert response.status_code == 200
    result: dict[str, Any] = response.json()
    return result


def assert_jsonapi_error(response: requests.Response, status: int, pointer: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == JSON_API
    errors = response.json()["errors"]
    assert errors
    assert errors[0]["status"] == str(status)
    assert errors[0]["title"]
    assert errors[0]["detail"]
    if pointer is not None:
        assert pointer in [e.get("source", {}).get("pointer") for e in errors], errors
    first: dict[str, Any] = errors[0]
    return first


def assert_oauth_error(response: requests.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert body["error"] == code
    assert isinstance(body["error_description"], str)
    assert set(body) == {"error", "error_description"}


def assert_refused(response: requests.Response, dialect: str = AUTH0) -> None:
    """The token endpoint refused the client's credentials, in the dialect's words."""
    if dialect == AUTH0:
        assert_oauth_error(response, 401, "access_denied")
        assert response.json()["error_description"] == "Unauthorized"
    else:
        assert_oauth_error(response, 401, "invalid_client")


def wait_asked(response: requests.Response, dialect: str) -> int:
    """The seconds a 429 asks for: Retry-After in RFC 6749's dialect, x-ratelimit-reset in Auth0's."""
    if dialect == AUTH0:
        assert "Retry-After" not in response.headers
        return int(response.headers["x-ratelimit-reset"]) - int(time.time())
    return int(response.headers["Retry-After"])


# --- the guide's flow -----------------------------------------------------------------------------


def test_the_guides_flow_with_its_exact_bodies(zus: EmulatorServer) -> None:
    admin = token(zus)
    # Step 1: role lookup, `data` is one object.
    response = requests.get(f"{zus.url}/auth/roles?filter[name]=Builder Admin", headers=bearer(admin), timeout=TIMEOUT)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == JSON_API
    role = response.json()["data"]
    assert role["type"] == "auth/roles"
    assert role["id"] == BUILDER_ADMIN_ROLE_ID
    assert set(role["attributes"]) == {"createdAt", "description", "isManaged", "name", "permissions", "updatedAt"}
    assert role["attributes"]["name"] == "Builder Admin"
    assert role["attributes"]["isManaged"] is True
    assert isinstance(role["attributes"]["createdAt"], int)
    assert role["attributes"]["permissions"]

    # Step 2: the guide's body, word for word.
    step2 = (
        '{\n"data": {\n"type": "auth/app-clients",\n"attributes": {\n"type": "machine_to_machine",\n'
        '"name": "billing-service",\n"userType": "builder"\n},\n"relationships": {\n"auth/roles": {\n'
        '"data": {\n"type": "auth/roles",\n"id": "' + role["id"] + '"\n}\n}\n}\n}\n}'
    )
    response = requests.post(
        f"{zus.url}/auth/app-clients",
        data=step2,
        headers={**bearer(admin), "Content-Type": JSON_API},
        timeout=TIMEOUT,
    )
    assert response.status_code == 201, response.text
    assert response.headers["Content-Type"] == JSON_API
    created = response.json()["data"]
    assert created["type"] == "auth/app-clients"
    attributes = created["attributes"]
    assert set(attributes) == {"clientId", "clientSecret", "createdAt", "name", "type", "updatedAt", "userType"}
    assert attributes["name"] == "billing-service"
    assert attributes["type"] == "machine_to_machine"
    assert attributes["userType"] == "builder"
    assert len(attributes["clientId"]) >= 24
    assert len(attributes["clientSecret"]) >= 48
    assert created["relationships"] == {"auth/roles": {"data": {"type": "auth/roles", "id": role["id"]}}}

    # Step 3: the guide's curl body, byte for byte.
    curl_body = (
        '{"client_id":"' + attributes["clientId"] + '","client_secret":"' + attributes["clientSecret"] + '",'
        '"audience":"https://api.sandbox.zusapi.com","grant_type":"client_credentials"}'
    )
    response = requests.post(
        f"{zus.url}/oauth/token", data=curl_body, headers={"content-type": "application/json"}, timeout=TIMEOUT
    )
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    issued = response.json()
    assert set(issued) == {"access_token", "expires_in", "token_type"}
    assert issued["expires_in"] == 3600
    assert issued["token_type"] == "Bearer"
    claims = jwt.decode(issued["access_token"], options={"verify_signature": False})
    assert claims["sub"] == f"{attributes['clientId']}@clients"
    assert claims["aud"] == AUDIENCE
    assert claims["exp"] - claims["iat"] == 3600
    assert claims["gty"] == "client-credentials"
    assert claims["jti"]

    # Step 4: read the client with its own token; no secret in the answer.
    response = requests.get(
        f"{zus.url}/auth/app-clients/{created['id']}", headers=bearer(issued["access_token"]), timeout=TIMEOUT
    )
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == JSON_API
    read = response.json()["data"]
    expected = {k: v for k, v in attributes.items() if k != "clientSecret"}
    assert read == {
        "type": "auth/app-clients",
        "id": created["id"],
        "attributes": expected,
        "relationships": created["relationships"],
    }
    assert attributes["clientSecret"] not in response.text


def test_roles_lookup_variants(zus: EmulatorServer) -> None:
    admin = bearer(token(zus))
    response = requests.get(
        f"{zus.url}/auth/roles", params={"filter[name]": "Care Team User"}, headers=admin, timeout=TIMEOUT
    )
    assert response.json()["data"]["id"] == CARE_TEAM_USER_ROLE_ID
    response = requests.get(f"{zus.url}/auth/roles", params={"filter[name]": "Nobody"}, headers=admin, timeout=TIMEOUT)
    assert response.status_code == 200
    assert response.json() == {"data": []}
    response = requests.get(f"{zus.url}/auth/roles", headers=admin, timeout=TIMEOUT)
    names = sorted(r["attributes"]["name"] for r in response.json()["data"])
    assert names == ["Builder Admin", "Care Team User", "Permissionless"]
    set_config(zus, rolesAsArray=True)
    response = requests.get(
        f"{zus.url}/auth/roles", params={"filter[name]": "Builder Admin"}, headers=admin, timeout=TIMEOUT
    )
    data = response.json()["data"]
    assert isinstance(data, list)
    assert [r["id"] for r in data] == [BUILDER_ADMIN_ROLE_ID]


def test_role_ids_are_deterministic(emulator: EmulatorServer) -> None:
    with EmulatorServer(config=EmulatorConfig(quiet=True)) as other:
        admin = bearer(token(other))
        response = requests.get(
            f"{other.url}/auth/roles", params={"filter[name]": "Builder Admin"}, headers=admin, timeout=TIMEOUT
        )
        assert response.json()["data"]["id"] == BUILDER_ADMIN_ROLE_ID
        assert other.url != emulator.url


def test_the_admin_client_is_listed_and_duplicate_names_are_allowed(zus: EmulatorServer) -> None:
    admin = token(zus)
    first = create(zus, admin, "twin")
    second = create(zus, admin, "twin")
    assert first["id"] != second["id"]
    assert first["attributes"]["clientId"] != second["attributes"]["clientId"]
    response = requests.get(f"{zus.url}/auth/app-clients", headers=bearer(admin), timeout=TIMEOUT)
    assert response.status_code == 200
    body = response.json()
    assert body["links"] == {"next": None}
    names = [c["attributes"]["name"] for c in body["data"]]
    assert sorted(names) == ["local-admin", "twin", "twin"]
    admin_doc = next(c for c in body["data"] if c["attributes"]["clientId"] == ADMIN_ID)
    assert admin_doc["relationships"]["auth/roles"]["data"]["id"] == BUILDER_ADMIN_ROLE_ID
    assert all("clientSecret" not in c["attributes"] for c in body["data"])


def test_list_pagination(zus: EmulatorServer) -> None:
    admin = token(zus)
    for i in range(6):
        create(zus, admin, f"client-{i}")
    seen: list[str] = []
    url: str | None = f"{zus.url}/auth/app-clients?page[size]=3"
    pages = 0
    while url:
        response = requests.get(url, headers=bearer(admin), timeout=TIMEOUT)
        assert response.status_code == 200, response.text
        body = response.json()
        assert len(body["data"]) <= 3
        seen += [c["id"] for c in body["data"]]
        url = body["links"]["next"]
        if url is not None:
            assert url.startswith(zus.url + "/auth/app-clients?")
            assert "page[size]=3" in url
        pages += 1
    assert pages == 3
    assert len(seen) == len(set(seen)) == 7
    everything = requests.get(f"{zus.url}/auth/app-clients", headers=bearer(admin), timeout=TIMEOUT).json()
    assert [c["id"] for c in everything["data"]] == seen
    ordering = [(c["attributes"]["createdAt"], c["id"]) for c in everything["data"]]
    assert ordering == sorted(ordering)
    response = requests.get(
        f"{zus.url}/auth/app-clients",
        params={"page[size]": "3", "page[number]": "9"},
        headers=bearer(admin),
        timeout=TIMEOUT,
    )
    assert response.json() == {"data": [], "links": {"next": None}}
    response = requests.get(
        f"{zus.url}/auth/app-clients", params={"page[size]": "0"}, headers=bearer(admin), timeout=TIMEOUT
    )
    assert_jsonapi_error(response, 400)


def test_delete_revokes_credentials_and_tokens(zus: EmulatorServer) -> None:
    admin = token(zus)
    client = create(zus, admin, "short-lived")
    cid, secret = client["attributes"]["clientId"], client["attributes"]["clientSecret"]
    own = token(zus, cid, secret)
    response = requests.delete(f"{zus.url}/auth/app-clients/{client['id']}", headers=bearer(admin), timeout=TIMEOUT)
    assert response.status_code == 204
    assert response.content == b""
    assert_refused(token_response(zus, cid, secret))
    response = requests.get(f"{zus.url}/auth/app-clients", headers=bearer(own), timeout=TIMEOUT)
    assert_jsonapi_error(response, 401)
    response = requests.get(f"{zus.url}/auth/app-clients/{client['id']}", headers=bearer(admin), timeout=TIMEOUT)
    assert_jsonapi_error(response, 404)
    response = requests.delete(f"{zus.url}/auth/app-clients/{client['id']}", headers=bearer(admin), timeout=TIMEOUT)
    assert_jsonapi_error(response, 404)
    assert stats(zus)["appClients"] == 1


# --- bearer checks --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer", "Basic bG9jYWwtYWRtaW46eA==", "Bearer not-a-jwt", "Bearer a b"],
)
def test_missing_or_malformed_bearer_is_401(zus: EmulatorServer, authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    response = requests.get(f"{zus.url}/auth/app-clients", headers=headers, timeout=TIMEOUT)
    assert_jsonapi_error(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_forged_or_tampered_tokens_are_401(zus: EmulatorServer) -> None:
    good = token(zus)
    claims = jwt.decode(good, options={"verify_signature": False})
    forged = jwt.encode(claims, "x" * 32, algorithm="HS256")
    response = requests.get(f"{zus.url}/auth/app-clients", headers=bearer(forged), timeout=TIMEOUT)
    assert_jsonapi_error(response, 401)
    tampered = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    response = requests.get(f"{zus.url}/auth/app-clients", headers=bearer(tampered), timeout=TIMEOUT)
    assert_jsonapi_error(response, 401)
    unsigned = jwt.encode(claims, None, algorithm="none")  # type: ignore[arg-type]  # deliberately unsigned
    response = requests.get(f"{zus.url}/auth/app-clients", headers=bearer(unsigned), timeout=TIMEOUT)
    assert_jsonapi_error(response, 401)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def test_expiry_and_the_sliding_hour_follow_the_injected_clock() -> None:
    clock = FakeClock()
    config = EmulatorConfig(quiet=True, clock=clock, token_lifetime_seconds=60, token_limit_per_hour=2)
    with EmulatorServer(config=config) as server:
        first = token(server)
        clock.now += 30
        token(server)
        clock.now += 29
        assert requests.get(f"{server.url}/auth/app-clients", headers=bearer(first), timeout=TIMEOUT).ok
        limited = token_response(server, ADMIN_ID, ADMIN_SECRET)
        assert_oauth_error(limited, 429, "too_many_requests")
        assert int(limited.headers["x-ratelimit-reset"]) == int(clock.now) - 59 + 3600
        clock.now += 1
        response = requests.get(f"{server.url}/auth/app-clients", headers=bearer(first), timeout=TIMEOUT)
        assert "expired" in assert_jsonapi_error(response, 401)["detail"]
        clock.now += 3600 - 60
        assert token_response(server, ADMIN_ID, ADMIN_SECRET).status_code == 200
        assert_oauth_error(token_response(server, ADMIN_ID, ADMIN_SECRET), 429, "too_many_requests")


def test_a_care_team_user_is_403_on_admin_routes_but_may_read(zus: EmulatorServer) -> None:
    admin = token(zus)
    care = create(zus, admin, "care", CARE_TEAM_USER_ROLE_ID)
    care_token = bearer(token(zus, care["attributes"]["clientId"], care["attributes"]["clientSecret"]))
    url = zus.url
    for method, path in [
        ("GET", "/auth/roles?filter[name]=Builder%20Admin"),
        ("POST", "/auth/app-clients"),
        ("POST", f"/auth/app-clients/{care['id']}/rotate-secret"),
        ("DELETE", f"/auth/app-clients/{care['id']}"),
    ]:
        response = requests.request(method, url + path, headers=care_token, json=create_body("x"), timeout=TIMEOUT)
        assert_jsonapi_error(response, 403)
    assert requests.get(f"{url}/auth/app-clients/{care['id']}", headers=care_token, timeout=TIMEOUT).ok
    assert requests.get(f"{url}/auth/app-clients", headers=care_token, timeout=TIMEOUT).ok
    assert stats(zus)["appClients"] == 2


def test_unknown_app_client_is_404(zus: EmulatorServer) -> None:
    admin = bearer(token(zus))
    for method, suffix in [("GET", ""), ("DELETE", ""), ("POST", "/rotate-secret")]:
        response = requests.request(
            method,
            f"{zus.url}/auth/app-clients/00000000-0000-0000-0000-000000000000{suffix}",
            headers=admin,
            timeout=10,
        )
        assert_jsonapi_error(response, 404)


# --- create validation ----------------------------------------------------------------------------


def _mutate(path: list[str], value: Any) -> dict[str, Any]:
    body = create_body("valid")
    target: Any = body
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return body


@pytest.mark.parametrize(
    ("path", "value", "pointer"),
    [
        (["data", "type"], "auth/users", "/data/type"),
        (["data", "attributes", "type"], "spa", "/data/attributes/type"),
        (["data", "attributes", "name"], "", "/data/attributes/name"),
        (["data", "attributes", "name"], KeyError, "/data/attributes/name"),
        (["data", "attributes", "userType"], "patient", "/data/attributes/userType"),
        (
            ["data", "relationships", "auth/roles", "data", "id"],
            "00000000-0000-0000-0000-000000000000",
            "/data/relationships/auth~1roles/data/id",
        ),
        (["data", "relationships"], KeyError, "/data/relationships/auth~1roles/data"),
        (["data"], [], "/data"),
    ],
)
def test_create_validation_is_422_naming_the_field(
    zus: EmulatorServer, path: list[str], value: Any, pointer: str
) -> None:
    response = requests.post(
        f"{zus.url}/auth/app-clients", json=_mutate(path, value), headers=bearer(token(zus)), timeout=TIMEOUT
    )
    assert_jsonapi_error(response, 422, pointer)
    assert stats(zus)["appClients"] == 1


def test_create_malformed_json_is_400_and_wrong_media_type_is_415(zus: EmulatorServer) -> None:
    headers = {**bearer(token(zus)), "Content-Type": JSON_API}
    response = requests.post(f"{zus.url}/auth/app-clients", data=b'{"data": ', headers=headers, timeout=TIMEOUT)
    assert_jsonapi_error(response, 400)
    headers["Content-Type"] = "text/plain"
    response = requests.post(
        f"{zus.url}/auth/app-clients", data=json.dumps(create_body("x")), headers=headers, timeout=TIMEOUT
    )
    assert_jsonapi_error(response, 415)
    # plain application/json is accepted too
    response = requests.post(
        f"{zus.url}/auth/app-clients", json=create_body("plain-json"), headers=bearer(token(zus)), timeout=TIMEOUT
    )
    assert response.status_code == 201


@pytest.mark.parametrize("method", ["QUERY", "FOO", "PROPFIND", "M-SEARCH"])
def test_any_method_is_routed_404_or_405_never_http_servers_501(zus: EmulatorServer, method: str) -> None:
    """http.server answers a method it has no do_ attribute for with 501; every local server routes it."""
    known = requests.request(method, f"{zus.url}/auth/app-clients", timeout=TIMEOUT)
    assert_jsonapi_error(known, 405)
    assert "GET" in known.headers["Allow"]
    assert_jsonapi_error(requests.request(method, f"{zus.url}/no/such/route", timeout=TIMEOUT), 404)


def test_unknown_route_is_404_and_wrong_method_is_405(zus: EmulatorServer) -> None:
    assert_jsonapi_error(requests.get(f"{zus.url}/nope", timeout=TIMEOUT), 404)
    response = requests.put(f"{zus.url}/auth/app-clients", timeout=TIMEOUT)
    assert_jsonapi_error(response, 405)
    assert response.headers["Allow"] == "GET, POST"
    assert_oauth_error(requests.get(f"{zus.url}/oauth/token", timeout=TIMEOUT), 405, "invalid_request")
    assert_jsonapi_error(requests.delete(f"{zus.url}/_emulator/stats", timeout=TIMEOUT), 405)


# --- token endpoint -------------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", DIALECTS)
def test_token_endpoint_errors(zus: EmulatorServer, dialect: str) -> None:
    set_config(zus, dialect=dialect)
    url = f"{zus.url}/oauth/token"
    ok = {"client_id": ADMIN_ID, "client_secret": ADMIN_SECRET, "audience": AUDIENCE}
    not_allowed = requests.post(url, json={**ok, "grant_type": "password"}, timeout=TIMEOUT)
    if dialect == AUTH0:
        assert_oauth_error(not_allowed, 403, "unauthorized_client")
    else:
        assert_oauth_error(not_allowed, 400, "unsupported_grant_type")
    assert_oauth_error(requests.post(url, json=ok, timeout=TIMEOUT), 400, "invalid_request")
    for field in ("client_id", "client_secret", "audience"):
        body = {**ok, "grant_type": "client_credentials"}
        del body[field]
        assert_oauth_error(requests.post(url, json=body, timeout=TIMEOUT), 400, "invalid_request")
    response = requests.post(url, data=b"{not json", headers={"Content-Type": "application/json"}, timeout=TIMEOUT)
    assert_oauth_error(response, 400, "invalid_request")
    response = token_response(zus, ADMIN_ID, "wrong-secret")
    assert_refused(response, dialect)
    assert "wrong-secret" not in response.text
    assert_refused(token_response(zus, "nobody", ADMIN_SECRET), dialect)


def test_audience_mismatch_is_403_access_denied(zus: EmulatorServer) -> None:
    response = token_response(zus, ADMIN_ID, ADMIN_SECRET, audience=zus.url)
    assert_oauth_error(response, 403, "access_denied")
    response = token_response(zus, ADMIN_ID, ADMIN_SECRET, audience="https://api.zusapi.com")
    assert_oauth_error(response, 403, "access_denied")


def test_form_body_and_basic_auth_are_accepted(zus: EmulatorServer) -> None:
    form = {"grant_type": "client_credentials", "audience": AUDIENCE}
    response = requests.post(
        f"{zus.url}/oauth/token",
        data={**form, "client_id": ADMIN_ID, "client_secret": ADMIN_SECRET},
        timeout=TIMEOUT,
    )
    assert response.status_code == 200, response.text
    basic = base64.b64encode(f"{ADMIN_ID}:{ADMIN_SECRET}".encode()).decode()
    response = requests.post(
        f"{zus.url}/oauth/token", data=form, headers={"Authorization": f"Basic {basic}"}, timeout=TIMEOUT
    )
    assert response.status_code == 200, response.text
    wrong = base64.b64encode(f"{ADMIN_ID}:nope".encode()).decode()
    response = requests.post(
        f"{zus.url}/oauth/token", data=form, headers={"Authorization": f"Basic {wrong}"}, timeout=TIMEOUT
    )
    assert_refused(response)
    assert response.headers["WWW-Authenticate"].startswith("Basic")


def test_every_token_is_unique(zus: EmulatorServer) -> None:
    tokens = {token(zus) for _ in range(5)}
    assert len(tokens) == 5


def test_authlib_oauth2_session_obtains_a_token(zus: EmulatorServer) -> None:
    session = OAuth2Session(ADMIN_ID, ADMIN_SECRET)
    issued = session.fetch_token(f"{zus.url}/oauth/token", grant_type="client_credentials", audience=AUDIENCE)
    assert issued["token_type"] == "Bearer"
    assert issued["expires_in"] == 3600
    response = requests.get(f"{zus.url}/auth/app-clients", headers=bearer(issued["access_token"]), timeout=TIMEOUT)
    assert response.status_code == 200


# --- hourly limit ---------------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", DIALECTS)
def test_the_201st_token_request_in_an_hour_is_429(zus: EmulatorServer, dialect: str) -> None:
    set_config(zus, dialect=dialect)
    with requests.Session() as session:
        body = {
            "client_id": ADMIN_ID,
            "client_secret": ADMIN_SECRET,
            "audience": AUDIENCE,
            "grant_type": "client_credentials",
        }
        statuses = [session.post(f"{zus.url}/oauth/token", json=body, timeout=TIMEOUT).status_code for _ in range(200)]
        assert statuses == [200] * 200
        response = session.post(f"{zus.url}/oauth/token", json=body, timeout=TIMEOUT)
    assert_oauth_error(response, 429, "too_many_requests")
    assert 3500 <= wait_asked(response, dialect) <= 3601
    assert stats(zus)["tokenRequests"] == {ADMIN_ID: 200}


def test_the_limit_counts_failed_secrets_but_not_429s_and_is_per_client(zus: EmulatorServer) -> None:
    admin = token(zus)
    other = create(zus, admin, "other")
    set_config(zus, tokenLimitPerHour=3)
    assert token_response(zus, ADMIN_ID, "wrong").status_code == 401
    assert token_response(zus, ADMIN_ID, ADMIN_SECRET).status_code == 200
    limited = token_response(zus, ADMIN_ID, ADMIN_SECRET)
    assert_oauth_error(limited, 429, "too_many_requests")
    assert wait_asked(limited, AUTH0) >= 1
    assert_oauth_error(token_response(zus, ADMIN_ID, "wrong"), 429, "too_many_requests")
    assert token_response(zus, other["attributes"]["clientId"], other["attributes"]["clientSecret"]).ok
    current = stats(zus)
    assert current["tokenRequests"] == {ADMIN_ID: 3, other["attributes"]["clientId"]: 1}
    assert current["rateLimited"] == 2
    assert current["tokensIssued"] == 3
    assert current["appClients"] == 2
    # an unknown client id is never counted
    assert token_response(zus, "unknown", "x").status_code == 401
    assert "unknown" not in stats(zus)["tokenRequests"]


# --- rotation -------------------------------------------------------------------------------------


def test_rotate_invalidates_the_old_secret_at_once(zus: EmulatorServer) -> None:
    admin = token(zus)
    client = create(zus, admin, "rotating")
    cid, old = client["attributes"]["clientId"], client["attributes"]["clientSecret"]
    own_token = token(zus, cid, old)
    response = requests.post(
        f"{zus.url}/auth/app-clients/{client['id']}/rotate-secret", headers=bearer(admin), timeout=TIMEOUT
    )
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == JSON_API
    rotated = response.json()["data"]
    assert rotated["id"] == client["id"]
    assert rotated["attributes"]["clientId"] == cid
    new = rotated["attributes"]["clientSecret"]
    assert new != old
    assert_refused(token_response(zus, cid, old))
    assert token_response(zus, cid, new).status_code == 200
    # tokens issued before the rotation stay valid until they expire
    assert requests.get(f"{zus.url}/auth/app-clients", headers=bearer(own_token), timeout=TIMEOUT).ok


def test_rotate_with_propagation_keeps_the_old_secret_for_a_while(zus: EmulatorServer) -> None:
    admin = token(zus)
    client = create(zus, admin, "slow-rotation")
    cid, old = client["attributes"]["clientId"], client["attributes"]["clientSecret"]
    # Long enough that the two requests below fall within it on a loaded machine.
    set_config(zus, secretPropagationSeconds=3, propagationMode=OLD_THEN_NEW)
    response = requests.post(
        f"{zus.url}/auth/app-clients/{client['id']}/rotate-secret", headers=bearer(admin), timeout=TIMEOUT
    )
    new = response.json()["data"]["attributes"]["clientSecret"]
    assert token_response(zus, cid, old).status_code == 200
    assert_refused(token_response(zus, cid, new))

    # Then the new secret takes over: waited for (each try refused until then), not slept for.
    def new_secret_works() -> bool:
        answer = token_response(zus, cid, new)
        if answer.status_code != 200:
            assert_refused(answer)
        return answer.status_code == 200

    wait_until(new_secret_works, "the new secret to take over", timeout=30, interval=0.25)
    assert_refused(token_response(zus, cid, old))


def test_rotate_with_random_propagation_answers_either_secret_by_chance(zus: EmulatorServer) -> None:
    admin = token(zus)
    client = create(zus, admin, "auth0-rotation")
    cid, old = client["attributes"]["clientId"], client["attributes"]["clientSecret"]
    set_config(zus, secretPropagationSeconds=30)
    response = requests.post(
        f"{zus.url}/auth/app-clients/{client['id']}/rotate-secret", headers=bearer(admin), timeout=TIMEOUT
    )
    new = response.json()["data"]["attributes"]["clientSecret"]
    statuses = {
        which: {token_response(zus, cid, secret).status_code for _ in range(40)}
        for which, secret in (("old", old), ("new", new))
    }
    # The same secret is accepted by one request and refused (401) by the next, whichever it is.
    assert statuses == {"old": {200, 401}, "new": {200, 401}}


def test_the_admin_can_rotate_itself_and_reset_restores_it(zus: EmulatorServer) -> None:
    response = requests.get(f"{zus.url}/auth/app-clients", headers=bearer(token(zus)), timeout=TIMEOUT)
    admin_doc = response.json()["data"][0]
    response = requests.post(
        f"{zus.url}/auth/app-clients/{admin_doc['id']}/rotate-secret", headers=bearer(token(zus)), timeout=TIMEOUT
    )
    new = response.json()["data"]["attributes"]["clientSecret"]
    assert_refused(token_response(zus, ADMIN_ID, ADMIN_SECRET))
    assert token_response(zus, ADMIN_ID, new).status_code == 200
    assert requests.post(f"{zus.url}/_emulator/reset", timeout=TIMEOUT).status_code == 204
    assert token_response(zus, ADMIN_ID, ADMIN_SECRET).status_code == 200


def test_auth0_puts_rate_limit_headers_on_every_token_answer(zus: EmulatorServer) -> None:
    set_config(zus, tokenLimitPerHour=3)
    answers = [
        token_response(zus, ADMIN_ID, ADMIN_SECRET),  # 200
        token_response(zus, ADMIN_ID, "wrong"),  # 401, counted
        token_response(zus, ADMIN_ID, ADMIN_SECRET, audience="https://api.zusapi.com"),  # 403, counted
        token_response(zus, ADMIN_ID, ADMIN_SECRET),  # 429
    ]
    assert [answer.status_code for answer in answers] == [200, 401, 403, 429]
    assert [answer.headers["x-ratelimit-remaining"] for answer in answers] == ["2", "1", "0", "0"]
    assert {answer.headers["x-ratelimit-limit"] for answer in answers} == {"3"}
    resets = {int(answer.headers["x-ratelimit-reset"]) for answer in answers}
    assert len(resets) == 1  # when the first request leaves the window
    assert 3590 <= resets.pop() - time.time() <= 3601
    assert "Retry-After" not in answers[3].headers


def test_rfc6749_sends_retry_after_and_no_rate_limit_headers(zus: EmulatorServer) -> None:
    set_config(zus, dialect=RFC6749, tokenLimitPerHour=1)
    assert token_response(zus, ADMIN_ID, ADMIN_SECRET).status_code == 200
    limited = token_response(zus, ADMIN_ID, ADMIN_SECRET)
    assert_oauth_error(limited, 429, "too_many_requests")
    assert int(limited.headers["Retry-After"]) >= 3590
    assert not [name for name in limited.headers if name.lower().startswith("x-ratelimit")]


def test_the_global_limit_fault_is_auth0s_500_access_denied(zus: EmulatorServer) -> None:
    set_faults(zus, globalLimit=True, retryAfter=20, paths=["/oauth/token"])
    response = token_response(zus, ADMIN_ID, ADMIN_SECRET)
    assert_oauth_error(response, 500, "access_denied")
    assert response.json()["error_description"] == "Global limit has been reached"
    assert 19 <= int(response.headers["x-ratelimit-reset"]) - time.time() <= 21
    assert stats(zus)["tokenRequests"] == {}


# --- faults ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", DIALECTS)
def test_fault_status_applies_to_matching_paths_only(zus: EmulatorServer, dialect: str) -> None:
    set_config(zus, dialect=dialect)
    admin = token(zus)
    set_faults(zus, status=503, paths=["/auth/app-clients"])
    response = requests.get(f"{zus.url}/auth/app-clients", headers=bearer(admin), timeout=TIMEOUT)
    assert_jsonapi_error(response, 503)
    assert token_response(zus, ADMIN_ID, ADMIN_SECRET).status_code == 200
    set_faults(zus, status=429, retryAfter=7, paths=["/oauth/token"])
    response = token_response(zus, ADMIN_ID, ADMIN_SECRET)
    assert_oauth_error(response, 429, "too_many_requests")
    assert 6 <= wait_asked(response, dialect) <= 8
    set_faults(zus, status=401, paths=["/oauth/token"])
    assert_refused(token_response(zus, ADMIN_ID, ADMIN_SECRET), dialect)
    set_faults(zus, status=500)
    assert_oauth_error(token_response(zus, ADMIN_ID, ADMIN_SECRET), 500, "server_error")
    assert_jsonapi_error(requests.get(f"{zus.url}/auth/roles", headers=bearer(admin), timeout=TIMEOUT), 500)
    # /_emulator is never faulted, and faulted requests were not processed or counted
    current = stats(zus)
    assert current["tokenRequests"] == {ADMIN_ID: 2}
    assert current["tokensIssued"] == 2
    got = requests.get(f"{zus.url}/_emulator/faults", timeout=TIMEOUT).json()
    assert got == {
        "status": 500,
        "rate": 1.0,
        "latencyMs": 0,
        "paths": [],
        "drop": False,
        "retryAfter": 1,
        "globalLimit": False,
    }
    set_faults(zus)
    assert requests.get(f"{zus.url}/_emulator/faults", timeout=TIMEOUT).json() == {}
    assert token_response(zus, ADMIN_ID, ADMIN_SECRET).status_code == 200


def test_fault_rate_is_roughly_honoured(zus: EmulatorServer) -> None:
    set_faults(zus, status=500, rate=0.3, paths=["/oauth/token"])
    with requests.Session() as session:
        body = {"client_id": ADMIN_ID, "client_secret": ADMIN_SECRET, "audience": AUDIENCE}
        body["grant_type"] = "client_credentials"
        statuses = [session.post(f"{zus.url}/oauth/token", json=body, timeout=TIMEOUT).status_code for _ in range(200)]
    failed = statuses.count(500)
    assert statuses.count(200) + failed == 200
    assert 25 <= failed <= 100, failed
    assert stats(zus)["tokenRequests"] == {ADMIN_ID: 200 - failed}
    assert stats(zus)["faultsFired"] == {"500": {"/oauth/token": failed}}


def test_fault_latency_slows_but_answers_correctly(zus: EmulatorServer) -> None:
    set_faults(zus, latencyMs=300, paths=["/oauth/token"])
    started = time.monotonic()
    response = token_response(zus, ADMIN_ID, ADMIN_SECRET)
    assert time.monotonic() - started >= 0.3  # a lower bound: the emulator slept that long
    assert response.status_code == 200
    # The fault hit the token request only (counted, not timed: /_emulator/* is never faulted).
    assert requests.get(f"{zus.url}/_emulator/stats", timeout=TIMEOUT).ok
    assert stats(zus)["faultsFired"] == {"latency": {"/oauth/token": 1}}


def test_fault_drop_closes_the_connection(zus: EmulatorServer) -> None:
    set_faults(zus, drop=True, paths=["/oauth/token"])
    with pytest.raises(requests.ConnectionError):
        token_response(zus, ADMIN_ID, ADMIN_SECRET)
    assert stats(zus)["tokenRequests"] == {}
    set_faults(zus)
    assert token_response(zus, ADMIN_ID, ADMIN_SECRET).status_code == 200


@pytest.mark.parametrize(
    "fault",
    [
        {"status": "500"},
        {"status": 200},
        {"rate": 1.5, "status": 500},
        {"latencyMs": -1},
        {"paths": "/oauth/token", "status": 500},
        {"drop": "yes"},
        {"status": 500, "drop": True},
        {"globalLimit": True, "status": 500},
        {"globalLimit": "yes"},
        {"rate": 0.5},
        {"bogus": 1},
        [],
    ],
)
def test_fault_validation(zus: EmulatorServer, fault: Any) -> None:
    response = requests.post(f"{zus.url}/_emulator/faults", json=fault, timeout=TIMEOUT)
    assert_jsonapi_error(response, 400)
    assert requests.get(f"{zus.url}/_emulator/faults", timeout=TIMEOUT).json() == {}


# --- control routes -------------------------------------------------------------------------------


def test_config_roundtrip_validation_and_reset(zus: EmulatorServer) -> None:
    defaults = {
        "tokenLifetimeSeconds": 3600,
        "tokenLimitPerHour": 200,
        "secretPropagationSeconds": 0.0,
        "rolesAsArray": False,
        "dialect": AUTH0,
        "propagationMode": "random",
    }
    assert requests.get(f"{zus.url}/_emulator/config", timeout=TIMEOUT).json() == defaults
    response = requests.post(
        f"{zus.url}/_emulator/config", json={"tokenLifetimeSeconds": 60, "tokenLimitPerHour": 5}, timeout=TIMEOUT
    )
    assert response.json() == {**defaults, "tokenLifetimeSeconds": 60, "tokenLimitPerHour": 5}
    assert token_response(zus, ADMIN_ID, ADMIN_SECRET).json()["expires_in"] == 60
    for bad in (
        {"tokenLifetimeSeconds": "60"},
        {"tokenLifetimeSeconds": 0},
        {"tokenLimitPerHour": True},
        {"secretPropagationSeconds": -1},
        {"rolesAsArray": 1},
        {"dialect": "auth1"},
        {"propagationMode": "sometimes"},
        {"unknown": 1},
        [1],
    ):
        response = requests.post(f"{zus.url}/_emulator/config", json=bad, timeout=TIMEOUT)
        assert_jsonapi_error(response, 400)
    response = requests.post(
        f"{zus.url}/_emulator/config", data=b"{", headers={"Content-Type": "application/json"}, timeout=TIMEOUT
    )
    assert_jsonapi_error(response, 400)
    assert requests.get(f"{zus.url}/_emulator/config", timeout=TIMEOUT).json()["tokenLimitPerHour"] == 5
    create(zus, token(zus), "gone-after-reset")
    set_faults(zus, status=500, paths=["/auth/roles"])
    assert requests.post(f"{zus.url}/_emulator/reset", timeout=TIMEOUT).status_code == 204
    assert requests.get(f"{zus.url}/_emulator/config", timeout=TIMEOUT).json() == defaults
    assert requests.get(f"{zus.url}/_emulator/faults", timeout=TIMEOUT).json() == {}
    assert stats(zus) == {"tokenRequests": {}, "tokensIssued": 0, "appClients": 1, "rateLimited": 0, "faultsFired": {}}


def test_stats_count_tokens_and_clients(zus: EmulatorServer) -> None:
    admin = token(zus)
    client = create(zus, admin, "counted")
    token(zus, client["attributes"]["clientId"], client["attributes"]["clientSecret"])
    token(zus, client["attributes"]["clientId"], client["attributes"]["clientSecret"])
    assert stats(zus) == {
        "tokenRequests": {ADMIN_ID: 1, client["attributes"]["clientId"]: 2},
        "tokensIssued": 3,
        "appClients": 2,
        "rateLimited": 0,
        "faultsFired": {},
    }


def test_keep_alive_and_content_length(zus: EmulatorServer) -> None:
    with socket.create_connection(("127.0.0.1", int(zus.url.rsplit(":", 1)[1])), timeout=5) as sock:
        request = b"GET /_emulator/stats HTTP/1.1\r\nHost: x\r\n\r\n"
        sock.sendall(request + request)
        received = b""
        while received.count(b"HTTP/1.1 200") < 2 or not received.endswith(b"}"):
            chunk = sock.recv(65536)
            assert chunk, received
            received += chunk
    assert received.count(b"Content-Length:") == 2


def raw_exchange(zus: EmulatorServer, request: bytes) -> tuple[bytes, bytes]:
    """Send ``request`` as is; the head and body of the answer (the request must end the connection)."""
    with socket.create_connection(("127.0.0.1", int(zus.url.rsplit(":", 1)[1])), timeout=5) as sock:
        sock.sendall(request)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    return head, body


def test_chunked_bodies_arrive_and_unreadable_bodies_are_refused(zus: EmulatorServer) -> None:
    document = b'{"rolesAsArray": true}'
    response = requests.post(f"{zus.url}/_emulator/config", data=iter([document[:5], document[5:]]), timeout=TIMEOUT)
    assert response.request.headers["Transfer-Encoding"] == "chunked"
    assert response.status_code == 200, response.text
    assert response.json()["rolesAsArray"] is True

    start = b"POST /_emulator/config HTTP/1.1\r\nHost: x\r\n"
    head, body = raw_exchange(zus, start + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n")
    assert head.startswith(b"HTTP/1.1 400")
    assert b"Connection: close" in head
    assert json.loads(body)["errors"][0]["detail"] == "Malformed chunked body"
    head, body = raw_exchange(zus, start + b"Content-Length: 2000000\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413")
    assert b"Connection: close" in head
    assert json.loads(body)["errors"][0]["detail"] == "Request bodies are limited to 1048576 bytes"
    head, body = raw_exchange(zus, b"POST /oauth/token HTTP/1.1\r\nHost: x\r\nContent-Length: many\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400")
    assert json.loads(body) == {"error": "invalid_request", "error_description": "Invalid Content-Length header"}


def test_malformed_request_line_gets_a_json_error(zus: EmulatorServer) -> None:
    with socket.create_connection(("127.0.0.1", int(zus.url.rsplit(":", 1)[1])), timeout=5) as sock:
        sock.sendall(b"NONSENSE\r\n\r\n")
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400") or head.startswith(b"HTTP/1.0 400")
    assert json.loads(body)["errors"][0]["status"] == "400"


# --- concurrency ----------------------------------------------------------------------------------


def test_200_concurrent_token_requests_for_200_clients_all_succeed(zus: EmulatorServer) -> None:
    admin = token(zus)
    with requests.Session() as session:
        headers = {**bearer(admin), "Content-Type": JSON_API}
        clients = []
        for i in range(200):
            response = session.post(
                f"{zus.url}/auth/app-clients", data=json.dumps(create_body(f"svc-{i}")), headers=headers, timeout=10
            )
            assert response.status_code == 201
            clients.append(response.json()["data"]["attributes"])

    def fetch(attributes: dict[str, str]) -> int:
        return token_response(zus, attributes["clientId"], attributes["clientSecret"]).status_code

    with ThreadPoolExecutor(max_workers=200) as pool:
        statuses = list(pool.map(fetch, clients))
    assert statuses == [200] * 200
    current = stats(zus)
    assert current["tokensIssued"] == 201
    assert current["appClients"] == 201
    assert all(current["tokenRequests"][c["clientId"]] == 1 for c in clients)


# --- lifecycle, CLI and logging -------------------------------------------------------------------


def test_an_unexpected_exception_is_a_json_500(capsys: pytest.CaptureFixture[str]) -> None:
    with EmulatorServer(config=EmulatorConfig(quiet=True)) as server:

        def boom() -> dict[str, Any]:
            raise RuntimeError("secret-ish detail")

        server.state.stats = boom  # type: ignore[method-assign]
        response = requests.get(f"{server.url}/_emulator/stats", timeout=TIMEOUT)
        assert_jsonapi_error(response, 500)
        assert "Traceback" not in response.text
        assert "secret-ish" not in response.text
        # the server keeps serving
        assert token_response(server, ADMIN_ID, ADMIN_SECRET).status_code == 200
    err = capsys.readouterr().err
    assert "internal error on GET /_emulator/stats: RuntimeError" in err
    assert "secret-ish" not in err


def test_stop_closes_the_listener_and_open_connections() -> None:
    server = EmulatorServer(config=EmulatorConfig(quiet=True)).start()
    url = server.url
    with requests.Session() as session:
        assert session.get(f"{url}/_emulator/stats", timeout=TIMEOUT).ok  # a keep-alive connection stays open
        server.stop()
        with pytest.raises(requests.ConnectionError):
            session.get(f"{url}/_emulator/stats", timeout=TIMEOUT)
    server.stop()  # idempotent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_the_cli_serves_logs_without_secrets_refuses_a_busy_port_and_stops_on_sigterm() -> None:
    port = _free_port()
    root = Path(__file__).resolve().parents[2]
    env = {
        **os.environ,
        "PYTHONPATH": str(root / "local"),
        "ZUS_EMULATOR_PORT": str(port),
        "ZUS_EMULATOR_ADMIN_CLIENT_ID": "cli-admin",
        "ZUS_EMULATOR_ADMIN_CLIENT_SECRET": "cli-admin-secret-value",
    }
    command = [sys.executable, "-m", "zus_emulator", "--audience", "https://example.test"]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line == (
            f"Zus emulator listening on http://127.0.0.1:{port}"
            " (audience https://example.test, admin client cli-admin)\n"
        )
        url = f"http://127.0.0.1:{port}"
        body = {
            "client_id": "cli-admin",
            "client_secret": "cli-admin-secret-value",
            "audience": "https://example.test",
            "grant_type": "client_credentials",
        }
        issued = requests.post(f"{url}/oauth/token", json=body, timeout=TIMEOUT)
        assert issued.status_code == 200
        access_token = issued.json()["access_token"]
        response = requests.get(
            f"{url}/auth/app-clients?client_secret=cli-admin-secret-value&page[size]=2",
            headers=bearer(access_token),
            timeout=TIMEOUT,
        )
        assert response.status_code == 200

        busy = subprocess.run(command, env=env, capture_output=True, text=True, timeout=30)
        assert busy.returncode == 1
        assert busy.stdout == ""
        assert busy.stderr.strip().count("\n") == 0
        assert str(port) in busy.stderr
        assert "Traceback" not in busy.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    lines = err.splitlines()
    assert len(lines) == 2, err
    assert lines[0].startswith("127.0.0.1 POST /oauth/token 200 ")
    assert lines[1].startswith("127.0.0.1 GET /auth/app-clients?client_secret=***&page[size]=2 200 ")
    assert "cli-admin-secret-value" not in err + out
    assert access_token not in err + out
