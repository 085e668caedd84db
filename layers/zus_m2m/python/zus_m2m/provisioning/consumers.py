"""Replace the consumers of a managed client: the principals that may get its token (``zus_m2m.access``).

Token vending reads them with the client's token and trusts what it read for a few seconds
(``VendingPolicy.revalidate_seconds``): a consumer removed here stops being served within that bound.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from zus_m2m import errors
from zus_m2m.ports import ClientRecords, MetricsSink
from zus_m2m.provisioning.policy import ProvisioningPolicy
from zus_m2m.values import ClientRecord

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class UpdateConsumers:
    records: ClientRecords
    policy: ProvisioningPolicy
    metrics: MetricsSink

    def __call__(self, name: str, consumers: tuple[str, ...]) -> ClientRecord:
        """The record with its new consumers; ResourceNotFound, or ResourceConflict for the bootstrap
        admin (never vended) and a client being created or deleted."""
        if name == self.policy.admin_client_name:
            raise errors.ResourceConflict("the bootstrap admin client is never vended: it has no consumers")
        item = self.records.get(name)
        if item is None:
            raise errors.ResourceNotFound(f"no managed app client named {name!r}")
        if item.status != "active":
            doing = "created" if item.status == "creating" else "deleted"
            raise errors.ResourceConflict(f"app client {name!r} is being {doing}")
        record = self.records.set_consumers(name, consumers)
        if record is None:
            raise errors.ResourceConflict(f"app client {name!r} changed while its consumers were updated; retry")
        self.metrics.count("ConsumersUpdated")
        logger.info("consumers updated", extra={"client": name, "consumers": list(consumers)})
        return record
