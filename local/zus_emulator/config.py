"""The emulator's knobs: its start-up configuration, the settings ``/_emulator/config`` changes and the
faults ``/_emulator/faults`` injects, with the checks of those two documents."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Clock = Callable[[], float]


@dataclass(frozen=True)
class EmulatorConfig:
    audience: str = "https://api.sandbox.zusapi.com"
    admin_client_id: str = "local-admin"
    admin_client_secret: str = field(default="local-admin-secret", repr=False)
    token_lifetime_seconds: int = 3600
    token_limit_per_hour: int = 200
    secret_propagation_seconds: float = 0.0
    roles_as_array: bool = False
    quiet: bool = False
    clock: Clock = field(default=time.time, repr=False, compare=False)


class SettingsError(ValueError):
    """A rejected /_emulator/config or /_emulator/faults document."""


@dataclass(frozen=True)
class Settings:
    token_lifetime_seconds: int
    token_limit_per_hour: int
    secret_propagation_seconds: float
    roles_as_array: bool

    @classmethod
    def at_start(cls, config: EmulatorConfig) -> Settings:
        propagation = float(config.secret_propagation_seconds)
        return cls(config.token_lifetime_seconds, config.token_limit_per_hour, propagation, config.roles_as_array)

    def to_json(self) -> dict[str, Any]:
        return {
            "tokenLifetimeSeconds": self.token_lifetime_seconds,
            "tokenLimitPerHour": self.token_limit_per_hour,
            "secretPropagationSeconds": self.secret_propagation_seconds,
            "rolesAsArray": self.roles_as_array,
        }


@dataclass(frozen=True)
class Fault:
    status: int | None = None
    rate: float = 1.0
    latency_ms: int = 0
    paths: tuple[str, ...] = ()
    drop: bool = False
    retry_after: int = 1

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "rate": self.rate,
            "latencyMs": self.latency_ms,
            "paths": list(self.paths),
            "drop": self.drop,
            "retryAfter": self.retry_after,
        }
        if self.status is not None:
            out["status"] = self.status
        return out

    def matches(self, path: str) -> bool:
        if path.startswith("/_emulator"):
            return False
        return not self.paths or any(path.startswith(prefix) for prefix in self.paths)


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def parse_settings_patch(patch: object, current: Settings) -> Settings:
    """Validate a ``POST /_emulator/config`` document and apply it to ``current``."""
    if not isinstance(patch, dict):
        raise SettingsError("the body must be a JSON object")
    known = {"tokenLifetimeSeconds", "tokenLimitPerHour", "secretPropagationSeconds", "rolesAsArray"}
    unknown = sorted(set(patch) - known)
    if unknown:
        raise SettingsError(f"unknown keys: {', '.join(unknown)}")
    lifetime = patch.get("tokenLifetimeSeconds", current.token_lifetime_seconds)
    if not is_int(lifetime) or lifetime < 1:
        raise SettingsError("tokenLifetimeSeconds must be an integer >= 1")
    limit = patch.get("tokenLimitPerHour", current.token_limit_per_hour)
    if not is_int(limit) or limit < 1:
        raise SettingsError("tokenLimitPerHour must be an integer >= 1")
    propagation = patch.get("secretPropagationSeconds", current.secret_propagation_seconds)
    if not is_number(propagation) or propagation < 0:
        raise SettingsError("secretPropagationSeconds must be a number >= 0")
    as_array = patch.get("rolesAsArray", current.roles_as_array)
    if not isinstance(as_array, bool):
        raise SettingsError("rolesAsArray must be a boolean")
    return Settings(int(lifetime), int(limit), float(propagation), as_array)


def parse_fault(spec: object) -> Fault | None:
    """Validate a ``POST /_emulator/faults`` document; ``{}`` means no fault."""
    if not isinstance(spec, dict):
        raise SettingsError("the body must be a JSON object")
    if not spec:
        return None
    known = {"status", "rate", "latencyMs", "paths", "drop", "retryAfter"}
    unknown = sorted(set(spec) - known)
    if unknown:
        raise SettingsError(f"unknown keys: {', '.join(unknown)}")
    status = spec.get("status")
    if status is not None and (not is_int(status) or not 400 <= status <= 599):
        raise SettingsError("status must be an integer from 400 to 599")
    rate = spec.get("rate", 1.0)
    if not is_number(rate) or not 0 <= rate <= 1:
        raise SettingsError("rate must be a number from 0 to 1")
    latency = spec.get("latencyMs", 0)
    if not is_int(latency) or not 0 <= latency <= 600_000:
        raise SettingsError("latencyMs must be an integer from 0 to 600000")
    paths = spec.get("paths", [])
    if not isinstance(paths, list) or not all(isinstance(p, str) and p.startswith("/") for p in paths):
        raise SettingsError("paths must be a list of path prefixes starting with '/'")
    drop = spec.get("drop", False)
    if not isinstance(drop, bool):
        raise SettingsError("drop must be a boolean")
    retry_after = spec.get("retryAfter", 1)
    if not is_int(retry_after) or retry_after < 0:
        raise SettingsError("retryAfter must be an integer >= 0")
    if drop and status is not None:
        raise SettingsError("drop and status cannot be combined")
    if status is None and not drop and latency == 0:
        raise SettingsError("a fault needs status, drop or latencyMs")
    return Fault(
        status=status,
        rate=float(rate),
        latency_ms=latency,
        paths=tuple(paths),
        drop=drop,
        retry_after=retry_after,
    )
