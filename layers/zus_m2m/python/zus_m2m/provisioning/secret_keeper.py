"""A client's secret in Secrets Manager: stored once however often a create is retried, found again
after an interrupted create, put under rotation, proven with a token, and taken out of rotation when
the client is retired."""

from __future__ import annotations

import time
import uuid
from dataclasses import KW_ONLY, dataclass

from zus_m2m import errors
from zus_m2m.admin_values import AppClient
from zus_m2m.ports import Clock, SecretStore, Sleep, TokenIssuer, ZusAdmin
from zus_m2m.provisioning.policy import ProvisioningPolicy
from zus_m2m.tokens.patience import issue_patiently
from zus_m2m.values import AWSCURRENT, AWSPENDING, ClientCredentials, SecretDescription

_NAMESPACE = uuid.UUID("5b0c7f5e-52a4-4f3e-9a43-0d1b8e0f6a11")


def idempotency_key(name: str, app_client_id: str) -> str:
    """The idempotency key of a secret's creation: the same client always yields the same key."""
    return str(uuid.uuid5(_NAMESPACE, f"{name}\n{app_client_id}"))


@dataclass(eq=False)
class SecretKeeper:
    secrets: SecretStore
    zus: ZusAdmin
    issuer: TokenIssuer
    policy: ProvisioningPolicy
    _: KW_ONLY
    clock: Clock = time.time
    sleep: Sleep = time.sleep

    def live(self, name: str) -> SecretDescription | None:
        """The client's secret, unless it does not exist or is scheduled for deletion."""
        description = self.secrets.describe(self.policy.naming.secret_id(name))
        return description if description is not None and not description.deleted else None

    def stored_secret(self, name: str, app_client: AppClient) -> str | None:
        """The secret an interrupted create stored for ``app_client`` before it died, if it is there."""
        if self.live(name) is None:
            return None
        stored = self.secrets.read(self.policy.naming.secret_id(name), AWSCURRENT, fresh=True)
        if stored is not None and (stored.app_client_id, stored.client_id) == (app_client.id, app_client.client_id):
            return stored.client_secret
        return None

    def store(self, credentials: ClientCredentials) -> str:
        """Store the credentials as the secret's current version; idempotent. Returns the secret's ARN."""
        secret_id = self.policy.naming.secret_id(credentials.name)
        description = self.secrets.describe(secret_id)
        if description is None:
            arn = self.secrets.create(
                secret_id,
                credentials,
                kms_key_id=self.policy.kms_key_id,
                tags=self.policy.naming.tags(credentials.name),
                idempotency_key=idempotency_key(credentials.name, credentials.app_client_id),
            )
            # Before anything reads it: only the stack's roles read or change the value from now on.
            self.guard(secret_id)
            return arn
        if description.deleted:
            # A client of the same name was deleted within the recovery window: reuse its secret, without
            # a rotation its deletion left behind (one that raced the delete, or a delete made before
            # deletes cancelled rotations): that would refuse the new client's rotation configuration.
            self.secrets.restore(secret_id)
            self.cancel_rotation(description)
        self.guard(secret_id)
        if not description.deleted:
            stored = self.secrets.read(secret_id, AWSCURRENT, fresh=True)
            if stored == credentials:
                return description.arn
        self.secrets.put_current(secret_id, credentials, str(uuid.uuid4()))
        return description.arn

    def guard(self, secret_id: str) -> None:
        """Put the stack's resource policy on the secret (zus_m2m.secret_policy), if the stack has one."""
        if self.policy.secret_policy:
            self.secrets.put_resource_policy(secret_id, self.policy.secret_policy)

    def configure_rotation(self, name: str) -> None:
        """Put the secret under scheduled rotation, when the stack has a rotation function."""
        if self.policy.rotation_function_arn:
            self.secrets.configure_rotation(
                self.policy.naming.secret_id(name),
                self.policy.rotation_function_arn,
                self.policy.rotation_interval_days,
            )

    def cancel_rotation(self, description: SecretDescription) -> None:
        """Take the secret out of rotation: Secrets Manager retries no step of a started rotation and
        schedules none (CancelRotateSecret), and that rotation's AWSPENDING label leaves its version, so
        that no rotation is in progress (the version, value-less or not, is left without a label)."""
        if description.rotation_enabled:
            self.secrets.cancel_rotation(description.name)
        version = description.rotation_version
        if version is not None:
            self.secrets.remove_stage(description.name, AWSPENDING, version)

    def schedule_deletion(self, name: str) -> None:
        """Delete the client's secret after the stack's recovery window (a client of the same name
        reuses it within that window)."""
        self.secrets.schedule_deletion(self.policy.naming.secret_id(name), self.policy.recovery_window_days)

    def prove(self, name: str, app_client: AppClient) -> None:
        """The guide's steps 3-4 with what Secrets Manager now holds: a token from the stored secret
        (through token vending, so it is cached rather than wasted; patiently, as a secret Zus has just
        made may take a while to take effect), then a read of the client with it."""
        secret_id = self.policy.naming.secret_id(name)
        stored = self.secrets.read(secret_id, AWSCURRENT, fresh=True)
        if stored is None or stored.app_client_id != app_client.id:
            raise errors.StoreUnavailable(f"the secret {secret_id} does not hold the new client's credentials yet")
        token = issue_patiently(
            self.issuer, stored.name, stored, self.policy.prove_patience, clock=self.clock, sleep=self.sleep
        )
        read = self.zus.get_app_client(app_client.id, token.access_token)
        if read.id != app_client.id or read.client_id != app_client.client_id:
            raise errors.ZusError("get app client", 200, "the app client read back is not the one created")
