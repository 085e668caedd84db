"""The settings the rotation steps and the sweep read, as one value (``zus_m2m.wiring`` builds it)."""

from __future__ import annotations

from dataclasses import dataclass

from zus_m2m.tokens.patience import Patience
from zus_m2m.values import SecretDescription, SecretNaming

# Longer than the 30 s Auth0 documents for a rotated secret to take effect everywhere.
TEST_PATIENCE = Patience(seconds=60.0)


@dataclass(frozen=True)
class RotationPolicy:
    naming: SecretNaming
    rotation_function_arn: str = ""
    # The resource policy a check puts on a secret that lacks it (zus_m2m.secret_policy; "": none).
    secret_policy: str = ""
    # A secret whose last rotation (or creation) is older than this is due.
    rotation_interval: float = 30 * 86400.0
    # How long testSecret, and the sweep's check of a settling version, keep retrying refused
    # credentials: a rotated secret takes time to take effect (Auth0, which Zus's auth server is,
    # documents up to 30 s, during which requests are accepted or refused at random).
    test_patience: Patience = TEST_PATIENCE
    # A version stored less than this ago may still be settling at Zus.
    settle_seconds: float = 60.0
    # A rotation in progress whose secret has not changed for this long died; the sweep repairs it.
    # Secrets Manager finishes a healthy rotation within minutes (four invocations of at most 120 s).
    stuck_after: float = 15 * 60.0
    # How often a client's rotation check runs when nothing is due sooner: it proves the current secret
    # works (free when a token minted with it is cached) and finds a lost one.
    check_interval: float = 3600.0

    def rotation_due_at(self, description: SecretDescription) -> float:
        """When the secret is due for rotation: its last rotation (or creation) plus the interval; 0 if
        Secrets Manager knows neither."""
        since = description.last_rotated or description.created
        return 0.0 if since is None else since + self.rotation_interval
