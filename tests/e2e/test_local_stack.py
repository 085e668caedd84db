"""End to end over HTTP: the local stack (``make dev``) with the real handlers, moto and the emulator.

The guide's flow through the service: provision → token → use it at Zus → rotate (tokens keep coming)
→ the new secret works and the old does not → delete. Then the scheduled pre-refresh, a clean
SIGTERM, a busy port; and, in process, the API Gateway event the handlers get and the error paths.
"""

from __future__ import annotations

import datetime
import io
import json
import os
import pty
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import e2e_support
import pytest
import requests
from e2e_support import free_port, wait_until

from zus_local.aws_setup import create_user_with_key
from zus_local.console import Console
from zus_local.iam_authorizer import SIGNATURE_MISMATCH, IamAuthorizer, MotoSigners
from zus_local.lambda_runtime import LambdaRuntime
from zus_local.local_api import LocalApi
from zus_local.local_principals import CONSUMER_USER, keys_file
from zus_local.scheduler import Scheduler
from zus_local.sigv4 import ExecuteApiAuth
from zus_local.stand_ins import ResolveContext
from zus_local.template_model import TemplateModel, load_model

if TYPE_CHECKING:
    from local_stack_process import StackProcess

ROOT = Path(__file__).resolve().parents[2]
AUDIENCE = "https://api.sandbox.zusapi.com"
JSON_API = "application/vnd.api+json"
# What each dialect of Zus's auth server calls refused credentials.
REFUSED = {"auth0": "access_denied", "rfc6749": "invalid_client"}


@pytest.fixture(params=sorted(REFUSED))
def dialect(request: pytest.FixtureRequest, stack: StackProcess) -> Iterator[str]:
    """The session's emulator speaking one dialect for the test, then as it started (Auth0's, no
    propagation delay) again."""
    chosen = str(request.param)
    requests.post(f"{stack.zus}/_emulator/config", json={"dialect": chosen}, timeout=5).raise_for_status()
    yield chosen
    defaults = {"dialect": "auth0", "secretPropagationSeconds": 0, "propagationMode": "random"}
    requests.post(f"{stack.zus}/_emulator/config", json=defaults, timeout=5).raise_for_status()


def zus_token(stack: StackProcess, client_id: str, client_secret: str) -> requests.Response:
    """The guide's token request, straight to the emulator."""
    return e2e_support.zus_token(stack.zus, client_id, client_secret)


def stages(sm: Any, secret_id: str) -> dict[str, list[str]]:
    versions = sm.describe_secret(SecretId=secret_id)["VersionIdsToStages"]
    return {version: sorted(labels) for version, labels in versions.items() if labels}


def version_with(found: dict[str, list[str]], stage: str) -> str | None:
    return next((version for version, labels in found.items() if stage in labels), None)


def secret_at(sm: Any, secret_id: str, stage: str) -> dict[str, str]:
    return dict(json.loads(sm.get_secret_value(SecretId=secret_id, VersionStage=stage)["SecretString"]))


def consumer_arn(stack: StackProcess) -> str:
    """The local consumer's IAM user, as ``make dev`` creates it in moto."""
    return str(stack.client("iam").get_user(UserName=CONSUMER_USER)["User"]["Arn"])


# --- the guide's flow through the service ------------------------------------------------------------


def test_provision_token_rotate_delete(stack: StackProcess, dialect: str) -> None:
    api, name = stack.api, f"e2e-billing-{dialect}"

    admin, consumer = stack.admin, stack.consumer
    consumers = [consumer_arn(stack)]

    # Provision: 201 with the record, never the secret; the same request again is 200.
    created = admin.post(f"{api}/app-clients", json={"name": name, "consumers": consumers}, timeout=30)
    assert created.status_code == 201, created.text
    record = created.json()
    assert record["name"] == name
    assert record["consumers"] == consumers
    assert "clientSecret" not in created.text
    again = admin.post(f"{api}/app-clients", json={"name": name, "consumers": consumers}, timeout=30)
    assert again.status_code == 200, again.text
    assert again.json()["appClientId"] == record["appClientId"]

    # A token from the service, for its consumer, usable at Zus (the guide's step 4).
    token = consumer.get(f"{api}/app-clients/{name}/token", timeout=10)
    assert token.status_code == 200, token.text
    assert token.headers["Cache-Control"] == "no-store"
    access_token = token.json()["access_token"]
    assert token.json()["token_type"] == "Bearer"
    read = requests.get(
        f"{stack.zus}/auth/app-clients/{record['appClientId']}",
        headers={"Authorization": f"Bearer {access_token}", "Accept": JSON_API},
        timeout=5,
    )
    assert read.status_code == 200, read.text
    assert read.json()["data"]["attributes"]["clientId"] == record["clientId"]

    # Rotate while a caller keeps asking for tokens every 50 ms; Zus refuses the new secret (and still
    # accepts the old one) for 3 s after rotating it, so testSecret has to wait for it.
    propagation = {"secretPropagationSeconds": 3, "propagationMode": "old-then-new"}
    requests.post(f"{stack.zus}/_emulator/config", json=propagation, timeout=5).raise_for_status()
    sm = stack.client("secretsmanager")
    secret_id = record["secretArn"]
    before = version_with(stages(sm, secret_id), "AWSCURRENT")
    statuses: list[int] = []
    stop = threading.Event()

    def keep_asking() -> None:
        with stack.consumer as session:
            while not stop.is_set():
                statuses.append(session.get(f"{api}/app-clients/{name}/token", timeout=10).status_code)
                time.sleep(0.05)

    caller = threading.Thread(target=keep_asking)
    caller.start()
    try:
        started = admin.post(f"{api}/app-clients/{name}/rotations", timeout=30)
        assert started.status_code == 202, started.text

        def rotated() -> bool:
            found = stages(sm, secret_id)
            current = version_with(found, "AWSCURRENT")
            return current not in (None, before) and version_with(found, "AWSPENDING") is None

        wait_until(rotated, 20, "the rotation to finish")
        time.sleep(0.5)  # a few more tokens after the switch
    finally:
        stop.set()
        caller.join(timeout=15)
    assert len(statuses) >= 5
    assert set(statuses) == {200}, statuses

    # The new secret works at Zus, the old one is refused at once.
    current, previous = secret_at(sm, secret_id, "AWSCURRENT"), secret_at(sm, secret_id, "AWSPREVIOUS")
    assert current["clientId"] == previous["clientId"] == record["clientId"]
    assert current["clientSecret"] != previous["clientSecret"]
    assert zus_token(stack, current["clientId"], current["clientSecret"]).status_code == 200
    refused = zus_token(stack, previous["clientId"], previous["clientSecret"])
    assert refused.status_code == 401
    assert refused.json()["error"] == REFUSED[dialect]
    after = consumer.get(f"{api}/app-clients/{name}/token", timeout=10)
    assert after.status_code == 200, after.text

    # Delete: 204, then the name is gone.
    deleted = admin.delete(f"{api}/app-clients/{name}", timeout=30)
    assert deleted.status_code == 204, deleted.text
    gone = admin.get(f"{api}/app-clients/{name}", timeout=10)
    assert gone.status_code == 404
    assert gone.headers["Content-Type"].startswith("application/problem+json")

    # The stack printed one line per request and never a secret or a token.
    time.sleep(0.2)
    output = stack.output
    assert f"POST   /app-clients/{name}/rotations  202" in output
    assert f"rotation zus-m2m/zus-m2m-local/sandbox/{name}  finishSecret  ok" in output
    for secret in (current["clientSecret"], previous["clientSecret"], access_token, "local-admin-secret"):
        assert secret not in output


