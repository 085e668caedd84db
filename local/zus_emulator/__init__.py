"""A local emulator of the Zus Health auth API: roles, M2M app clients, rotate-secret and OAuth tokens.

Tests and the local stack talk to it instead of the real Zus sandbox::

    from zus_emulator import EmulatorConfig, EmulatorServer

    with EmulatorServer(port=0, config=EmulatorConfig(quiet=True)) as server:
        print(server.url)
"""

from .config import EmulatorConfig
from .resources import BUILDER_ADMIN_ROLE_ID, CARE_TEAM_USER_ROLE_ID
from .server import EmulatorServer
from .state import EmulatorState

__all__ = [
    "BUILDER_ADMIN_ROLE_ID",
    "CARE_TEAM_USER_ROLE_ID",
    "EmulatorConfig",
    "EmulatorServer",
    "EmulatorState",
]
