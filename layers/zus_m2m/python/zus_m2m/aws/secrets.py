"""Secrets Manager adapter: client credentials by version stage (reads through a short cache),
and every write the service makes to a client's secret.

Powertools Parameters caches by secret name alone and drops the version stage from its cache key,
so a read of AWSPENDING would overwrite the cached AWSCURRENT; this adapter keys its cache by
(secret, stage) instead, and every read names the stage (or the version) it means.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from zus_m2m.aws._errors import answer_or_none, error_code, translated
from zus_m2m.errors import ResourceConflict
from zus_m2m.ports import Clock
from zus_m2m.values import AWSCURRENT, AWSPENDING, ClientCredentials, SecretDescription

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager.client import SecretsManagerClient


# Secrets Manager's answers for a secret, a stage or a version that is not (or no longer) there; a
# rotation's new version holds no value until createSecret stores one, and reads as not there.
_ABSENT = ("ResourceNotFoundException", "InvalidRequestException")


class SecretsManagerStore:
    def __init__(self, secretsmanager: SecretsManagerClient, max_age: float = 60.0, clock: Clock = time.time):
        self._sm = secretsmanager
        self._max_age = max_age
        self._clock = clock
        self._cache: dict[tuple[str, str], tuple[float, ClientCredentials | None]] = {}
        self._lock = threading.Lock()

    # --- reads --------------------------------------------------------------------------------

    def read(
        self, secret_id: str, stage: str, *, fresh: bool = False, current_version: str | None = None
    ) -> ClientCredentials | None:
        key = (secret_id, stage)
        now = self._clock()
        with self._lock:
            cached = self._cache.get(key)
        # A version's value never changes: the version the caller knows is current (the worker's pre-refresh
        # knows the one that minted the token it renews) is answered from this container's cache, one read
        # per container and version instead of one per pre-refresh. Refused at Zus, it is read afresh.
        if cached is not None and not fresh and (now - cached[0] < self._max_age or _is(cached[1], current_version)):
            return cached[1]
        credentials = self._value("reading a client secret", secret_id, VersionStage=stage)
        with self._lock:
            self._cache[key] = (now, credentials)
        return credentials

    def read_version(self, secret_id: str, version_id: str) -> ClientCredentials | None:
        return self._value("reading a client secret version", secret_id, VersionId=version_id)

    def describe(self, secret_id: str) -> SecretDescription | None:
        response = self._absent_as_none(
            "describing a client secret", lambda: self._sm.describe_secret(SecretId=secret_id)
        )
        return None if response is None else _description(response)

    def forget(self, secret_id: str) -> None:
        with self._lock:
            for key in [key for key in self._cache if key[0] == secret_id]:
                del self._cache[key]

    def _value(self, operation: str, secret_id: str, **version: str) -> ClientCredentials | None:
        response = self._absent_as_none(operation, lambda: self._sm.get_secret_value(SecretId=secret_id, **version))
        # A version with no value (a rotation's new version before createSecret) answers no value.
        text = response.get("SecretString") if response is not None else None
        if not text:
            return None
        created = response.get("CreatedDate")
        stored_at = created.timestamp() if isinstance(created, datetime) else None
        return ClientCredentials.from_json(
            text, secret_id, version_id=str(response.get("VersionId") or ""), stored_at=stored_at
        )

    def _absent_as_none(self, operation: str, request: Callable[[], Any]) -> Any:
        return answer_or_none(operation, request, none_when=_ABSENT)

    # --- writes -------------------------------------------------------------------------------

    def create(
        self, name: str, credentials: ClientCredentials, *, kms_key_id: str, tags: dict[str, str], idempotency_key: str
    ) -> str:
        options: dict[str, Any] = {"KmsKeyId": kms_key_id} if kms_key_id else {}
        with translated("creating a client secret"):
            try:
                response = self._sm.create_secret(
                    Name=name,
                    ClientRequestToken=idempotency_key,
                    SecretString=credentials.to_json(),
                    Tags=[{"Key": key, "Value": value} for key, value in sorted(tags.items())],
                    Description=f"Zus M2M app client {credentials.name} (managed by zus-m2m)",
                    **options,
                )
            except ClientError as exc:
                if error_code(exc) != "ResourceExistsException":
                    raise
                # A retry of the same create: Secrets Manager keeps the first value; return its ARN.
                return self._sm.describe_secret(SecretId=name)["ARN"]
        self.forget(name)
        return response["ARN"]

    def put_current(self, secret_id: str, credentials: ClientCredentials, version_id: str) -> None:
        """Store credentials as a new version at AWSCURRENT (the previous one becomes AWSPREVIOUS)."""
        self._put("storing a client secret", secret_id, credentials, version_id, AWSCURRENT)

    def put_pending(self, secret_id: str, credentials: ClientCredentials, version_id: str) -> None:
        self._put("storing the pending client secret", secret_id, credentials, version_id, AWSPENDING)

    def move_stage(self, secret_id: str, stage: str, to_version: str, from_version: str | None) -> None:
        options = {"RemoveFromVersionId": from_version} if from_version else {}
        with translated(f"moving {stage}"):
            self._sm.update_secret_version_stage(
                SecretId=secret_id, VersionStage=stage, MoveToVersionId=to_version, **options
            )
        self.forget(secret_id)

    def remove_stage(self, secret_id: str, stage: str, from_version: str) -> None:
        with translated(f"removing {stage}"):
            self._sm.update_secret_version_stage(
                SecretId=secret_id, VersionStage=stage, RemoveFromVersionId=from_version
            )
        self.forget(secret_id)

    def configure_rotation(self, secret_id: str, rotation_function_arn: str, interval_days: int) -> None:
        """Turn on scheduled rotation by the rotation function, without rotating now (Secrets Manager
        then only tests the configuration: it invokes testSecret on a version that holds no value)."""
        with translated("configuring rotation"):
            self._sm.rotate_secret(
                SecretId=secret_id,
                RotationLambdaARN=rotation_function_arn,
                RotationRules={"AutomaticallyAfterDays": interval_days},
                RotateImmediately=False,
            )
        self.forget(secret_id)

    def start_rotation(self, secret_id: str, rotation_function_arn: str | None) -> None:
        """Ask Secrets Manager to rotate now. Deployed, it invokes the rotation function; locally the
        local stack sees the new AWSPENDING version and plays Secrets Manager's part."""
        options: dict[str, Any] = {"RotationLambdaARN": rotation_function_arn} if rotation_function_arn else {}
        with translated("starting a rotation"):
            try:
                self._sm.rotate_secret(SecretId=secret_id, RotateImmediately=True, **options)
            except ClientError as exc:
                # Secrets Manager's own guard ("A previous rotation isn't complete"): a request that
                # raced another one to start a rotation lost; that is a conflict, not an outage.
                if error_code(exc) == "InvalidRequestException":
                    raise ResourceConflict("a rotation of this secret is already in progress") from exc
                raise

    def cancel_rotation(self, secret_id: str) -> None:
        with translated("cancelling a rotation"):
            self._sm.cancel_rotate_secret(SecretId=secret_id)
        self.forget(secret_id)

    def schedule_deletion(self, secret_id: str, recovery_window_days: int) -> None:
        with translated("scheduling the secret's deletion"):
            self._sm.delete_secret(SecretId=secret_id, RecoveryWindowInDays=recovery_window_days)
        self.forget(secret_id)

    def restore(self, secret_id: str) -> None:
        """Cancel a scheduled deletion (a client of the same name is being provisioned again)."""
        with translated("restoring a client secret"):
            self._sm.restore_secret(SecretId=secret_id)
        self.forget(secret_id)

    def resource_policy(self, secret_id: str) -> str | None:
        with translated("reading a secret's resource policy"):
            policy = self._sm.get_resource_policy(SecretId=secret_id).get("ResourcePolicy")
        return str(policy) if policy else None

    def put_resource_policy(self, secret_id: str, policy: str) -> None:
        with translated("putting a secret's resource policy"):
            self._sm.put_resource_policy(SecretId=secret_id, ResourcePolicy=policy, BlockPublicPolicy=True)

    def _put(self, operation: str, secret_id: str, credentials: ClientCredentials, version_id: str, stage: str) -> None:
        with translated(operation):
            self._sm.put_secret_value(
                SecretId=secret_id,
                ClientRequestToken=version_id,
                SecretString=credentials.to_json(),
                VersionStages=[stage],
            )
        self.forget(secret_id)


def _timestamp(value: Any) -> float | None:
    return value.timestamp() if isinstance(value, datetime) else None


def _description(response: Any) -> SecretDescription:
    return SecretDescription(
        arn=response["ARN"],
        name=response["Name"],
        tags={tag["Key"]: tag["Value"] for tag in response.get("Tags", [])},
        rotation_enabled=bool(response.get("RotationEnabled", False)),
        versions={version: list(stages) for version, stages in (response.get("VersionIdsToStages") or {}).items()},
        last_rotated=_timestamp(response.get("LastRotatedDate")),
        next_rotation=_timestamp(response.get("NextRotationDate")),
        created=_timestamp(response.get("CreatedDate")),
        deleted=response.get("DeletedDate") is not None,
        last_changed=_timestamp(response.get("LastChangedDate")),
    )


def _is(credentials: ClientCredentials | None, version_id: str | None) -> bool:
    return credentials is not None and bool(version_id) and credentials.version_id == version_id