def test_zus_asking_for_15_minutes_is_a_retry_after_of_15_minutes(stack: StackProcess) -> None:
    """Auth0 throttles without Retry-After; its x-ratelimit-reset (epoch seconds) says 900 s from now."""
    api, name = stack.api, "e2e-throttled"
    created = stack.admin.post(
        f"{api}/app-clients", json={"name": name, "consumers": [consumer_arn(stack)]}, timeout=30
    )
    assert created.status_code == 201, created.text
    stack.client("dynamodb").delete_item(  # forget the cached token: the next call asks Zus
        TableName="zus-m2m-local", Key={"pk": {"S": f"client#{name}"}, "sk": {"S": "token"}}
    )
    fault = {"status": 429, "retryAfter": 900, "paths": ["/oauth/token"]}
    requests.post(f"{stack.zus}/_emulator/faults", json=fault, timeout=5).raise_for_status()
    try:
        throttled = stack.consumer.get(f"{api}/app-clients/{name}/token", timeout=10)
        again = stack.consumer.get(f"{api}/app-clients/{name}/token", timeout=10)  # remembered, Zus not asked
    finally:
        requests.post(f"{stack.zus}/_emulator/faults", json={}, timeout=5).raise_for_status()
        stack.admin.delete(f"{api}/app-clients/{name}", timeout=30)
    assert throttled.status_code == 503, throttled.text
    assert 899 <= int(throttled.headers["Retry-After"]) <= 901
    assert again.status_code == 503
    assert 895 <= int(again.headers["Retry-After"]) <= 901


def test_scheduled_pre_refresh_renews_a_token_nobody_asks_for(stack: StackProcess) -> None:
    """Tokens that live 184 s (their refresh margin: half their life, 92 s) enter the margin plus the
    job's 90 s horizon 2 s after they are issued; the pre-refresh schedule (every second here) hands the
    client to the work queue and the worker renews its token, without any caller."""
    api, name = stack.api, "e2e-prefresh"
    config = requests.post(f"{stack.zus}/_emulator/config", json={"tokenLifetimeSeconds": 184}, timeout=5)
    assert config.status_code < 300, config.text
    try:
        created = stack.admin.post(
            f"{api}/app-clients", json={"name": name, "consumers": [consumer_arn(stack)]}, timeout=30
        )
        assert created.status_code == 201, created.text
        client_id = created.json()["clientId"]
        first = stack.consumer.get(f"{api}/app-clients/{name}/token", timeout=10)
        assert first.status_code == 200, first.text
        issued = first.json()["expires_at"]

        def renewed() -> int | None:
            token = stack.admin.get(f"{api}/app-clients/{name}", timeout=10).json()["token"]
            expires = token.get("expiresAt")
            return expires if expires and expires > issued else None

        wait_until(renewed, 20, "the pre-refresh schedule to renew the cached token")
        stats = requests.get(f"{stack.zus}/_emulator/stats", timeout=5).json()
        assert stats["tokenRequests"][client_id] >= 2
        # Through the work queue: the job handed it out (with the bootstrap admin's token, also in use),
        # the queue's event source invoked the worker. Each line is printed once its invocation returned,
        # which can be after the token it wrote was read above.
        handed_out = re.compile(r"schedule zus-m2m-local-pre-refresh \(pre-refresh\)  ok .* dispatched=[1-9]")
        worked = re.compile(r"queue zus-m2m-local-work  \d+ messages? -> WorkerFunction  ok")
        wait_until(lambda: any(handed_out.search(line) for line in stack.lines), 10, "the pre-refresh job's line")
        wait_until(lambda: any(worked.search(line) for line in stack.lines), 10, "the worker's line")
    finally:
        requests.post(f"{stack.zus}/_emulator/config", json={"tokenLifetimeSeconds": 3600}, timeout=5)
        stack.admin.delete(f"{api}/app-clients/{name}", timeout=30)


