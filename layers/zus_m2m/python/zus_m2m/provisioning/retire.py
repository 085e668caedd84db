"""Retire a managed client: stop its secret's rotation, delete it at Zus, schedule its secret's
deletion, purge its cached tokens, forget its record. Whatever state its rotation is in (a started
rotation stuck anywhere), the name can be provisioned again at once.

Each step is idempotent and the record stays (as "deleting") until the last, so a retry after a
crash anywhere finishes the job. Every external step is followed by ``checkpoint(name)``
(``RetireCheckpoints``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from zus_m2m import errors
from zus_m2m.ports import ClientRecords, Runtime, TokenTable
from zus_m2m.provisioning.admin import BootstrapAdmin
from zus_m2m.provisioning.policy import ProvisioningPolicy
from zus_m2m.provisioning.secret_keeper import SecretKeeper

logger = logging.getLogger(__name__)


class RetireCheckpoints:
    """The names ``checkpoint`` is called with, after each external step of a retirement."""

    DELETE_MARKED = "delete-marked"
    ROTATION_CANCELLED = "rotation-cancelled"
    APP_CLIENT_DELETED = "app-client-deleted"
    SECRET_DELETION_SCHEDULED = "secret-deletion-scheduled"
    TOKENS_PURGED = "tokens-purged"


@dataclass(eq=False)
class RetireClient:
    records: ClientRecords
    admin: BootstrapAdmin
    keeper: SecretKeeper
    table: TokenTable
    policy: ProvisioningPolicy
    runtime: Runtime

    def __call__(self, name: str) -> None:
        if name == self.policy.admin_client_name:
            raise errors.ResourceConflict("the bootstrap admin client cannot be deleted through the service")
        item = self.records.get(name)
        if item is None:
            raise errors.ResourceNotFound(f"no managed app client named {name!r}")
        if item.status == "creating" or item.record is None:
            raise errors.ResourceConflict(
                f"app client {name!r} is being created; repeat the create to finish it, then delete it"
            )
        try:
            if not self.records.mark_deleting(name):
                raise errors.ResourceConflict(f"app client {name!r} changed while being deleted; retry")
            self.runtime.checkpoint(RetireCheckpoints.DELETE_MARKED)
            live = self.keeper.live(name)
            if live is not None:
                # First, so that Secrets Manager retries no step against a client being deleted.
                self.keeper.cancel_rotation(live)
                self.runtime.checkpoint(RetireCheckpoints.ROTATION_CANCELLED)
            try:
                self.admin.zus.delete_app_client(item.record.app_client_id, self.admin.bearer())
            except errors.ZusNotFound:
                logger.info("the Zus app client was already gone", extra={"client": name})
            self.runtime.checkpoint(RetireCheckpoints.APP_CLIENT_DELETED)
            if live is not None:
                self.keeper.schedule_deletion(name)
            self.runtime.checkpoint(RetireCheckpoints.SECRET_DELETION_SCHEDULED)
            self.table.retire(name, self.runtime.clock())
            self.runtime.checkpoint(RetireCheckpoints.TOKENS_PURGED)
            self.records.delete(name)
        except errors.ZusM2MError as exc:
            raise self.admin.translated(exc) from exc
        self.runtime.metrics.count("AppClientDeleted")
        logger.info("app client deleted", extra={"client": name, "app_client_id": item.record.app_client_id})
