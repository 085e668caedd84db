"""POST/GET/PATCH/DELETE /app-clients[/{name}] and POST /app-clients/{name}/rotations: managed Zus app
clients, for the stack's admins only."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.utilities.typing import LambdaContext

from zus_m2m import api, logs, openapi, validation, wiring
from zus_m2m.settings import Settings

metrics = Metrics()
logger = logs.function_logger("provisioning", metrics)
settings = Settings.from_env()
container = wiring.Container(settings, metrics)
provisioning = container.provisioning()
app = api.resolver()
app.use(middlewares=[api.admin_only(container.access)])


@app.post(
    "/app-clients",
    summary="Provision a Zus app client, its secret stored in Secrets Manager",
    **openapi.operation(
        ok={201: ("created (Location: the client)", "AppClient"), 200: ("it existed: the same record", "AppClient")},
        errors=(400, 403, 409, 422, 503),
        request_body=openapi.CREATE_BODY,
    ),
)
def create_app_client() -> Response[str]:
    event = app.current_event
    api.query_parameters(event)
    request = api.parse_create_request(
        api.body_text(event), event.headers.get("content-type"), api.stack_account(event)
    )
    app.audit_detail(client=request.name)
    record, created = provisioning.create_client(request)
    logger.info("create answered", extra={"client": record.name, "new_client": created})
    headers = {"Location": f"/app-clients/{record.name}"} if created else {}
    return api.json_response(201 if created else 200, record.to_json(), headers=headers)


@app.get(
    "/app-clients",
    summary="The managed app clients' records, a page at a time",
    **openapi.operation(
        ok={200: ("a page of records; nextToken asks for the next (null: the last page)", "AppClientList")},
        errors=(400, 403, 503),
        parameters=(openapi.LIMIT, openapi.NEXT_TOKEN),
    ),
)
def list_app_clients() -> Response[str]:
    page = api.parse_page_request(app.current_event)
    records, next_token = provisioning.queries.list_page(page.limit, page.next_token)
    return api.json_response(200, {"appClients": [record.to_json() for record in records], "nextToken": next_token})


@app.get(
    "/app-clients-drift",
    summary="Drift from Zus: app clients there this stack does not manage, managed clients missing there",
    **openapi.operation(ok={200: ("the drift", "AppClientDrift")}, errors=(400, 403, 503)),
)
def app_clients_drift() -> Response[str]:
    api.query_parameters(app.current_event)
    return api.json_response(200, provisioning.drift.report().to_json())


@app.get(
    "/app-clients/<name>",
    summary="One managed app client: record, rotations, cached token expiry, hourly budget",
    **openapi.operation(
        ok={200: ("the client", "AppClientDetails")}, errors=(400, 403, 404, 503), parameters=(openapi.NAME,)
    ),
)
def get_app_client(name: str) -> Response[str]:
    api.query_parameters(app.current_event)
    return api.json_response(200, provisioning.queries.get(validation.client_name(name)))


@app.patch(
    "/app-clients/<name>",
    summary="Replace the client's consumers: the IAM principals that may get its token",
    **openapi.operation(
        ok={200: ("the record with its new consumers", "AppClient")},
        errors=(400, 403, 404, 409, 503),
        parameters=(openapi.NAME,),
        request_body=openapi.UPDATE_BODY,
    ),
)
def update_app_client(name: str) -> Response[str]:
    event = app.current_event
    api.query_parameters(event)
    consumers = api.parse_consumers_update(
        api.body_text(event), event.headers.get("content-type"), api.stack_account(event)
    )
    record = provisioning.update_consumers(validation.client_name(name), consumers)
    return api.json_response(200, record.to_json())


@app.delete(
    "/app-clients/<name>",
    summary="Retire a client: Zus client deleted, secret deletion scheduled, cached tokens purged",
    **openapi.operation(ok={204: ("deleted", None)}, errors=(400, 403, 404, 409, 503), parameters=(openapi.NAME,)),
)
def delete_app_client(name: str) -> Response[str]:
    api.query_parameters(app.current_event)
    provisioning.retire_client(validation.client_name(name))
    return Response(status_code=204, headers=api.NO_STORE)


@app.post(
    "/app-clients/<name>/rotations",
    summary="Start a Secrets Manager rotation of the client's secret, or repair the one in progress",
    **openapi.operation(
        ok={202: ("the rotation started, or the one in progress repaired", "RotationStarted")},
        errors=(400, 403, 404, 409, 429, 503),
        parameters=(openapi.NAME,),
        request_body=openapi.ROTATION_BODY,
    ),
)
def start_rotation(name: str) -> Response[str]:
    event = app.current_event
    api.query_parameters(event)
    request = api.parse_rotation_request(api.body_text(event), event.headers.get("content-type"))
    return api.json_response(202, provisioning.start_rotation(validation.client_name(name), request))


@logger.inject_lambda_context
@wiring.invocation(metrics)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