def test_a_new_clients_rotation_check_flows_through_the_work_queue(stack: StackProcess) -> None:
    """A new client's record is due for its first rotation check at once; the rotation sweep (every 5 s
    here) hands it to the work queue, the worker checks it (healthy: the token the create cached proves
    its secret) and schedules the next check an hour on (a minute here, scaled as the schedules are not:
    the record's dueAt is real time)."""
    api, name = stack.api, "e2e-checked"
    dynamodb = stack.client("dynamodb")
    created = stack.admin.post(
        f"{api}/app-clients", json={"name": name, "consumers": [consumer_arn(stack)]}, timeout=30
    )
    assert created.status_code == 201, created.text
    key = {"pk": {"S": f"client#{name}"}, "sk": {"S": "record"}}
    created_at = float(created.json()["createdAt"])

    def checked() -> float | None:
        item = dynamodb.get_item(TableName="zus-m2m-local", Key=key, ConsistentRead=True)["Item"]
        due_at = float(item["dueAt"]["N"])
        return due_at if due_at > created_at + 3000 else None

    next_check = wait_until(checked, 30, "the worker to check the new client and schedule its next check")
    assert next_check <= time.time() + 3600
    assert any("schedule zus-m2m-local-rotation-sweep (rotation-sweep)  ok" in line for line in stack.lines)
    assert stack.admin.delete(f"{api}/app-clients/{name}", timeout=30).status_code == 204


def test_a_failed_rotation_step_is_repaired_by_the_repair_schedule(
    stack: StackProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    """Zus refuses rotate-secret until Secrets Manager (the stack's rotation player) gives up the
    rotation; the repair schedule (rate(2 minutes), every 2 s here) repairs it: a new rotation that
    finishes. Prints the time from the failed step to its repair (a measurement, not an assertion)."""
    api, name = stack.api, "e2e-repair"
    created = stack.admin.post(
        f"{api}/app-clients", json={"name": name, "consumers": [consumer_arn(stack)]}, timeout=30
    )
    assert created.status_code == 201, created.text
    secret_id = created.json()["secretArn"]
    sm, dynamodb = stack.client("secretsmanager"), stack.client("dynamodb")
    before = secret_at(sm, secret_id, "AWSCURRENT")
    failure_key = {"pk": {"S": "rotation-failures"}, "sk": {"S": name}}

    def recorded() -> dict[str, Any] | None:
        item = dynamodb.get_item(TableName="zus-m2m-local", Key=failure_key, ConsistentRead=True).get("Item")
        return item if item and "seenAt" not in item else None

    faults = {"status": 500, "rate": 1.0, "paths": ["/auth/app-clients"]}
    requests.post(f"{stack.zus}/_emulator/faults", json=faults, timeout=5).raise_for_status()
    try:
        started = stack.admin.post(f"{api}/app-clients/{name}/rotations", timeout=30)
        assert started.status_code == 202, started.text
        wait_until(
            lambda: any(f"{name}  createSecret  failed" in line and "attempt 4" in line for line in stack.lines),
            30,
            "the rotation player to give up createSecret",
        )
        failure = wait_until(recorded, 10, "the failure to be recorded")
    finally:
        requests.post(f"{stack.zus}/_emulator/faults", json={}, timeout=5).raise_for_status()
    failed_at = float(failure["failedAt"]["N"])
    assert failure["step"]["S"] == "createSecret"

    def gone() -> bool:
        return "Item" not in dynamodb.get_item(TableName="zus-m2m-local", Key=failure_key, ConsistentRead=True)

    wait_until(gone, 30, "the repair schedule to repair the rotation", interval=0.05)
    repaired_after = time.time() - failed_at

    def rotated() -> bool:
        found = stages(sm, secret_id)
        return version_with(found, "AWSPENDING") is None and secret_at(sm, secret_id, "AWSCURRENT") != before

    wait_until(rotated, 30, "the restarted rotation to finish", interval=0.05)
    finished_after = time.time() - failed_at
    current = secret_at(sm, secret_id, "AWSCURRENT")
    assert zus_token(stack, current["clientId"], current["clientSecret"]).status_code == 200
    assert any("rotation-repair" in line and "ok" in line for line in stack.lines)
    [schedules] = [line for line in stack.lines if line.startswith("  schedules ")]
    every = re.search(r"rotation-repair every ([^,]+?)(,| \()", schedules)
    with capsys.disabled():
        print(
            f"\nrotation repair on the local stack (rotation-repair every {every.group(1) if every else '?'}): "
            f"failed step -> repaired {repaired_after:.1f} s, -> rotation finished {finished_after:.1f} s"
        )
    stack.admin.delete(f"{api}/app-clients/{name}", timeout=30)


def test_a_client_deleted_with_a_stuck_rotation_is_created_again_at_once(stack: StackProcess) -> None:
    api, name = stack.api, "e2e-stuck"
    first = stack.admin.post(f"{api}/app-clients", json={"name": name, "consumers": [consumer_arn(stack)]}, timeout=30)
    assert first.status_code == 201, first.text
    faults = {"status": 500, "rate": 1.0, "paths": ["/auth/app-clients"]}
    requests.post(f"{stack.zus}/_emulator/faults", json=faults, timeout=5).raise_for_status()
    try:
        assert stack.admin.post(f"{api}/app-clients/{name}/rotations", timeout=30).status_code == 202
        wait_until(
            lambda: any(f"{name}  createSecret  failed" in line and "attempt 4" in line for line in stack.lines),
            30,
            "the rotation player to give up createSecret",
        )
    finally:
        requests.post(f"{stack.zus}/_emulator/faults", json={}, timeout=5).raise_for_status()

    assert stack.admin.delete(f"{api}/app-clients/{name}", timeout=30).status_code == 204
    again = stack.admin.post(f"{api}/app-clients", json={"name": name, "consumers": [consumer_arn(stack)]}, timeout=30)

    assert again.status_code == 201, again.text
    assert again.json()["appClientId"] != first.json()["appClientId"]
    labels = [sorted(found) for found in stages(stack.client("secretsmanager"), again.json()["secretArn"]).values()]
    assert sorted(labels) == [["AWSCURRENT"], ["AWSPREVIOUS"]]
    assert stack.consumer.get(f"{api}/app-clients/{name}/token", timeout=10).status_code == 200
    stack.admin.delete(f"{api}/app-clients/{name}", timeout=30)


def test_unknown_routes_and_methods_are_api_gateways_404(stack: StackProcess) -> None:
    for method, path in [("GET", "/no/such/route"), ("PUT", "/app-clients"), ("TRACE", "/app-clients")]:
        for session in (requests.Session(), stack.admin):  # before any signature check
            response = session.request(method, f"{stack.api}{path}", timeout=5)
            assert response.status_code == 404, (method, path)
            assert response.headers["Content-Type"] == "application/json"
            assert response.json() == {"message": "Not Found"}


# --- who may do what: refused calls change nothing ----------------------------------------------------------


def intruder(stack: StackProcess) -> requests.Session:
    """An IAM user whose policy lets it invoke every route, but who is not an admin of the stack."""
    iam = stack.client("iam")
    policy = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "execute-api:Invoke", "Resource": "arn:aws:execute-api:*"}],
    }
    _, key, secret = create_user_with_key(iam, "e2e-intruder", "invoke-everything", policy)
    session = requests.Session()
    session.auth = ExecuteApiAuth(key, secret)
    return session


