"""The client against the whole local stack (``make dev``: the local API with API Gateway's IAM authorizer,
the real handlers, moto and the Zus emulator) over HTTP, signed as the stack's local admin (managing
clients) and local consumer (their tokens), from the credentials file the stack wrote.

Token-route calls are counted from the stack's own console, one line per request it served; token
requests at Zus from the emulator's ``/_emulator/stats``.
"""

from __future__ import annotations

import configparser
import json
import os
import subprocess
import sys
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import botocore.session
import pytest
import requests
from client_support import (
    FakeClock,
    RecordingTransport,
    console_lines,
    minted_long_ago,
    token_route_calls,
    wait_until,
)

import zus_m2m_client
from zus_local.local_principals import ADMIN_USER as ADMIN_PROFILE
from zus_local.local_principals import CONSUMER_USER as CONSUMER_PROFILE
from zus_m2m_client import SigV4Transport, TokenProvider, ZusAuth, ZusM2MApi, fingerprint

JSON_API = "application/vnd.api+json"
THREADS, CALLS_EACH = 50, 20
REPORTERS = 20


def token_requests_at_zus(stack: Any, record: Mapping[str, Any]) -> int:
    stats = requests.get(f"{stack.zus}/_emulator/stats", timeout=5).json()
    return int(stats["tokenRequests"].get(record["clientId"], 0))


def emulator_client_url(stack: Any, record: Mapping[str, Any]) -> str:
    """A Zus API route any valid bearer token may read: the app client itself."""
    return f"{stack.zus}/auth/app-clients/{record['appClientId']}"


