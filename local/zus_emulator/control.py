"""``/_emulator/*``: what tests and the local stack use to watch and steer the emulator (not Zus's API)."""

from __future__ import annotations

from .api import JSON, ApiError, Reply, Request
from .config import Fault, SettingsError
from .state import EmulatorState


def stats(state: EmulatorState, request: Request) -> Reply:
    return Reply(200, state.stats(), JSON)


def health(state: EmulatorState, request: Request) -> Reply:
    return Reply(200, {"status": "ok"}, JSON)


def reset(state: EmulatorState, request: Request) -> Reply:
    state.reset()
    return Reply(204)


def get_faults(state: EmulatorState, request: Request) -> Reply:
    return _fault_reply(state.faults.current)


def set_faults(state: EmulatorState, request: Request) -> Reply:
    try:
        return _fault_reply(state.faults.set(request.json()))
    except SettingsError as exc:
        raise ApiError(400, str(exc)) from None


def get_config(state: EmulatorState, request: Request) -> Reply:
    return Reply(200, state.settings.to_json(), JSON)


def set_config(state: EmulatorState, request: Request) -> Reply:
    try:
        return Reply(200, state.update_settings(request.json()).to_json(), JSON)
    except SettingsError as exc:
        raise ApiError(400, str(exc)) from None


def _fault_reply(fault: Fault | None) -> Reply:
    return Reply(200, {} if fault is None else fault.to_json(), JSON)