def snapshot(stack: StackProcess, name: str) -> tuple[Any, ...]:
    """What a refused call must leave as it was: the record, the secret's versions, the Zus clients and
    the token requests Zus saw."""
    record = stack.admin.get(f"{stack.api}/app-clients/{name}", timeout=10).json()
    record.pop("token")
    record.pop("budget")
    versions = stack.client("secretsmanager").list_secret_version_ids(SecretId=record["secretArn"])["Versions"]
    stats = requests.get(f"{stack.zus}/_emulator/stats", timeout=5).json()
    return record, [v["VersionId"] for v in versions], stats["appClients"], stats["tokenRequests"]


def test_refused_calls_get_api_gateways_or_the_services_403_and_nothing_half_changes(stack: StackProcess) -> None:
    api, name, other = stack.api, "e2e-guarded", "e2e-others"
    for client, consumers in ((name, [consumer_arn(stack)]), (other, [])):
        created = stack.admin.post(f"{api}/app-clients", json={"name": client, "consumers": consumers}, timeout=30)
        assert created.status_code == 201, created.text
    assert stack.consumer.get(f"{api}/app-clients/{name}/token", timeout=10).status_code == 200
    before = snapshot(stack, name)
    keys = stack.signer(CONSUMER_USER).credentials
    token_route = f"{api}/app-clients/{name}/token"
    refused: dict[str, requests.Response] = {}

    # API Gateway's IAM authorizer
    refused["unsigned"] = requests.get(token_route, timeout=10)
    wrong = requests.Session()
    wrong.auth = ExecuteApiAuth(keys.access_key, "not-the-secret-key")
    refused["wrong signature"] = wrong.get(token_route, timeout=10)
    expired = requests.Session()
    expired.auth = ExecuteApiAuth(
        keys.access_key,
        keys.secret_key,
        clock=lambda: datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=6),
    )
    refused["expired signature"] = expired.get(token_route, timeout=10)
    unknown = requests.Session()
    unknown.auth = ExecuteApiAuth("AKIAUNKNOWNKEY000000", "whatever")
    refused["unknown access key"] = unknown.get(token_route, timeout=10)
    refused["consumer, admin route (its IAM policy)"] = stack.consumer.delete(f"{api}/app-clients/{name}", timeout=10)
    # the service: consumers and admins
    refused["consumer, another client's token"] = stack.consumer.get(f"{api}/app-clients/{other}/token", timeout=10)
    outsider = intruder(stack)
    refused["non-admin, create"] = outsider.post(f"{api}/app-clients", json={"name": "e2e-intruded"}, timeout=30)
    refused["non-admin, update"] = outsider.patch(
        f"{api}/app-clients/{name}", json={"consumers": ["arn:aws:iam::123456789012:root"]}, timeout=30
    )
    refused["non-admin, rotate"] = outsider.post(f"{api}/app-clients/{name}/rotations", timeout=30)
    refused["non-admin, delete"] = outsider.delete(f"{api}/app-clients/{name}", timeout=30)
    refused["admin, the bootstrap admin's token"] = stack.admin.get(
        f"{api}/app-clients/zus-m2m-admin/token", timeout=10
    )

    gateway = {key: refused.pop(key) for key in list(refused)[:5]}
    assert {key: (r.status_code, r.json()) for key, r in gateway.items()} == {
        "unsigned": (403, {"message": "Missing Authentication Token"}),
        "wrong signature": (403, {"message": SIGNATURE_MISMATCH}),
        "expired signature": (403, {"message": gateway["expired signature"].json()["message"]}),
        "unknown access key": (403, {"message": "The security token included in the request is invalid."}),
        "consumer, admin route (its IAM policy)": (403, gateway["consumer, admin route (its IAM policy)"].json()),
    }
    assert gateway["expired signature"].json()["message"].startswith("Signature expired: ")
    assert (
        gateway["consumer, admin route (its IAM policy)"]
        .json()["Message"]
        .startswith(f"User: {consumer_arn(stack)} is not authorized to perform: execute-api:Invoke on resource: ")
    )
    for what, response in refused.items():
        assert response.status_code == 403, (what, response.text)
        assert response.headers["Content-Type"] == "application/problem+json", what
        assert response.json()["type"] == "urn:zus-m2m:problem:forbidden", what
    assert snapshot(stack, name) == before
    assert stack.admin.get(f"{api}/app-clients/e2e-intruded", timeout=10).status_code == 404
    for client in (name, other):
        stack.admin.delete(f"{api}/app-clients/{client}", timeout=30)


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl (7.75 or later) for --aws-sigv4")
def test_curls_own_sigv4_with_the_keys_file_as_the_banner_says(stack: StackProcess) -> None:
    name = "e2e-curl"
    keys = dict(line.split("=", 1) for line in keys_file(stack.credentials_file).read_text().split())
    sign = ["--aws-sigv4", "aws:amz:us-east-1:execute-api"]
    body = json.dumps({"name": name, "consumers": [consumer_arn(stack)]})

    def curl(user: str, *args: str) -> tuple[int, dict[str, Any]]:
        result = subprocess.run(
            ["curl", "-s", "-w", "\n%{http_code}", *sign, "--user", keys[user], *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        text, _, status = result.stdout.rpartition("\n")
        return int(status), json.loads(text)

    created = curl(
        "ZUS_M2M_LOCAL_ADMIN",
        "-X",
        "POST",
        f"{stack.api}/app-clients",
        "-H",
        "content-type: application/json",
        "-d",
        body,
    )
    vended = curl("ZUS_M2M_LOCAL_CONSUMER", f"{stack.api}/app-clients/{name}/token?minTtl=60")
    assert created[0] == 201, created
    assert vended[0] == 200
    assert vended[1]["token_type"] == "Bearer"
    assert stack.admin.delete(f"{stack.api}/app-clients/{name}", timeout=30).status_code == 204


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl (7.75 or later) for --aws-sigv4")
def test_the_banners_commands_run_as_printed(stack_factory: Callable[..., StackProcess], tmp_path: Path) -> None:
    """Each command under "Try:", copied from the banner into a shell whose environment names no AWS
    region or credentials (a fresh terminal): the curl lines answer 201, 200 and 202; the AWS CLI line
    (run when an ``aws`` is installed) names the consumer."""
    stack = stack_factory(["--schedule-scale", "0"])
    lines = stack.lines[stack.lines.index("Try:") + 1 :]
    lines = lines[: lines.index("")]
    commands = [line.strip() for line in lines if line.startswith("  ")]
    source, curls, aws = commands[0], [c for c in commands if c.startswith("curl ")], commands[-1]
    assert (source[:2], len(curls), " aws " in aws) == (". ", 3, True), commands
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "ZUS_M2M_"))}
    env["HOME"] = str(tmp_path)  # no ~/.aws of this machine

    def shell(command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "-c", f"{source} && {command}"], capture_output=True, text=True, env=env, timeout=60, check=False
        )

    answers = []
    for command in curls:
        ran = shell(command.replace("curl -s ", "curl -s -w '\\n%{http_code}' ", 1))
        assert ran.returncode == 0, (command, ran.stderr)
        body, _, status = ran.stdout.rpartition("\n")
        answers.append((int(status), json.loads(body)))
    assert [status for status, _ in answers] == [201, 200, 202], answers
    assert (answers[0][1]["name"], answers[1][1]["token_type"], answers[2][1]["rotation"]) == (
        "billing-service",
        "Bearer",
        "started",
    )
    if shutil.which("aws") is not None:
        ran = shell(aws)
        assert ran.returncode == 0, (aws, ran.stderr)
        assert json.loads(ran.stdout)["Arn"] == consumer_arn(stack)


