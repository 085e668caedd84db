"""The emulator's knobs: its start-up configuration, the settings ``/_emulator/config`` changes and the
faults ``/_emulator/faults`` injects, with the checks of those two documents."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Clock = Callable[[], float]

# How the token endpoint words its answers (``dialects.py``): Auth0's, as Zus's auth server (an Auth0
# tenant) speaks, or RFC 6749's.
AUTH0 = "auth0"
RFC6749 = "rfc6749"
DIALECTS = (AUTH0, RFC6749)
# During a rotation's propagation window: each request meets a node that knows the old or the new
# secret at random (Auth0's "up to 30 seconds"), or, for focused tests, the old secret alone until the
# window ends and the new one alone after.
RANDOM = "random"
OLD_THEN_NEW = "old-then-new"
PROPAGATION_MODES = (RANDOM, OLD_THEN_NEW)


@dataclass(frozen=True)
class EmulatorConfig:
    audience: str = "https://api.sandbox.zusapi.com"
    admin_client_id: str = "local-admin"
    admin_client_secret: str = field(default="local-admin-secret", repr=False)
    token_lifetime_seconds: int = 3600
    token_limit_per_hour: int = 200
    secret_propagation_seconds: float = 0.0
    roles_as_array: bool = False
    dialect: str = AUTH0
    propagation_mode: str = RANDOM
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
    dialect: str = AUTH0
    propagation_mode: str = RANDOM

    @classmethod
    def at_start(cls, config: EmulatorConfig) -> Settings:
        return cls(
            config.token_lifetime_seconds,
            config.token_limit_per_hour,
            float(config.secret_propagation_seconds),
            config.roles_as_array,
            config.dialect,
            config.propagation_mode,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "tokenLifetimeSeconds": self.token_lifetime_seconds,
            "tokenLimitPerHour": self.token_limit_per_hour,
            "secretPropagationSeconds": self.secret_propagation_seconds,
            "rolesAsArray": self.roles_as_array,
            "dialect": self.dialect,
            "propagationMode": self.propagation_mode,
        }


@dataclass(frozen=True)
class Fault:
    status: int | None = None
    rate: float = 1.0
    latency_ms: int = 0
    paths: tuple[str, ...] = ()
    drop: bool = False
    retry_after: int = 1
    # Auth0's tenant-wide limit: 500 ``access_denied`` "Global limit has been reached".
    global_limit: bool = False

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "rate": self.rate,
            "latencyMs": self.latency_ms,
            "paths": list(self.paths),
            "drop": self.drop,
            "retryAfter": self.retry_after,
            "globalLimit": self.global_limit,
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
    known = {
        "tokenLifetimeSeconds",
        "tokenLimitPerHour",
        "secretPropagationSeconds",
        "rolesAsArray",
        "dialect",
        "propagationMode",
    }
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
    dialect = patch.get("dialect", current.dialect)
    if dialect not in DIALECTS:
        raise SettingsError(f"dialect must be one of {', '.join(DIALECTS)}")
    mode = patch.get("propagationMode", current.propagation_mode)
    if mode not in PROPAGATION_MODES:
        raise SettingsError(f"propagationMode must be one of {', '.join(PROPAGATION_MODES)}")
    return Settings(int(lifetime), int(limit), float(propagation), as_array, dialect, mode)


def parse_fault(spec: object) -> Fault | None:
    """Validate a ``POST /_emulator/faults`` document; ``{}`` means no fault."""
    if not isinstance(spec, dict):
        raise SettingsError("the body must be a JSON object")
    if not spec:
        return None
    known = {"status", "rate", "latencyMs", "paths", "drop", "retryAfter", "globalLimit"}
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
    global_limit = spec.get("globalLimit", False)
    if not isinstance(global_limit, bool):
        raise SettingsError("globalLimit must be a boolean")
    if sum((drop, status is not None, global_limit)) > 1:
        raise SettingsError("status, drop and globalLimit cannot be combined")
    if status is None and not drop and not global_limit and latency == 0:
        raise SettingsError("a fault needs status, drop, globalLimit or latencyMs")
    return Fault(
        status=status,
        rate=float(rate),
        latency_ms=latency,
        paths=tuple(paths),
        drop=drop,
        retry_after=retry_after,
        global_limit=global_limit,
    )
