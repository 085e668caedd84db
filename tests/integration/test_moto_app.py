"""The project's moto (``zus_local.moto_app``) keeps Secrets Manager's rotation bookkeeping as the real
service does, since the service's code relies on the real behaviour alone. Driven with boto3 over HTTP."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from integration_support import Aws

SECRET = "zus-m2m/test/moto-app"
FIRST = json.dumps({"clientId": "c", "clientSecret": "first"})
SECOND = json.dumps({"clientId": "c", "clientSecret": "second"})


@pytest.fixture
def sm(aws: Aws, rotation_function_arn: str) -> Any:
    """moto's Secrets Manager with one secret whose AWSCURRENT holds FIRST."""
    aws.secretsmanager.create_secret(Name=SECRET, SecretString=FIRST)
    return aws.secretsmanager


def stages(sm: Any) -> dict[str, list[str]]:
    versions = sm.describe_secret(SecretId=SECRET)["VersionIdsToStages"]
    return {version: sorted(labels) for version, labels in versions.items() if labels}


def version_at(sm: Any, stage: str) -> str | None:
    return next((version for version, labels in stages(sm).items() if stage in labels), None)


def rotate(sm: Any, function_arn: str, **options: Any) -> str:
    """RotateSecret now; returns the new AWSPENDING version."""
    sm.rotate_secret(SecretId=SECRET, RotationLambdaARN=function_arn, RotateImmediately=True, **options)
    pending = version_at(sm, "AWSPENDING")
    assert pending is not None
    return pending


def finish(sm: Any, version: str, value: str = SECOND) -> None:
    """What createSecret and finishSecret do, leaving AWSPENDING on the new current version."""
    sm.put_secret_value(SecretId=SECRET, ClientRequestToken=version, SecretString=value, VersionStages=["AWSPENDING"])
    current = version_at(sm, "AWSCURRENT")
    sm.update_secret_version_stage(
        SecretId=SECRET, VersionStage="AWSCURRENT", MoveToVersionId=version, RemoveFromVersionId=current
    )


def test_a_rotation_in_progress_refuses_another(sm: Any, rotation_function_arn: str) -> None:
    pending = rotate(sm, rotation_function_arn)

    with pytest.raises(sm.exceptions.InvalidRequestException, match="previous rotation"):
        sm.rotate_secret(SecretId=SECRET, RotationLambdaARN=rotation_function_arn, RotateImmediately=True)

    assert version_at(sm, "AWSPENDING") == pending


def test_a_finished_rotations_pending_label_does_not_block_the_next_rotation(
    sm: Any, rotation_function_arn: str
) -> None:
    first = rotate(sm, rotation_function_arn)
    finish(sm, first)
    assert stages(sm)[first] == ["AWSCURRENT", "AWSPENDING"]

    second = rotate(sm, rotation_function_arn)

    assert second != first
    assert stages(sm)[first] == ["AWSCURRENT"]
    assert stages(sm)[second] == ["AWSPENDING"]


def test_rotate_secret_turns_rotation_on(sm: Any, rotation_function_arn: str) -> None:
    rotate(sm, rotation_function_arn)

    assert sm.describe_secret(SecretId=SECRET)["RotationEnabled"] is True


def test_configuring_rotation_without_rotating_leaves_no_rotation_in_progress(
    sm: Any, rotation_function_arn: str
) -> None:
    before = stages(sm)

    sm.rotate_secret(
        SecretId=SECRET,
        RotationLambdaARN=rotation_function_arn,
        RotationRules={"AutomaticallyAfterDays": 30},
        RotateImmediately=False,
    )

    assert stages(sm) == before
    assert sm.describe_secret(SecretId=SECRET)["RotationEnabled"] is True
    rotate(sm, rotation_function_arn)  # and a rotation can start


def test_a_versions_value_never_changes(sm: Any, rotation_function_arn: str) -> None:
    pending = rotate(sm, rotation_function_arn)
    put = {"SecretId": SECRET, "ClientRequestToken": pending, "VersionStages": ["AWSPENDING"]}
    sm.put_secret_value(SecretString=SECOND, **put)  # the value-less new version takes its value

    sm.put_secret_value(SecretString=SECOND, **put)  # the same again: a no-op
    with pytest.raises(sm.exceptions.ResourceExistsException):
        sm.put_secret_value(SecretString=json.dumps({"clientId": "c", "clientSecret": "other"}), **put)

    assert sm.get_secret_value(SecretId=SECRET, VersionId=pending)["SecretString"] == SECOND


def test_an_unstaged_read_answers_awscurrent(sm: Any, rotation_function_arn: str) -> None:
    pending = rotate(sm, rotation_function_arn)
    assert sm.get_secret_value(SecretId=SECRET)["SecretString"] == FIRST  # not the value-less new version

    finish(sm, pending)

    assert sm.get_secret_value(SecretId=SECRET)["SecretString"] == SECOND


def test_a_new_current_version_takes_the_label_never_two_awscurrent(sm: Any, rotation_function_arn: str) -> None:
    pending = rotate(sm, rotation_function_arn)
    first = version_at(sm, "AWSCURRENT")
    assert first is not None

    sm.put_secret_value(SecretId=SECRET, SecretString=SECOND)  # a new AWSCURRENT version during the rotation

    labels = stages(sm)
    assert sorted(labels.values()) == [["AWSCURRENT"], ["AWSPENDING"], ["AWSPREVIOUS"]]
    assert labels[first] == ["AWSPREVIOUS"]
    assert labels[pending] == ["AWSPENDING"]
    assert sm.get_secret_value(SecretId=SECRET, VersionStage="AWSCURRENT")["SecretString"] == SECOND


def test_a_rotation_schedules_the_next_one_from_itself(sm: Any, rotation_function_arn: str) -> None:
    sm.rotate_secret(
        SecretId=SECRET,
        RotationLambdaARN=rotation_function_arn,
        RotationRules={"AutomaticallyAfterDays": 30},
        RotateImmediately=False,
    )
    configured = sm.describe_secret(SecretId=SECRET)["NextRotationDate"]
    # a second later (moto's dates are whole seconds)
    while int(time.time()) <= configured.timestamp() - 30 * 86400:
        time.sleep(0.05)

    rotate(sm, rotation_function_arn)

    rotated = sm.describe_secret(SecretId=SECRET)
    assert rotated["NextRotationDate"] > configured
    assert rotated["NextRotationDate"].timestamp() == rotated["LastRotatedDate"].timestamp() + 30 * 86400
