"""The local API: template.yaml's HTTP API routes served on a socket, each request authorized as API
Gateway's IAM authorizer would (``iam_authorizer``: SigV4 and the signer's policies), handed to its real
handler as API Gateway would hand it (``apigw``), and the handler's answer sent back.

A request goes through ``LocalApi.handle``: route selection (most specific route wins; an unmatched
path or method, whatever the method, gets API Gateway's 404 ``{"message":"Not Found"}``), the
authorizer, the event, the invocation, the response mapping. A handler that raises answers 500 with a
problem document and no trace; the trace goes to the stack's stderr. An invocation that outlives the
function's timeout answers as API Gateway answers for a Lambda timeout: 500 ``{"message":"Internal
Server Error"}``. One line per request: method, path, status, latency, and the environment that served
it (pid, cold or warm, the invocation's duration). Never a body or a header.
"""

from __future__ import annotations

import time
import uuid
from typing import Any
from urllib.parse import urlsplit

from zus_emulator.http_server import BodyError, LocalHTTPServer, RequestHandler, local_url
from zus_local.apigw import HttpRequest, HttpResponse, InvalidFunctionResponse, build_event, map_response, problem
from zus_local.console import Console
from zus_local.event_sources import Route
from zus_local.iam_authorizer import IamAuthorizer, Refused, gateway_answer
from zus_local.lambda_runtime import FunctionError, FunctionLoadError, FunctionTimeout, Invocation, LambdaRuntime
from zus_local.template_model import TemplateModel

# A body the local API reads at most (API Gateway's payload limit is 10 MB).
MAX_BODY_BYTES = 10 * 1024 * 1024


class LocalApi:
    """Routes from the model, handlers from the runtime, on ``host:port``.

    ``bind()`` takes the port at once (requests wait in the backlog until ``serve()``), so a busy port
    is found before anything else starts; ``stop()`` closes the socket and every open connection.
    """

    def __init__(self, console: Console, host: str = "127.0.0.1", port: int = 3000) -> None:
        self.console = console
        self.host = host
        self.port = port
        self.model: TemplateModel | None = None
        self.runtime: LambdaRuntime | None = None
        self.authorizer: IamAuthorizer | None = None
        self._server: _Server | None = None

    @property
    def url(self) -> str:
        return local_url(self.host, self.port)

    def bind(self) -> LocalApi:
        """Listen on the port (OSError, e.g. EADDRINUSE, if it is taken)."""
        if self._server is None:
            self._server = _Server((self.host, self.port), self)
            self.port = int(self._server.server_address[1])
        return self

    def serve(self, model: TemplateModel, runtime: LambdaRuntime, authorizer: IamAuthorizer) -> LocalApi:
        """Answer requests (those already waiting too) with ``model``'s routes and ``runtime``'s handlers,
        each authorized by ``authorizer``."""
        self.model, self.runtime, self.authorizer = model, runtime, authorizer
        server = self.bind()._server
        assert server is not None
        server.start_serving("local-api")
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.stop_serving()

    # --- one request ---------------------------------------------------------------------------------

    def handle(self, request: HttpRequest) -> HttpResponse:
        """Route, invoke, map; logs one line. Never raises."""
        started = time.perf_counter()
        path = urlsplit(request.target).path or "/"
        request_id = str(uuid.uuid4())
        served: list[Invocation] = []
        response = self._answer(request, path, request_id, served)
        elapsed = (time.perf_counter() - started) * 1000
        response = HttpResponse(response.status, [*response.headers, ("Apigw-Requestid", request_id)], response.body)
        environment = f"  ({served[0].describe()})" if served else ""
        self.console.line(f"{request.method:<6} {path}  {response.status}  {elapsed:.0f} ms{environment}")
        return response

    def _answer(self, request: HttpRequest, path: str, request_id: str, served: list[Invocation]) -> HttpResponse:
        """Route selection, then the authorizer, then the event for the route, then the invocation."""
        assert self.model is not None
        assert self.authorizer is not None
        matched = self.model.match(request.method, path)
        if matched is None:
            return gateway_answer(404, "NotFoundException", {"message": "Not Found"})
        route, parameters = matched
        try:
            identity = self.authorizer.authorize(request, path)
        except Refused as refused:
            return refused.response
        event = build_event(
            request,
            route,
            parameters,
            authorizer_iam=identity.authorizer_iam(),
            account_id=self.authorizer.account_id,
            request_id=request_id,
        )
        return self._invoke(route, event, request_id, served)

    def _invoke(self, route: Route, event: dict[str, Any], request_id: str, served: list[Invocation]) -> HttpResponse:
        """The handler's answer to ``event``, as API Gateway maps it; 500 if it raises, times out or
        answers nonsense. ``served``: the invocation, appended."""
        assert self.runtime is not None
        try:
            invocation = self.runtime.invoke(route.function, event, request_id=request_id)
        except FunctionTimeout as exc:
            self.console.error(f"{exc} (request {request_id}); its environment was discarded")
            return gateway_answer(500, "InternalServerErrorException", {"message": "Internal Server Error"})
        except (FunctionError, FunctionLoadError) as exc:
            report = exc.report() if isinstance(exc, FunctionError) else str(exc)
            self.console.error(f"{route.function} failed on {route.route_key} (request {request_id}):\n{report}")
            return problem(
                500, "Internal Server Error", "the function failed; see the local stack's output", "internal-error"
            )
        served.append(invocation)
        try:
            return map_response(invocation.result)
        except InvalidFunctionResponse as exc:
            self.console.error(f"{route.function} answered {route.route_key} with an invalid response: {exc}")
            return problem(500, "Internal Server Error", "the function returned an invalid response", "internal-error")


class _Server(LocalHTTPServer):
    def __init__(self, address: tuple[str, int], api: LocalApi) -> None:
        self.api = api
        super().__init__(address, _Handler)

    def report_connection_error(self, error: BaseException) -> None:
        self.api.console.error(f"local API: connection error: {type(error).__name__}")


class _Handler(RequestHandler):
    server_version = "zus-m2m-local-api"
    sys_version = ""
    server: _Server

    def handle_request(self) -> None:
        try:
            body = self.read_body(MAX_BODY_BYTES)
        except BodyError as exc:
            self._send(problem(400, "Bad Request", exc.detail, "invalid-request"))
            return
        request = HttpRequest(
            method=self.command,
            target=self.path,
            headers=list(self.headers.items()),
            body=body,
            source_ip=str(self.client_address[0]),
            protocol=self.request_version,
        )
        self._send(self.server.api.handle(request))

    def _send(self, response: HttpResponse) -> None:
        try:
            self.send_response(response.status)
            names = {name.lower() for name, _ in response.headers}
            for name, value in response.headers:
                if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                    self.send_header(name, value)
            if "content-type" not in names and response.body:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(response.body)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if response.body and self.command != "HEAD":
                self.wfile.write(response.body)
        except OSError:
            self.close_connection = True
