"""One deployment's fakes wired together, for the unit tests of provisioning and rotation."""

from __future__ import annotations

from fake_records import FakeRotationFailures
from fake_secrets import FakeSecretStore
from fake_zus import FakeAdminTokens, FakeTokenIssuer, FakeZusAdmin
from fakes import ADMIN, NAMING, FakeClock, FakeMetrics, FakeTokenTable

from zus_m2m.provisioning.admin import BootstrapAdmin
from zus_m2m.values import ClientCredentials


class FakeDeployment:
    """One deployment's fakes wired together: Zus with its admin, the secret store, the token table,
    token vending's issue_with, metrics, and a clock, for stage "test" (``NAMING``)."""

    def __init__(self) -> None:
        self.clock = FakeClock()
        self.zus = FakeZusAdmin(clock=self.clock)
        self.secrets = FakeSecretStore(self.clock)
        self.table = FakeTokenTable()
        self.issuer = FakeTokenIssuer(self.zus, table=self.table)
        self.admin_tokens = FakeAdminTokens(self.zus)
        self.admin = BootstrapAdmin(self.zus, self.admin_tokens, ADMIN)
        self.failures = FakeRotationFailures()
        self.metrics = FakeMetrics()
        self.naming = NAMING

    def add_client(self, name: str, *, tags: dict[str, str] | None = None) -> ClientCredentials:
        """A client made at Zus and stored as its secret (managed tags unless ``tags``), as provisioning
        leaves it; the bootstrap admin's as an operator stores it: without tags."""
        created = self.zus.add_client(name, "role-builder-admin", int(self.clock()))
        credentials = ClientCredentials(
            name, created.app_client.id, created.app_client.client_id, created.client_secret
        )
        default_tags = {} if name == ADMIN else self.naming.tags(name)
        self.secrets.create(
            self.naming.secret_id(name),
            credentials,
            kms_key_id="",
            tags=default_tags if tags is None else tags,
            idempotency_key=f"{name}-v1",
        )
        return credentials
