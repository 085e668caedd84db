"""An in-memory fake of the secret store (``SecretStore``), with Secrets Manager's versions and stages."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from zus_m2m import errors
from zus_m2m.values import (
    ClientCredentials,
    SecretDescription,
)


@dataclass
class FakeSecret:
    arn: str
    tags: dict[str, str]
    kms_key_id: str
    created: float
    # version id -> (credentials, stages)
    versions: dict[str, tuple[ClientCredentials | None, list[str]]] = field(default_factory=dict)
    deleted: bool = False
    recovery_window_days: int | None = None
    rotation_arn: str | None = None
    rotation_days: int | None = None
    last_rotated: float | None = None
    idempotency_key: str = ""


class FakeSecretStore:
    """Secrets Manager in memory, with its stage rules: one version per stage, AWSPREVIOUS follows
    AWSCURRENT, a started rotation adds a value-less AWSPENDING version, a rotation in progress
    (AWSPENDING off AWSCURRENT) refuses another; scheduled deletion, rotation settings."""

    def __init__(self, clock: Callable[[], float] = lambda: 1_000_000.0) -> None:
        self.secrets: dict[str, FakeSecret] = {}
        self.clock = clock
        self.calls: list[tuple[str, str]] = []
        self.rotations_started: list[tuple[str, str | None]] = []
        self.lock = threading.Lock()
        self.changed: dict[str, float] = {}
        self.rotation_count = 0
        self.policies: dict[str, str] = {}

    def _stage(self, secret: FakeSecret, stage: str) -> tuple[str, ClientCredentials | None] | None:
        for version, (credentials, stages) in secret.versions.items():
            if stage in stages:
                return version, credentials
        return None

    def read(
        self, secret_id: str, stage: str, *, fresh: bool = False, current_version: str | None = None
    ) -> ClientCredentials | None:
        secret = self.secrets.get(secret_id)
        if secret is None or secret.deleted:
            return None
        found = self._stage(secret, stage)
        return replace(found[1], version_id=found[0]) if found and found[1] else None

    def create(
        self, name: str, credentials: ClientCredentials, *, kms_key_id: str, tags: dict[str, str], idempotency_key: str
    ) -> str:
        with self.lock:
            self.calls.append(("create", name))
            if name in self.secrets:
                return self.secrets[name].arn
            secret = FakeSecret(
                arn=f"arn:aws:secretsmanager:us-east-1:123456789012:secret:{name}-AbCdEf",
                tags=dict(tags),
                kms_key_id=kms_key_id,
                created=self.clock(),
                idempotency_key=idempotency_key,
            )
            secret.versions[idempotency_key] = (credentials, ["AWSCURRENT"])
            self.secrets[name] = secret
            return secret.arn

    def describe(self, secret_id: str) -> SecretDescription | None:
        secret = self.secrets.get(secret_id)
        if secret is None:
            return None
        next_rotation = None
        if secret.rotation_days and secret.last_rotated:
            next_rotation = secret.last_rotated + secret.rotation_days * 86400
        return SecretDescription(
            arn=secret.arn,
            name=secret_id,
            tags=dict(secret.tags),
            rotation_enabled=secret.rotation_arn is not None,
            versions={version: list(stages) for version, (_, stages) in secret.versions.items()},
            last_rotated=secret.last_rotated,
            next_rotation=next_rotation,
            created=secret.created,
            deleted=secret.deleted,
            last_changed=self.changed.get(secret_id, secret.created),
        )

    def put_current(self, secret_id: str, credentials: ClientCredentials, version_id: str) -> None:
        self.calls.append(("put_current", secret_id))
        secret = self.secrets[secret_id]
        for version, (value, stages) in list(secret.versions.items()):
            if "AWSPREVIOUS" in stages:
                stages.remove("AWSPREVIOUS")
            if "AWSCURRENT" in stages:
                stages.remove("AWSCURRENT")
                stages.append("AWSPREVIOUS")
            secret.versions[version] = (value, stages)
        secret.versions[version_id] = (credentials, ["AWSCURRENT"])

    def restore(self, secret_id: str) -> None:
        self.calls.append(("restore", secret_id))
        secret = self.secrets[secret_id]
        secret.deleted = False
        secret.recovery_window_days = None

    def resource_policy(self, secret_id: str) -> str | None:
        return self.policies.get(secret_id)

    def put_resource_policy(self, secret_id: str, policy: str) -> None:
        self.calls.append(("put_resource_policy", secret_id))
        self.policies[secret_id] = policy

    def configure_rotation(self, secret_id: str, rotation_function_arn: str, interval_days: int) -> None:
        self.calls.append(("configure_rotation", secret_id))
        secret = self.secrets[secret_id]
        secret.rotation_arn = rotation_function_arn
        secret.rotation_days = interval_days

    def schedule_deletion(self, secret_id: str, recovery_window_days: int) -> None:
        self.calls.append(("schedule_deletion", secret_id))
        secret = self.secrets[secret_id]
        if secret.deleted:
            raise errors.StoreUnavailable("scheduling the secret's deletion failed: InvalidRequestException")
        secret.deleted = True
        secret.recovery_window_days = recovery_window_days

    def _touch(self, secret_id: str) -> None:
        self.changed[secret_id] = self.clock()

    @staticmethod
    def _drop_label(secret: FakeSecret, stage: str) -> None:
        for version, (value, stages) in list(secret.versions.items()):
            secret.versions[version] = (value, [s for s in stages if s != stage])

    def read_version(self, secret_id: str, version_id: str) -> ClientCredentials | None:
        secret = self.secrets.get(secret_id)
        entry = secret.versions.get(version_id) if secret is not None else None
        return replace(entry[0], version_id=version_id) if entry is not None and entry[0] else None

    def put_pending(self, secret_id: str, credentials: ClientCredentials, version_id: str) -> None:
        self.calls.append(("put_pending", secret_id))
        secret = self.secrets[secret_id]
        value, stages = secret.versions.get(version_id, (None, []))
        if value is not None and value != credentials:
            raise errors.StoreUnavailable("storing the pending client secret failed: ResourceExistsException")
        self._drop_label(secret, "AWSPENDING")
        stages = secret.versions.get(version_id, (None, []))[1]
        secret.versions[version_id] = (credentials, [*stages, "AWSPENDING"])
        self._touch(secret_id)

    def move_stage(self, secret_id: str, stage: str, to_version: str, from_version: str | None) -> None:
        self.calls.append((f"move_stage {stage}", secret_id))
        secret = self.secrets[secret_id]
        holder = next((v for v, (_, stages) in secret.versions.items() if stage in stages), None)
        if holder is not None and holder != from_version:
            raise errors.StoreUnavailable(f"moving {stage} failed: InvalidParameterException")
        if stage == "AWSCURRENT" and from_version is not None:
            self._drop_label(secret, "AWSPREVIOUS")
            value, stages = secret.versions[from_version]
            secret.versions[from_version] = (value, [*stages, "AWSPREVIOUS"])
        self._drop_label(secret, stage)
        value, stages = secret.versions[to_version]
        secret.versions[to_version] = (value, [*stages, stage])
        self._touch(secret_id)

    def remove_stage(self, secret_id: str, stage: str, from_version: str) -> None:
        self.calls.append((f"remove_stage {stage}", secret_id))
        secret = self.secrets[secret_id]
        value, stages = secret.versions[from_version]
        if stage not in stages:
            raise errors.StoreUnavailable(f"removing {stage} failed: InvalidParameterException")
        secret.versions[from_version] = (value, [s for s in stages if s != stage])
        self._touch(secret_id)

    def start_rotation(self, secret_id: str, rotation_function_arn: str | None) -> None:
        self.rotations_started.append((secret_id, rotation_function_arn))
        secret = self.secrets[secret_id]
        description = self.describe(secret_id)
        if description is not None and description.rotation_in_progress:
            raise errors.StoreUnavailable("starting a rotation failed: InvalidRequestException")
        self.rotation_count += 1
        self._drop_label(secret, "AWSPENDING")
        secret.versions[f"rotation-{self.rotation_count}"] = (None, ["AWSPENDING"])
        secret.rotation_arn = rotation_function_arn or secret.rotation_arn
        secret.last_rotated = self.clock()

    def cancel_rotation(self, secret_id: str) -> None:
        self.calls.append(("cancel_rotation", secret_id))
        secret = self.secrets[secret_id]
        if secret.deleted or secret.rotation_arn is None:
            raise errors.StoreUnavailable("cancelling a rotation failed: InvalidRequestException")
        secret.rotation_arn = None

    def pending_version(self, secret_id: str) -> str | None:
        description = self.describe(secret_id)
        return description.version_at("AWSPENDING") if description is not None else None