def test_a_fleet_of_threads_costs_one_token_route_call(
    local_stack: Any, managed: Any, consumer_session: botocore.session.Session
) -> None:
    name = "client-fleet"
    url = emulator_client_url(local_stack, managed(name))
    auth = ZusAuth(TokenProvider(local_stack.api, name, session=consumer_session))
    start = threading.Barrier(THREADS)
    statuses: list[int] = []

    def caller() -> None:
        with requests.Session() as http:
            start.wait()
            for _ in range(CALLS_EACH):
                statuses.append(http.get(url, auth=auth, headers={"Accept": JSON_API}, timeout=30).status_code)

    threads = [threading.Thread(target=caller) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert statuses == [200] * THREADS * CALLS_EACH
    calls = token_route_calls(local_stack, name)
    print(f"{THREADS} threads x {CALLS_EACH} calls: {calls} token route call(s) seen by the API")
    assert calls == 1


def test_a_token_zus_refuses_is_reported_replaced_and_the_request_sent_again(
    local_stack: Any, managed: Any, consumer_session: botocore.session.Session
) -> None:
    """The process holds a token past its expiry at Zus (its clock stood still, as on a suspended host)."""
    name = "client-refused"
    managed("client-refused-warm-up")  # provisioning caches the admin's token, good for an hour
    configured = requests.post(f"{local_stack.zus}/_emulator/config", json={"tokenLifetimeSeconds": 5}, timeout=5)
    assert configured.status_code == 200, configured.text
    try:
        url = emulator_client_url(local_stack, managed(name))  # its tokens live 5 s
        route = RecordingTransport(SigV4Transport(local_stack.api, session=consumer_session))
        provider = TokenProvider(local_stack.api, name, min_ttl=3, refresh_margin=0, transport=route, clock=FakeClock())
        auth = ZusAuth(provider)
        with requests.Session() as http:
            assert http.get(url, auth=auth, timeout=10).status_code == 200
            held = provider.get_token()

            def refused_at_zus() -> bool:
                bearer = {"Authorization": f"Bearer {held.access_token}"}
                return requests.get(url, headers=bearer, timeout=10).status_code == 401

            wait_until(refused_at_zus, "Zus to refuse the held token", timeout=30, interval=0.2)
            answer = http.get(url, auth=auth, timeout=10)
        assert answer.status_code == 200, answer.text
        assert [earlier.status_code for earlier in answer.history] == [401]
        assert [query.get("refused") for query in route.queries] == [None, held.fingerprint]
        assert provider.get_token().fingerprint != held.fingerprint
        assert token_route_calls(local_stack, name) == 2
    finally:
        requests.post(f"{local_stack.zus}/_emulator/config", json={"tokenLifetimeSeconds": 3600}, timeout=5)


def test_no_token_or_credential_in_debug_logs(
    local_stack: Any, managed: Any, consumer_session: botocore.session.Session, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    provider = TokenProvider(local_stack.api, "client-logs", session=consumer_session)
    url = emulator_client_url(local_stack, managed("client-logs"))
    assert requests.get(url, auth=ZusAuth(provider), timeout=10).status_code == 200
    held = provider.get_token()
    minted_long_ago(local_stack, "client-logs")
    provider.report_refused(held.access_token)  # the report is logged too, by fingerprint
    assert provider.get_token().fingerprint != held.fingerprint
    assert "/app-clients/client-logs/token?minTtl=300" in caplog.text  # the requests were logged
    assert f"refused={held.fingerprint}" in caplog.text
    credentials = consumer_session.get_credentials()
    assert credentials is not None
    for secret in (
        held.access_token,
        provider.get_token().access_token,
        credentials.access_key,
        credentials.secret_key,
    ):
        assert secret not in caplog.text


# --- a token Zus refused, replaced once for every process (issue 13) --------------------------------------


def test_two_processes_reporting_one_refused_token_cause_one_mint(
    local_stack: Any, managed: Any, consumer_session: botocore.session.Session
) -> None:
    """Providers A and B (two processes) hold T; Zus refuses T to both."""
    name = "client-refused-twice"
    record = managed(name)
    a, b = (TokenProvider(local_stack.api, name, session=consumer_session) for _ in range(2))
    held = a.get_token()
    assert b.get_token().access_token == held.access_token
    minted_long_ago(local_stack, name)
    before = token_requests_at_zus(local_stack, record)

    a.report_refused(held.access_token)
    replaced = a.get_token()
    assert replaced.fingerprint != held.fingerprint
    assert token_requests_at_zus(local_stack, record) - before == 1

    b.report_refused(held.access_token)
    assert b.get_token().access_token == replaced.access_token
    assert token_requests_at_zus(local_stack, record) - before == 1

    # A report naming a token that is not the cached one (T, already replaced; one never seen) answers the
    # cached token unchanged, and mints nothing.
    route = ZusM2MApi(local_stack.api, session=consumer_session)
    for named in (held.fingerprint, fingerprint("a token the service never vended")):
        assert route.token(name, refused=named).access_token == replaced.access_token
    assert token_requests_at_zus(local_stack, record) - before == 1


def test_twenty_processes_reporting_one_refused_token_at_once_cause_one_mint(
    local_stack: Any, managed: Any, consumer_session: botocore.session.Session
) -> None:
    name = "client-refused-fleet"
    record = managed(name)
    providers = [TokenProvider(local_stack.api, name, session=consumer_session) for _ in range(REPORTERS)]
    (held,) = {provider.get_token().access_token for provider in providers}
    minted_long_ago(local_stack, name)
    before = token_requests_at_zus(local_stack, record)
    start = threading.Barrier(REPORTERS)

    def report(provider: TokenProvider) -> str:
        start.wait()
        provider.report_refused(held)
        return provider.get_token().access_token

    with ThreadPoolExecutor(max_workers=REPORTERS) as pool:
        replaced = set(pool.map(report, providers))

    mints = token_requests_at_zus(local_stack, record) - before
    print(f"{REPORTERS} concurrent reports of one refused token: {mints} token request(s) at Zus")
    assert mints == 1
    assert len(replaced) == 1
    assert held not in replaced


# --- Zus refusing every fresh token for a while: the client backs off (issue 20) ---------------------------


def test_zus_refusing_fresh_tokens_costs_a_few_tokens_and_the_first_call_after_it_answers(
    local_stack: Any, managed: Any, consumer_session: botocore.session.Session, admin_session: botocore.session.Session
) -> None:
    """Two threads call the Zus API through one provider while Zus answers 401 to every token (four
    rounds of calls, the provider's clock 5 s on after each: a 20 s refusal); then Zus recovers."""
    name = "client-refused-outage"
    record = managed(name)
    url = emulator_client_url(local_stack, record)
    clock = FakeClock()
    provider = TokenProvider(local_stack.api, name, session=consumer_session, clock=clock, sleep=clock.sleep)
    auth = ZusAuth(provider)
    assert requests.get(url, auth=auth, timeout=10).status_code == 200
    before = token_requests_at_zus(local_stack, record)
    outcomes: list[str] = []
    fault = {"status": 401, "paths": [f"/auth/app-clients/{record['appClientId']}"]}
    requests.post(f"{local_stack.zus}/_emulator/faults", json=fault, timeout=5).raise_for_status()
    try:

        def caller() -> None:
            with requests.Session() as http:
                for _ in range(10):
                    try:
                        outcomes.append(str(http.get(url, auth=auth, timeout=10).status_code))
                    except zus_m2m_client.TokenRefusedError:
                        outcomes.append("TokenRefusedError")

        for _ in range(4):
            threads = [threading.Thread(target=caller) for _ in range(2)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
            clock.advance(5)
    finally:
        requests.post(f"{local_stack.zus}/_emulator/faults", json={}, timeout=5).raise_for_status()
    minted = token_requests_at_zus(local_stack, record) - before
    budget = ZusM2MApi(local_stack.api, session=admin_session).get_client(name)["budget"]
    try:
        first = requests.get(url, auth=auth, timeout=10).status_code
    except zus_m2m_client.TokenRefusedError as backing_off:  # the client waits out its back-off, then calls
        clock.advance(backing_off.retry_after)
        first = requests.get(url, auth=auth, timeout=10).status_code
    print(
        f"Zus refusing every token, 2 threads x 10 calls x 4 rounds: {minted} token(s) minted, budget "
        f"{budget['usedLastHour']} of {budget['limit']} used, {outcomes.count('401')} x 401, "
        f"{outcomes.count('TokenRefusedError')} x TokenRefusedError; first call after recovery: {first}"
    )
    assert len(outcomes) == 80
    assert minted <= 5, outcomes
    assert budget["usedLastHour"] <= 10
    assert first == 200


def test_thirty_chained_reports_by_one_consumer_cost_at_most_two_token_requests(
    local_stack: Any, managed: Any, consumer_session: botocore.session.Session
) -> None:
    """Each report names the token the previous answer gave, every token old enough to be replaced: only
    RefusedReplacementMinGapSeconds (60 s) keeps the chain from minting one token per report (issue 22)."""
    name = "client-refused-chain"
    record = managed(name)
    route = ZusM2MApi(local_stack.api, session=consumer_session)
    held = route.token(name)
    before = token_requests_at_zus(local_stack, record) - 1  # the first token, minted for ``held``
    for _ in range(30):
        minted_long_ago(local_stack, name)
        held = route.token(name, refused=held.fingerprint)

    requests_at_zus = token_requests_at_zus(local_stack, record) - before
    print(f"30 chained reports by one consumer: {requests_at_zus} token request(s) at Zus")
    assert requests_at_zus <= 2


# --- the CLI, as an operator runs it ----------------------------------------------------------------------


def profile_environment(stack: Any, profile: str | None = ADMIN_PROFILE) -> dict[str, str]:
    """The environment of an operator whose shared credentials file is the stack's, signing as ``profile``
    (AWS_PROFILE; None: no profile), in the stack's region; none of the test session's fake credentials."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    env.update(
        AWS_SHARED_CREDENTIALS_FILE=str(stack.credentials_file),
        AWS_CONFIG_FILE=str(stack.credentials_file.with_name("no-config")),
        AWS_DEFAULT_REGION="us-east-1",
        AWS_EC2_METADATA_DISABLED="true",
    )
    if profile is not None:
        env["AWS_PROFILE"] = profile
    return env


def stack_keys(stack: Any, profile: str) -> tuple[str, str]:
    """The access key id and secret key of ``profile`` in the stack's credentials file."""
    parsed = configparser.ConfigParser()
    parsed.read(stack.credentials_file)
    return parsed[profile]["aws_access_key_id"], parsed[profile]["aws_secret_access_key"]


def cli(
    stack: Any, *argv: str, profile: str = ADMIN_PROFILE, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``zus-m2m`` in a subprocess, signing as ``profile`` of the stack's credentials file unless ``env`` is given."""
    source = str(Path(zus_m2m_client.__file__).parents[1])  # the package, installed or not
    environment = {**(env if env is not None else profile_environment(stack, profile)), "ZUS_M2M_API_URL": stack.api}
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [source, environment.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "zus_m2m_client", *argv],
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
        check=False,
    )


def test_cli_create_list_show_token_rotate_delete(local_stack: Any, consumer_arn: str) -> None:
    name = "cli-flow"
    created = cli(local_stack, "clients", "create", name, "--consumer", consumer_arn)
    assert created.returncode == 0, created.stderr
    record = json.loads(created.stdout)
    assert (record["name"], record["consumers"]) == (name, [consumer_arn])
    assert "clientSecret" not in created.stdout

    listed = cli(local_stack, "clients", "list", "--output", "table")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[0].startswith("NAME ")
    assert any(line.startswith(f"{name} ") for line in listed.stdout.splitlines())
    shown = cli(local_stack, "clients", "show", name)
    assert json.loads(shown.stdout)["appClientId"] == record["appClientId"]

    token = cli(local_stack, "token", name, "--min-ttl", "120", profile=CONSUMER_PROFILE)
    assert token.returncode == 0, token.stderr
    assert (token.stdout.count("\n"), token.stdout.count("."), token.stderr) == (1, 2, "")  # one JWT, nothing else
    bearer = {"Authorization": f"Bearer {token.stdout.strip()}"}
    assert requests.get(emulator_client_url(local_stack, record), headers=bearer, timeout=10).status_code == 200
    as_admin = cli(local_stack, "token", name)  # an admin is not a consumer
    assert (as_admin.returncode, as_admin.stdout) == (4, "")

    rotated = cli(local_stack, "clients", "rotate", name)
    assert (rotated.returncode, json.loads(rotated.stdout)["rotation"]) == (0, "started")
    finished = f"rotation zus-m2m/zus-m2m-local/sandbox/{name}  finishSecret  ok"
    wait_until(lambda: any(finished in line for line in local_stack.lines), "the rotation to finish", interval=0.2)

    deleted = cli(local_stack, "clients", "delete", name)
    assert (deleted.returncode, json.loads(deleted.stdout), deleted.stderr) == (0, {"name": name, "deleted": True}, "")
    gone = cli(local_stack, "clients", "show", name)
    assert (gone.returncode, gone.stdout) == (3, "")
    assert gone.stderr == f"zus-m2m: 404 Not Found: no managed app client named '{name}'\n"


def test_cli_drift_lists_what_a_builder_admin_token_changed_at_zus_behind_the_stacks_back(
    local_stack: Any, managed: Any
) -> None:
    from zus_m2m.zus.client import ZusClient
    from zus_m2m.zus.endpoints import ZusEndpoints

    record = managed("cli-drift")
    zus = ZusClient(ZusEndpoints(local_stack.zus, local_stack.zus, "https://api.sandbox.zusapi.com"))
    bearer = zus.request_token("local-admin", "local-admin-secret").access_token  # the emulator's admin
    made = zus.create_app_client("made-at-zus", zus.find_role("Builder Admin", bearer).id, bearer).app_client
    zus.delete_app_client(record["appClientId"], bearer)
    try:
        as_json = cli(local_stack, "clients", "drift")
        as_table = cli(local_stack, "clients", "drift", "--output", "table")
    finally:
        zus.delete_app_client(made.id, bearer)

    assert as_json.returncode == 0, as_json.stderr
    drift = json.loads(as_json.stdout)
    assert made.id in [client["appClientId"] for client in drift["unmanagedAtZus"]]
    assert record["appClientId"] not in [client["appClientId"] for client in drift["unmanagedAtZus"]]
    assert {"name": "cli-drift", "appClientId": record["appClientId"], "clientId": record["clientId"]} in drift[
        "missingAtZus"
    ]
    header, *rows = as_table.stdout.splitlines()
    assert header.split() == ["DRIFT", "NAME", "APP", "CLIENT", "CLIENT", "ID"]
    assert any(row.startswith("unmanaged at Zus  made-at-zus ") for row in rows), rows
    assert any(row.startswith("missing at Zus    cli-drift ") for row in rows), rows


def test_cli_grant_and_revoke_change_who_gets_the_token(local_stack: Any, managed: Any, consumer_arn: str) -> None:
    name = "cli-grants"
    managed(name)
    role = "arn:aws:iam::123456789012:role/billing"

    def patches() -> int:
        return sum(f"PATCH  /app-clients/{name}  200" in line for line in console_lines(local_stack))

    granted = cli(local_stack, "clients", "grant", name, role)
    assert granted.returncode == 0, granted.stderr
    assert sorted(json.loads(granted.stdout)["consumers"]) == sorted([consumer_arn, role])
    again = cli(local_stack, "clients", "grant", name, role)  # already granted: a GET, no PATCH
    assert again.returncode == 0, again.stderr
    assert sorted(json.loads(again.stdout)["consumers"]) == sorted([consumer_arn, role])
    assert patches() == 1

    revoked = cli(local_stack, "clients", "revoke", name, consumer_arn)
    assert revoked.returncode == 0, revoked.stderr
    assert json.loads(revoked.stdout)["consumers"] == [role]
    assert patches() == 2
    refused = cli(local_stack, "token", name, profile=CONSUMER_PROFILE)
    assert (refused.returncode, refused.stdout) == (4, "")
    assert refused.stderr.startswith("zus-m2m: 403 Forbidden: ")

    regranted = cli(local_stack, "clients", "grant", name, consumer_arn)
    assert sorted(json.loads(regranted.stdout)["consumers"]) == sorted([consumer_arn, role])
    token = cli(local_stack, "token", name, profile=CONSUMER_PROFILE)  # a consumer just granted: at once
    assert (token.returncode, token.stdout.count(".")) == (0, 2), token.stderr


def test_cli_errors_are_one_line_with_their_exit_code(local_stack: Any) -> None:
    unknown = cli(local_stack, "clients", "grant", "no-such-client", "arn:aws:iam::123456789012:role/billing")
    assert (unknown.returncode, unknown.stdout) == (3, "")
    assert unknown.stderr == "zus-m2m: 404 Not Found: no managed app client named 'no-such-client'\n"

    usage = cli(local_stack, "clients", "frobnicate")
    assert usage.returncode == 2
    assert usage.stderr.splitlines()[-1].startswith("zus-m2m clients: error: argument ACTION: invalid choice")

    role = cli(local_stack, "clients", "create", "cli-bad-role", "--role", "Janitor")
    assert role.returncode == 1
    assert role.stderr.startswith("zus-m2m: 422 Unprocessable Content: role 'Janitor' is not one this stack allows")
    assert role.stderr.count("\n") == 1

    consumer = cli(local_stack, "clients", "list", profile=CONSUMER_PROFILE)  # API Gateway refuses it
    assert (consumer.returncode, consumer.stdout) == (4, "")
    assert consumer.stderr.startswith("zus-m2m: 403 Forbidden: User: arn:aws:iam::123456789012:user/")
    assert "is not authorized to perform: execute-api:Invoke" in consumer.stderr


def test_cli_and_list_clients_list_every_page(
    local_stack: Any, managed: Any, admin_session: botocore.session.Session
) -> None:
    names = [f"cli-page-{n}" for n in range(5)]
    for name in names:
        managed(name)
    every = [c["name"] for c in ZusM2MApi(local_stack.api, session=admin_session).list_clients(page_size=2)]
    assert set(names) <= set(every)
    before = sum(" /app-clients?" in line or "GET    /app-clients  200" in line for line in console_lines(local_stack))
    listed = cli(local_stack, "clients", "list", "--page-size", "2")
    assert listed.returncode == 0, listed.stderr
    assert [c["name"] for c in json.loads(listed.stdout)["appClients"]] == every
    pages = sum(" /app-clients?" in line or "GET    /app-clients  200" in line for line in console_lines(local_stack))
    assert pages - before >= 3  # every page, until one's nextToken is null
    limited = cli(local_stack, "clients", "list", "--page-size", "2", "--limit", "3")
    assert [c["name"] for c in json.loads(limited.stdout)["appClients"]] == every[:3]


def test_cli_signs_with_a_named_profile(local_stack: Any, tmp_path: Path) -> None:
    key, secret = stack_keys(local_stack, ADMIN_PROFILE)
    credentials = tmp_path / "credentials"
    credentials.write_text(f"[ops]\naws_access_key_id = {key}\naws_secret_access_key = {secret}\n")
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    env.update(AWS_SHARED_CREDENTIALS_FILE=str(credentials), AWS_CONFIG_FILE=str(tmp_path / "config"))
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    listed = cli(local_stack, "--profile", "ops", "--region", "us-east-1", "clients", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    assert "appClients" in json.loads(listed.stdout)

    missing = cli(local_stack, "clients", "list", "--profile", "nobody", "--region", "us-east-1", env=env)
    assert (missing.returncode, missing.stdout) == (9, "")
    assert missing.stderr == "zus-m2m: The config profile (nobody) could not be found\n"
    no_region = cli(local_stack, "--profile", "ops", "clients", "list", env=env)
    assert no_region.returncode == 9
    assert no_region.stderr.startswith("zus-m2m: no AWS region to sign requests for")


def test_cli_debug_logs_carry_no_token_or_credential(local_stack: Any, managed: Any) -> None:
    managed("cli-debug")
    key, secret = stack_keys(local_stack, CONSUMER_PROFILE)
    env = {**profile_environment(local_stack, profile=None), "AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret}
    token = cli(local_stack, "--debug", "token", "cli-debug", env=env)
    assert token.returncode == 0, token.stderr
    assert "GET /app-clients/cli-debug/token?minTtl=60 HTTP/1.1" in token.stderr  # debug logging was on
    for leaked in (token.stdout.strip(), key, secret):
        assert leaked not in token.stderr
