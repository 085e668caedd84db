"""The settings every provisioning use case reads, as one value (``zus_m2m.wiring`` builds it)."""

from __future__ import annotations

from dataclasses import dataclass

from zus_m2m.tokens.patience import Patience
from zus_m2m.values import DEFAULT_ROLE, SecretNaming

# A new or recovered secret may take a while to take effect at Zus; the proof keeps asking this long.
PROVE_PATIENCE = Patience(seconds=20.0)


@dataclass(frozen=True)
class ProvisioningPolicy:
    naming: SecretNaming
    audience: str
    kms_key_id: str = ""
    recovery_window_days: int = 7
    rotation_interval_days: int = 30
    rotation_function_arn: str = ""
    # The resource policy each client secret gets (zus_m2m.secret_policy; "": none).
    secret_policy: str = ""
    token_budget_per_hour: int = 100
    # The Zus roles admins may give clients (the stack's AllowedZusRoles).
    allowed_roles: tuple[str, ...] = (DEFAULT_ROLE, "Care Team User")
    # The least time between two rotations requested on demand of one client.
    rotation_request_min_gap_seconds: float = 300.0
    # A repair on request ({"repair": true}) is exempt from that gap, with a guard of its own: one repair of a
    # client in flight at a time (its lease outlives the function's 29 s timeout), at least this far apart.
    repair_request_min_gap_seconds: float = 30.0
    repair_lease_seconds: float = 60.0
    # Longer than the function's timeout (29 s), so a live creator always keeps its claim.
    claim_seconds: float = 40.0
    # How long an identical request waits for the claim's holder before answering 503.
    wait_seconds: float = 20.0
    # Tolerated clock difference between us and Zus when comparing createdAt with the claim.
    clock_skew_seconds: float = 5.0
    # A create we gave up on (a timeout) may still land at Zus for as long as the Zus client waits for
    # an answer (3 s connect + 10 s read); until then a retry that finds no client must not make one.
    create_settle_seconds: float = 15.0
    # Never past the invocation's deadline (tokens.patience).
    prove_patience: Patience = PROVE_PATIENCE

    @property
    def admin_client_name(self) -> str:
        return self.naming.admin_client_name
