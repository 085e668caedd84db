"""moto's WSGI application, serving one request at a time.

moto answers requests on concurrent threads without a lock, so two conditional writes that race can
both succeed. Real DynamoDB conditional writes (and Secrets Manager's version checks) are atomic, and
the service relies on that for the single-flight lease, the token budget and the provisioning claim.
Serialising requests gives moto the same atomicity; every moto this project starts uses this app.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import BaseWSGIServer, make_server

__all__ = ["MotoRequestHandler", "make_moto_server", "serialized_moto_app"]


def serialized_moto_app() -> Any:
    app = DomainDispatcherApplication(create_backend_app)
    lock = threading.Lock()

    def serve(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        with lock:
            return list(app(environ, start_response))

    return serve


def make_moto_server(host: str, port: int) -> BaseWSGIServer:
    """A threaded werkzeug server (keep-alive works) around the serialised moto app."""
    return make_server(host, port, serialized_moto_app(), threaded=True, request_handler=MotoRequestHandler)
