"""GET /app-clients/{name}/token: a Zus access token with at least ``minTtl`` seconds left, for one of
the client's consumers; ``refused`` names (by fingerprint) a token Zus refused, to be replaced."""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.utilities.typing import LambdaContext

from zus_m2m import api, logs, openapi, validation, wiring
from zus_m2m.settings import Settings

logger = logs.function_logger("token-vending")
metrics = Metrics()
settings = Settings.from_env()
vendor = wiring.Container(
    settings,
    metrics,
    aws=wiring.AwsClients(
        dynamodb=wiring.aws_client("dynamodb", wiring.VENDING_AWS_CONFIG),
        secretsmanager=wiring.FirstUseAwsClient("secretsmanager", wiring.VENDING_AWS_CONFIG),  # type: ignore[arg-type]
    ),
).token_vendor()
app = api.resolver()


@app.get(
    "/app-clients/<name>/token",
    summary="A Zus access token with at least minTtl seconds left",
    **openapi.operation(
        ok={200: ("the token (X-Token-Source: the tier that answered)", "AccessToken")},
        errors=(400, 403, 404, 422, 429, 503),
        parameters=(openapi.NAME, openapi.MIN_TTL, openapi.REFUSED),
    ),
)
def get_token(name: str) -> Response[str]:
    event = app.current_event
    query = api.query_parameters(event, ("minTtl", "refused"))
    min_ttl = validation.integer_in_range("minTtl", query.get("minTtl"), default=60, low=0, high=3000)
    refused = validation.token_fingerprint("refused", query.get("refused"))
    if refused is not None:
        app.audit_detail(refusedToken=refused)  # a fingerprint: it names the token without revealing it
    token = vendor.vend(api.caller_of(event), validation.client_name(name), min_ttl, refused)
    app.audit_detail(tokenExpiresAt=int(token.expires_at))
    if refused is not None:
        # The reported token itself comes back when the report was ignored (replaced too recently).
        app.audit_detail(refusedReport="ignored" if token.fingerprint == refused else "replaced")
    expires_in = int(token.seconds_left(time.time()))
    body = {
        "access_token": token.access_token,
        "token_type": token.token_type,
        "expires_in": expires_in,
        "expires_at": int(token.expires_at),
    }
    # Which tier answered, for callers diagnosing latency; never anything secret.
    return api.json_response(200, body, headers={"X-Token-Source": token.source})


@logger.inject_lambda_context(clear_state=True)
@wiring.invocation(metrics)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