def test_the_audit_lines_of_a_create_a_vend_and_a_denied_vend(stack_factory: Callable[..., StackProcess]) -> None:
    """With --verbose the handlers' INFO lines, the audit lines among them, reach the stack's output."""
    verbose = stack_factory(["--verbose", "--schedule-scale", "0"])
    name = "e2e-audited"
    created = verbose.admin.post(
        f"{verbose.api}/app-clients", json={"name": name, "consumers": [consumer_arn(verbose)]}, timeout=30
    )
    vended = verbose.consumer.get(f"{verbose.api}/app-clients/{name}/token", timeout=10)
    denied = verbose.admin.get(f"{verbose.api}/app-clients/{name}/token", timeout=10)
    assert (created.status_code, vended.status_code, denied.status_code) == (201, 200, 403)

    def audited() -> list[dict[str, Any]]:
        return [json.loads(line)["audit"] for line in list(verbose.lines) if line.startswith("{") and '"audit"' in line]

    lines = wait_until(lambda: (found := audited()) and len(found) >= 3 and found, 10, "three audit lines")
    assert [(line["action"], line["client"], line["status"], line["outcome"]) for line in lines] == [
        ("POST /app-clients", name, 201, "allowed"),
        ("GET /app-clients/{name}/token", name, 200, "allowed"),
        ("GET /app-clients/{name}/token", name, 403, "denied"),
    ]
    assert lines[0]["caller"] == lines[2]["caller"] == "arn:aws:iam::123456789012:user/zus-m2m-local-admin"
    assert lines[1]["caller"] == consumer_arn(verbose)
    assert lines[1]["tokenExpiresAt"] == vended.json()["expires_at"]
    assert all(line["sourceIp"] == "127.0.0.1" and line["accessKey"].startswith("AKIA") for line in lines)
    assert vended.json()["access_token"] not in verbose.output
    print("\n".join(json.dumps(line) for line in lines))  # the issue asks for them in the report


