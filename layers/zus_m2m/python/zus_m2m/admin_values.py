"""The values of managing clients, which only the admin side (provisioning, rotation) speaks of: what
Zus's admin API answers (roles, app clients, a secret shown once), what the admin routes ask for, and a
failed rotation step.

Apart from ``zus_m2m.values`` so that the token vending function, whose cold start matters most, does
not create them: each frozen dataclass costs about half a millisecond to build at import (its methods
are generated and compiled), and the vend path uses none of these. Plain, immutable values; no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from zus_m2m.values import DEFAULT_ROLE

# --- what Zus's admin API answers (secrets are kept out of every repr) ----------------------------


@dataclass(frozen=True)
class Role:
    id: str
    name: str


@dataclass(frozen=True)
class AppClient:
    """An app client as any bearer may read it (the guide's step 4): no secret."""

    id: str
    client_id: str
    name: str
    role_id: str | None
    created_at: int | None
    updated_at: int | None


@dataclass(frozen=True)
class AppClientSecret:
    """An app client together with a secret Zus shows once: on create and on rotate-secret."""

    app_client: AppClient
    client_secret: str = field(repr=False)


# --- what the admin routes ask for -----------------------------------------------------------------


@dataclass(frozen=True)
class CreateRequest:
    """What ``POST /app-clients`` asks for, checked at the HTTP edge (``zus_m2m.api``). ``consumers``
    None: the request names none (a repeat then matches whatever the record has)."""

    name: str
    role_name: str = DEFAULT_ROLE
    consumers: tuple[str, ...] | None = None


@dataclass(frozen=True)
class RotationRequest:
    """What ``POST /app-clients/{name}/rotations`` asks for, checked at the HTTP edge (``zus_m2m.api``):
    a new rotation, or with ``repair`` the repair of the one in progress."""

    repair: bool = False


# --- rotation --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RotationFailure:
    """A rotation step that failed, as the rotation function records it for the repair job: which
    client's rotation, its version (the ClientRequestToken), the step, when, and why (an error's
    detail, which never carries a secret). ``seen_at``: when a repair run first saw it."""

    client: str
    version: str
    step: str
    failed_at: float
    reason: str
    seen_at: float | None = None
