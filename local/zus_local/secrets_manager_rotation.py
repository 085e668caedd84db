"""Secrets Manager's part in a rotation, played locally: moto cannot invoke a rotation Lambda.

What the real service does when a rotation starts (RotateSecret, the console's "rotate immediately",
or a rotation schedule): it adds a version named by a fresh ClientRequestToken, labelled AWSPENDING and
holding no value, then invokes the rotation function with ``createSecret``, ``setSecret``,
``testSecret`` and ``finishSecret`` in turn, retrying a step that fails.

moto does the first half: ``rotate_secret`` adds that value-less AWSPENDING version (provided the
rotation function's ARN names a function moto knows; see ``register_rotation_function``) and stops
there. The local stack and the tests do the second half with this module:

* ``find_started_rotations(secretsmanager)`` lists the rotations moto started and nobody drove yet:
  an AWSPENDING version with no value on a version that is not AWSCURRENT. (Once ``createSecret``
  stored a value, a rotation is in a function's hands; one that died there is the scheduled sweep's
  to repair, as in the real service.)
* ``drive_rotation(invoke_step, secret_id, token)`` invokes the four steps in order with the event the
  real service sends, retrying a failed step.
* ``play_started_rotations`` combines both for a polling loop; it drives each rotation once.

Only AWS API metadata, step names and error types are logged here; never a secret value.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import time
import zipfile
from collections.abc import Callable
from typing import Any

import boto3
import requests
from botocore.exceptions import ClientError

from zus_m2m.rotation.steps import STEPS
from zus_m2m.values import rotation_started

logger = logging.getLogger(__name__)

InvokeStep = Callable[[dict[str, str]], object]


def drive_rotation(
    invoke_step: InvokeStep,
    secret_id: str,
    token: str,
    retries: int = 3,
    *,
    pause: float = 0.2,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Invoke the four steps in order, each up to ``1 + retries`` times; re-raise a step's last error
    (the rotation then fails with AWSPENDING left on the new version, as in the real service)."""
    for step in STEPS:
        event = {"Step": step, "SecretId": secret_id, "ClientRequestToken": token}
        for attempt in range(retries + 1):
            try:
                invoke_step(dict(event))
                break
            except Exception as exc:
                where = {"step": step, "secret": secret_id, "version": token, "attempt": attempt + 1}
                if attempt == retries:
                    logger.error("rotation step failed; giving up", extra={**where, "error": type(exc).__name__})
                    raise
                logger.warning("rotation step failed; retrying", extra={**where, "error": type(exc).__name__})
                sleep(pause * 2**attempt)


def find_started_rotations(secretsmanager: Any) -> list[tuple[str, str]]:
    """(secret ARN, ClientRequestToken) of every rotation started and not yet driven: AWSPENDING with
    no value, on a version that is not AWSCURRENT."""
    found: list[tuple[str, str]] = []
    for page in secretsmanager.get_paginator("list_secrets").paginate():
        for entry in page.get("SecretList", []):
            # ListSecrets calls the map SecretVersionsToStages (DescribeSecret: VersionIdsToStages).
            versions = entry.get("SecretVersionsToStages") or entry.get("VersionIdsToStages") or {}
            for version, stages in versions.items():
                if rotation_started(stages) and not _has_value(secretsmanager, entry["ARN"], version):
                    found.append((entry["ARN"], version))
    return found


def play_started_rotations(
    secretsmanager: Any, invoke_step: InvokeStep, driven: set[tuple[str, str]], retries: int = 3
) -> list[tuple[str, str]]:
    """One pass of a polling loop: drive every started rotation not in ``driven`` (and add it there).
    Returns the rotations driven by this pass; a rotation that failed is not retried by later passes."""
    started = [rotation for rotation in find_started_rotations(secretsmanager) if rotation not in driven]
    for secret_id, token in started:
        driven.add((secret_id, token))
        # drive_rotation logs a failure; the next rotation still runs.
        with contextlib.suppress(Exception):
            drive_rotation(invoke_step, secret_id, token, retries)
    return started


def _has_value(secretsmanager: Any, secret_id: str, version: str) -> bool:
    try:
        secretsmanager.get_secret_value(SecretId=secret_id, VersionId=version)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            return False
        raise
    return True


def register_rotation_function(endpoint_url: str, function: str, region: str = "us-east-1") -> str:
    """Make moto (server mode, at ``endpoint_url``) accept ``function`` as a rotation function.

    moto's RotateSecret with a RotationLambdaARN looks the function up and invokes each step; without
    one, it moves AWSCURRENT to the new, value-less version (the real service requires a function).
    So: a placeholder function of that name, and moto's Lambda set not to use Docker (its invocations
    then do nothing); the local stack then plays the real invocations. Idempotent; call it again after
    a ``/moto-api/reset``. ``function`` is a name or an ARN; returns the function's ARN.
    """
    requests.post(
        f"{endpoint_url}/moto-api/config", json={"lambda": {"use_docker": False}}, timeout=10
    ).raise_for_status()
    name = function.split(":")[6] if function.startswith("arn:") else function
    lambda_client = boto3.client("lambda", endpoint_url=endpoint_url, region_name=region)
    try:
        return str(lambda_client.get_function(FunctionName=name)["Configuration"]["FunctionArn"])
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
            raise
    iam = boto3.client("iam", endpoint_url=endpoint_url, region_name=region)
    role_name = "zus-m2m-local-rotation"
    try:
        role_arn = iam.get_role(RoleName=role_name)["Role"]["Arn"]
    except ClientError:
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
            ],
        }
        role_arn = iam.create_role(RoleName=role_name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("app.py", "def lambda_handler(event, context):\n    return None\n")
    created = lambda_client.create_function(
        FunctionName=name,
        Runtime="python3.13",
        Role=role_arn,
        Handler="app.lambda_handler",
        Code={"ZipFile": archive.getvalue()},
        Description="placeholder: the local stack plays Secrets Manager's invocations of the rotation function",
    )
    return str(created["FunctionArn"])