# --- lifecycle of the process ----------------------------------------------------------------------------


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _moto_children(port: int) -> list[int]:
    """PIDs of moto children serving ``port`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"zus_local.moto_process" in command and str(port).encode() in command:
            found.append(int(entry.name))
    return found


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs /proc to look for leftover processes")
def test_sigterm_stops_every_process_and_port(stack_factory: Callable[..., StackProcess]) -> None:
    stack = stack_factory(["--schedule-scale", "0"])
    assert all(_listening(port) for port in stack.ports)
    assert _moto_children(stack.moto_port)
    code = stack.terminate(timeout=10)  # fails the test if the stack is not gone within 10 s
    assert code == 0, stack.output
    assert not any(_listening(port) for port in stack.ports)
    assert _moto_children(stack.moto_port) == []
    assert "stopped" in stack.lines


def test_a_busy_port_is_named_in_one_line(stack_factory: Callable[..., StackProcess]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        stack = stack_factory(["--api-port", str(port)], wait=False)
        code = stack.process.wait(timeout=20)
        time.sleep(0.2)
    assert code == 1
    assert stack.errors == [f"zus-local: port {port} is in use (local API); pass --api-port"]
    assert not any(_listening(p) for p in (stack.moto_port, stack.zus_port))


# --- in process: the event the handlers get, and the error paths ------------------------------------------

FUNCTION_CODE = """
import json
import os

IMPORTED_WITH = os.environ.get("GREETING")


def handler(event, context):
    print("echo event " + json.dumps(event))  # to the stack's output, as the events it saw
    if event.get("rawPath") == "/crash":
        raise RuntimeError("boom: this trace belongs on stderr")
    if event.get("rawPath") == "/plain":
        return {"plain": True}
    return {
        "statusCode": 200,
        "headers": {"Content-Type": "application/json", "X-Function": context.function_name},
        "cookies": ["a=1"],
        "body": __import__("json").dumps({
            "event": event,
            "greeting": IMPORTED_WITH,
            "function": context.function_name,
            "remaining": context.get_remaining_time_in_millis(),
            "requestId": context.aws_request_id,
        }),
    }
"""

TEMPLATE = """
Parameters:
  Greeting: {Type: String, Default: hello}
Globals:
  Function:
    Runtime: python3.13
    Handler: app.handler
    Timeout: 7
    Environment:
      Variables:
        GREETING: !Sub "${Greeting} from ${AWS::StackName}"
Resources:
  EchoFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: echo/
      Events:
        Item:
          Type: HttpApi
          Properties: {Path: "/items/{id}", Method: POST}
        Crash:
          Type: HttpApi
          Properties: {Path: /crash, Method: GET}
        Plain:
          Type: HttpApi
          Properties: {Path: /plain, Method: GET}
        Tick:
          Type: ScheduleV2
          Properties:
            ScheduleExpression: rate(1 minute)
            Input: '{"job": "tick"}'
"""


class _InProcess:
    def __init__(
        self,
        model: TemplateModel,
        runtime: LambdaRuntime,
        api: LocalApi,
        out: io.StringIO,
        err: io.StringIO,
        signer: ExecuteApiAuth,
        signer_arn: str,
    ):
        self.model, self.runtime, self.api, self.out, self.err = model, runtime, api, out, err
        self.signer, self.signer_arn = signer, signer_arn
        self.session = requests.Session()
        self.session.auth = signer


@pytest.fixture
def in_process(tmp_path: Path, moto_endpoint: str) -> Iterator[_InProcess]:
    """The echo template on a local API whose signers are moto's IAM: one user allowed every route."""
    (tmp_path / "echo").mkdir()
    (tmp_path / "echo" / "app.py").write_text(FUNCTION_CODE)
    (tmp_path / "template.yaml").write_text(TEMPLATE)
    model = load_model(tmp_path / "template.yaml", ResolveContext(stack_name="echo-stack"))
    iam = boto3.client("iam", endpoint_url=moto_endpoint, region_name="us-east-1")
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "execute-api:*", "Resource": "*"}]}
    arn, key, secret = create_user_with_key(iam, "echo-caller", "invoke", policy)
    out, err = io.StringIO(), io.StringIO()
    console = Console(out, err)
    runtime = LambdaRuntime(model, concurrency=2, console=console)
    runtime.warm_up()
    authorizer = IamAuthorizer(MotoSigners(moto_endpoint), region="us-east-1", account_id="123456789012")
    api = LocalApi(console, "127.0.0.1", free_port()).bind().serve(model, runtime, authorizer)
    try:
        yield _InProcess(model, runtime, api, out, err, ExecuteApiAuth(key, secret), arn)
    finally:
        api.stop()
        runtime.stop()


def echoed_events(out: io.StringIO) -> list[dict[str, Any]]:
    """The events the echo function printed."""
    prefix = "echo event "
    return [json.loads(line[len(prefix) :]) for line in out.getvalue().splitlines() if line.startswith(prefix)]


