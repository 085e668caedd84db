"""GET /app-clients/{name}/token: a Zus access token with at least ``minTtl`` seconds left, for one of
the client's consumers; ``refused`` names (by fingerprint) a token Zus refused, to be replaced.

One route, so no router: ``zus_m2m.edge.serve`` matches it, maps errors to problem+json and writes the
audit line, as the admin functions' resolver does with the same code; Powertools' event handler, whose
import would cost this function about a tenth of its cold start, is never imported here (docs/design.md).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Metrics

from zus_m2m import edge, logs, validation, wiring
from zus_m2m.settings import Settings

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

metrics = Metrics()
logger = logs.function_logger("token-vending", metrics)
settings = Settings.from_env()
vendor = wiring.Container(
    settings,
    metrics,
    aws=wiring.AwsClients(
        dynamodb=wiring.aws_client("dynamodb", wiring.VENDING_AWS_CONFIG),
        secretsmanager=wiring.FirstUseAwsClient("secretsmanager", wiring.VENDING_AWS_CONFIG),  # type: ignore[arg-type]
    ),
).token_vendor()
# The one route; its OpenAPI entry is zus_m2m.openapi.UNROUTED's, by method and path.
METHOD, PATH = "GET", "/app-clients/<name>/token"


def get_token(event: Mapping[str, Any], path: Mapping[str, str], audit: dict[str, Any]) -> edge.Response:
    query = edge.query_parameters(event, ("minTtl", "refused"))
    min_ttl = validation.integer_in_range("minTtl", query.get("minTtl"), default=60, low=0, high=3000)
    refused = validation.token_fingerprint("refused", query.get("refused"))
    if refused is not None:
        audit["refusedToken"] = refused  # a fingerprint: it names the token without revealing it
    token = vendor.vend(edge.caller_of(event), validation.client_name(path["name"]), min_ttl, refused)
    # Which tier served it: the vend calls by tier are counted from these lines (template.yaml).
    audit["tokenSource"] = token.source
    audit["tokenExpiresAt"] = int(token.expires_at)
    if refused is not None:
        # The reported token itself comes back when the report was ignored (replaced too recently).
        audit["refusedReport"] = "ignored" if token.fingerprint == refused else "replaced"
    expires_in = int(token.seconds_left(time.time()))
    body = {
        "access_token": token.access_token,
        "token_type": token.token_type,
        "expires_in": expires_in,
        "expires_at": int(token.expires_at),
    }
    # Which tier answered, for callers diagnosing latency; never anything secret.
    return edge.json_response(200, body, headers={"X-Token-Source": token.source})


# The route as a resolver would declare it: scripts/openapi.py documents it from this.
ROUTE = (METHOD, PATH, get_token)
_PATH_PATTERN = edge.route_pattern(PATH)


@logger.inject_lambda_context
@wiring.invocation(metrics)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return edge.serve(event, METHOD, _PATH_PATTERN, get_token)
