"""Zus's admin API as provisioning calls it: as the bootstrap admin client, with Zus's refusals
translated into what the service's caller should hear."""

from __future__ import annotations

from dataclasses import dataclass

from zus_m2m import errors
from zus_m2m.ports import AdminTokens, ZusAdmin


@dataclass(eq=False)
class BootstrapAdmin:
    zus: ZusAdmin
    admin_tokens: AdminTokens
    name: str

    def bearer(self) -> str:
        """A Builder Admin token; a missing bootstrap secret is the deployment's fault, not a 404."""
        try:
            return self.admin_tokens.bearer()
        except errors.ResourceNotFound as exc:
            raise errors.ConfigurationError(f"the bootstrap admin secret for {self.name!r} is missing") from exc

    def translated(self, error: errors.ZusM2MError) -> errors.ZusM2MError:
        """Dependency failures become 503 with Retry-After; a 403 names the admin call Zus refused."""
        if isinstance(error, errors.ZusForbidden):
            return errors.AdminForbidden(
                f"Zus refused the {error.operation} call with 403 ({error.reason}): the admin app client "
                f"{self.name!r} needs the Builder Admin role",
                retry_after=300.0,
            )
        if error.http_status == 429:
            return errors.TemporarilyUnavailable(error.detail, retry_after=error.retry_after or 5.0)
        return error