@pytest.mark.parametrize("method", ["QUERY", "FOO", "PROPFIND", "M-SEARCH", "query", "X_Y", "TRACE"])
def test_any_method_no_route_has_is_api_gateways_404(in_process: _InProcess, method: str) -> None:
    for session in (requests.Session(), in_process.session):  # unsigned and signed
        response = session.request(method, f"{in_process.api.url}/items/a", timeout=5)
        assert response.status_code == 404, (method, response.text)
        assert response.headers["Content-Type"] == "application/json"
        assert response.json() == {"message": "Not Found"}


def test_a_body_the_local_api_cannot_read_is_the_services_one_kind_of_400(in_process: _InProcess) -> None:
    """A bad Content-Length: the same problem type as every other 400 of the service (invalid-request)."""
    with socket.create_connection(("127.0.0.1", in_process.api.port), timeout=5) as connection:
        connection.sendall(b"POST /items/a HTTP/1.1\r\nHost: x\r\nContent-Length: ten\r\n\r\n")
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = connection.recv(4096)
            if not chunk:
                break
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), head
    assert json.loads(body)["type"] == "urn:zus-m2m:problem:invalid-request"


def test_handlers_get_an_http_api_v2_event_and_a_lambda_context(in_process: _InProcess) -> None:
    assert "GREETING" not in os.environ  # the function's environment is its own process's
    response = in_process.session.post(
        f"{in_process.api.url}/items/a%20b?x=1&x=2&y=",
        json={"k": "v"},
        headers={"X-Custom": "yes", "Cookie": "c1=1; c2=2"},
        timeout=5,
    )
    assert response.status_code == 200, response.text
    assert response.headers["X-Function"] == "echo-stack-EchoFunction"
    assert response.headers["Set-Cookie"] == "a=1"
    assert response.headers["Apigw-Requestid"]
    body = response.json()
    assert body["greeting"] == "hello from echo-stack"
    assert 0 < body["remaining"] <= 7000
    event = body["event"]
    assert event["version"] == "2.0"
    assert event["routeKey"] == "POST /items/{id}"
    assert event["rawPath"] == "/items/a%20b"
    assert event["rawQueryString"] == "x=1&x=2&y="
    assert event["queryStringParameters"] == {"x": "1,2", "y": ""}
    assert event["pathParameters"] == {"id": "a b"}
    assert event["headers"]["x-custom"] == "yes"
    assert event["headers"]["content-type"] == "application/json"
    assert all(name == name.lower() for name in event["headers"])
    assert event["cookies"] == ["c1=1", "c2=2"]
    assert json.loads(event["body"]) == {"k": "v"}
    assert event["isBase64Encoded"] is False
    context = event["requestContext"]
    assert context["http"]["method"] == "POST"
    assert context["http"]["path"] == "/items/a%20b"
    assert context["http"]["sourceIp"] == "127.0.0.1"
    assert context["stage"] == "$default"
    assert context["routeKey"] == "POST /items/{id}"
    assert context["requestId"] == body["requestId"] == response.headers["Apigw-Requestid"]
    assert abs(context["timeEpoch"] / 1000 - time.time()) < 10
    iam = context["authorizer"]["iam"]
    assert iam["accountId"] == "123456789012"
    assert iam["userArn"] == in_process.signer_arn
    assert iam["accessKey"] == in_process.signer.credentials.access_key
    assert iam["callerId"] == iam["userId"]
    assert iam["userId"]
    assert iam["cognitoIdentity"] is None
    assert iam["principalOrgId"] is None
    assert "POST   /items/a%20b  200" in in_process.out.getvalue()

    binary = in_process.session.post(
        f"{in_process.api.url}/items/1", data=b"\x00\x01", headers={"Content-Type": "application/octet-stream"}
    )
    assert binary.json()["event"]["isBase64Encoded"] is True
    assert binary.json()["event"]["body"] == "AAE="

    plain = in_process.session.get(f"{in_process.api.url}/plain", timeout=5)
    assert (plain.status_code, plain.json()) == (200, {"plain": True})


def test_chunked_bodies_reach_the_handler_and_malformed_ones_are_400(in_process: _InProcess) -> None:
    response = in_process.session.post(
        f"{in_process.api.url}/items/1",
        data=iter([b'{"k":', b' "v"}']),
        headers={"Content-Type": "application/json"},
        timeout=5,
    )
    assert response.request.headers["Transfer-Encoding"] == "chunked"
    assert json.loads(response.json()["event"]["body"]) == {"k": "v"}

    with socket.create_connection(("127.0.0.1", in_process.api.port), timeout=5) as sock:
        sock.sendall(b"POST /items/1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400")
    assert b"Connection: close" in head
    assert json.loads(body)["detail"] == "Malformed chunked body"


def test_a_crashing_handler_answers_500_without_its_trace(in_process: _InProcess) -> None:
    response = in_process.session.get(f"{in_process.api.url}/crash", timeout=5)
    assert response.status_code == 500
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json()["status"] == 500
    assert "boom" not in response.text
    assert "Traceback" not in response.text
    assert "RuntimeError: boom" in in_process.err.getvalue()
    assert "GET    /crash  500" in in_process.out.getvalue()


def test_schedules_fire_with_their_input_scaled(in_process: _InProcess) -> None:
    out = io.StringIO()
    scheduler = Scheduler(in_process.model.schedules, in_process.runtime.invoke, Console(out, out), scale=60)
    scheduler.start()
    try:
        wait_until(lambda: "schedule EchoFunctionTick (tick)  ok" in out.getvalue(), 5, "the scheduled run")
    finally:
        scheduler.stop()
    wait_until(lambda: {"job": "tick"} in echoed_events(in_process.out), 5, "the echoed event")


