"""The settings the rotation steps and the sweep read, as one value (``zus_m2m.wiring`` builds it)."""

from __future__ import annotations

from dataclasses import dataclass

from zus_m2m.values import SecretNaming


@dataclass(frozen=True)
class RotationPolicy:
    naming: SecretNaming
    rotation_function_arn: str = ""
    # A secret whose last rotation (or creation) is older than this is due.
    rotation_interval: float = 30 * 86400.0
    # How long testSecret keeps retrying invalid_client: a rotated secret can take time to take effect
    # (Auth0, which Zus's token endpoint resembles, documents up to 30 s).
    test_patience: float = 60.0
    first_test_pause: float = 1.0
    max_test_pause: float = 8.0
    # A rotation in progress whose secret has not changed for this long died; the sweep repairs it.
    # Secrets Manager finishes a healthy rotation within minutes (four invocations of at most 120 s).
    stuck_after: float = 15 * 60.0
