"""moto as every part of this project runs it: closer to the real services in two ways that the
service's guarantees rest on, and able to cut its connections when stopped.

* Requests are served one at a time. moto answers on concurrent threads without a lock, so two
  conditional writes that race can both succeed; real DynamoDB conditional writes (and Secrets
  Manager's version checks) are atomic, and the single-flight lease, the token budget and the
  provisioning claim rely on that.
* RotateSecret refuses to start a rotation while AWSPENDING sits on a version other than
  AWSCURRENT's, as Secrets Manager does ("A previous rotation isn't complete"); moto 5.2 checks the
  opposite case, so racing rotation requests could each start one.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import ThreadedWSGIServer

from zus_emulator.http_server import TracksConnections

__all__ = ["MotoServer", "make_moto_server", "serialized_moto_app"]

_guard_lock = threading.Lock()
_guarded = False


def guard_rotations() -> None:
    """Give moto's RotateSecret Secrets Manager's in-progress check (once per process)."""
    global _guarded
    with _guard_lock:
        if _guarded:
            return
        from moto.secretsmanager.exceptions import InvalidRequestException
        from moto.secretsmanager.models import SecretsManagerBackend

        original = SecretsManagerBackend.rotate_secret

        def rotate_secret(self: Any, secret_id: str, *args: Any, **kwargs: Any) -> Any:
            if self._is_valid_identifier(secret_id):
                versions = getattr(self.secrets[secret_id], "versions", {})
                if any(
                    "AWSPENDING" in version["version_stages"] and "AWSCURRENT" not in version["version_stages"]
                    for version in versions.values()
                ):
                    raise InvalidRequestException(
                        "A previous rotation isn't complete. That rotation will be reattempted."
                    )
            return original(self, secret_id, *args, **kwargs)

        SecretsManagerBackend.rotate_secret = rotate_secret  # type: ignore[method-assign]
        _guarded = True


def serialized_moto_app() -> Any:
    guard_rotations()
    app = DomainDispatcherApplication(create_backend_app)
    lock = threading.Lock()

    def serve(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        with lock:
            return list(app(environ, start_response))

    return serve


class MotoServer(TracksConnections, ThreadedWSGIServer):
    """werkzeug's threaded server (keep-alive works) that can cut its open connections on stop."""

    daemon_threads = True

    def __init__(self, host: str, port: int, app: Any) -> None:
        self.track_connections()
        super().__init__(host, port, app, handler=MotoRequestHandler)


def make_moto_server(host: str, port: int, app: Any = None) -> MotoServer:
    return MotoServer(host, port, app or serialized_moto_app())