def _exit_code(process: subprocess.Popen[str] | subprocess.Popen[bytes], within: float) -> int:
    """``process``'s exit code once it exits; if it has not within ``within`` seconds (the test failed
    before it could stop it), its process group is killed first, so a failure never hangs the run."""
    try:
        return process.wait(timeout=within)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        return process.wait()


def _read_until(fd: int, output: bytearray, done: Callable[[], bool], timeout: float) -> None:
    """Read a pty's output into ``output`` until ``done()`` or its end (``timeout`` only guards a hang)."""
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        if select.select([fd], [], [], 0.2)[0]:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the pty closed: every process on it exited
                return
            if not chunk:
                return
            output.extend(chunk)


@pytest.mark.skipif(
    shutil.which("make") is None or shutil.which("setsid") is None or not hasattr(os, "openpty"),
    reason="needs make, setsid and a pty",
)
def test_ctrl_c_in_a_terminal_stops_make_dev_with_status_0() -> None:
    # make dev in a terminal of its own (a pty), with this venv's Python and no install step
    ports = [free_port() for _ in range(3)]
    args = f"--api-port {ports[0]} --moto-port {ports[1]} --zus-port {ports[2]} --schedule-scale 0"
    command = ["make", "-s", "-C", str(ROOT), "dev", "STAMP=", f"BIN={Path(sys.executable).parent}", f"ARGS={args}"]
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "ZUS_M2M_", "MAKE"))}
    # Started as a shell would in that terminal: a session of its own whose controlling terminal is the
    # pty (setsid --ctty). Not pty.fork(): a fork of this multi-threaded process can deadlock before exec.
    fd, terminal = pty.openpty()
    make = subprocess.Popen(
        ["setsid", "--ctty", "--wait", *command], stdin=terminal, stdout=terminal, stderr=terminal, env=env
    )
    os.close(terminal)
    output = bytearray()
    try:
        _read_until(fd, output, lambda: b"ready in " in output, 120)
        assert b"ready in " in output, output.decode(errors="replace")

        os.write(fd, b"\x03")  # Ctrl-C: the terminal sends SIGINT to its foreground process group

        _read_until(fd, output, lambda: False, 30)
    finally:
        code = _exit_code(make, within=30)
        os.close(fd)
    text = output.decode(errors="replace")
    assert code == 0, text
    assert "stopped" in text
    assert "Error" not in text
    assert "Interrupt" not in text


@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM])
def test_without_a_terminal_the_stack_exits_0_after_a_signal_to_its_process_group(
    stack_factory: Callable[..., StackProcess], signal_number: int
) -> None:
    """What a process manager or CI does (no terminal): the signal to the whole process group of the
    stack (python -m zus_local, as docs/contract.md tells supervisors to run it); it stops what it
    started and exits 0. (make itself, signalled, always dies of the signal: see README.)"""
    stack = stack_factory(["--schedule-scale", "0"])
    os.killpg(stack.process.pid, signal_number)
    code = _exit_code(stack.process, within=30)
    stack.drained()
    assert code == 0, stack.output
    assert "stopped" in stack.lines
    for port in stack.ports:  # everything it started is gone: nothing listens on its ports
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # connections in TIME_WAIT do not count
            probe.bind(("127.0.0.1", port))


def test_an_assumed_roles_temporary_credentials_sign_as_the_role_session(
    in_process: _InProcess, moto_endpoint: str
) -> None:
    iam = boto3.client("iam", endpoint_url=moto_endpoint, region_name="us-east-1")
    trust = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}],
    }
    try:
        role = iam.create_role(RoleName="echo-service", Path="/team/", AssumeRolePolicyDocument=json.dumps(trust))
    except iam.exceptions.EntityAlreadyExistsException:
        role = iam.get_role(RoleName="echo-service")
    only_plain = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "execute-api:Invoke", "Resource": "arn:aws:execute-api:*:*:*/*/GET/plain"}
        ],
    }
    iam.put_role_policy(RoleName="echo-service", PolicyName="invoke", PolicyDocument=json.dumps(only_plain))
    sts = boto3.client("sts", endpoint_url=moto_endpoint, region_name="us-east-1")
    assumed = sts.assume_role(RoleArn=role["Role"]["Arn"], RoleSessionName="task-7")["Credentials"]
    session = requests.Session()
    session.auth = ExecuteApiAuth(assumed["AccessKeyId"], assumed["SecretAccessKey"], assumed["SessionToken"])

    plain = session.get(f"{in_process.api.url}/plain", timeout=5)
    crash = session.get(f"{in_process.api.url}/crash", timeout=5)
    wrong_token = requests.Session()
    wrong_token.auth = ExecuteApiAuth(assumed["AccessKeyId"], assumed["SecretAccessKey"], "not-the-session-token")
    refused = wrong_token.get(f"{in_process.api.url}/plain", timeout=5)

    assert plain.status_code == 200, plain.text
    wait_until(lambda: any(e.get("rawPath") == "/plain" for e in echoed_events(in_process.out)), 5, "the echoed event")
    iam_block = [e for e in echoed_events(in_process.out) if e.get("rawPath") == "/plain"][-1]["requestContext"][
        "authorizer"
    ]["iam"]
    assert iam_block["userArn"] == "arn:aws:sts::123456789012:assumed-role/echo-service/task-7"
    assert iam_block["userId"] == f"{role['Role']['RoleId']}:task-7"
    assert iam_block["accessKey"] == assumed["AccessKeyId"]
    assert crash.status_code == 403  # its policy allows GET /plain only
    assert crash.json()["Message"].startswith("User: arn:aws:sts::123456789012:assumed-role/echo-service/task-7 is not")
    assert (refused.status_code, refused.json()) == (
        403,
        {"message": "The security token included in the request is invalid."},
    )
