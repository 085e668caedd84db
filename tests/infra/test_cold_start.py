"""The token vending function's cold start: it serves its one route without Powertools' event handler
(whose package imports every resolver, asyncio and every event class) or the admin functions' edge, at
init and on its first calls (docs/design.md, "The token vending function has no router"), and builds
none of the admin side's values, nor imports boto3's wrapper over botocore."""

from __future__ import annotations

import json
import subprocess
import sys

from infra_support import ROOT

# Imported by a function that routes with Powertools; never by the token vending function.
ROUTER_MODULES = (
    "aws_lambda_powertools.event_handler",
    "aws_lambda_powertools.utilities.data_classes",
    "zus_m2m.api",
    "zus_m2m.openapi",
)
# The admin side's: values (each frozen dataclass costs about 0.5 ms at import) and use cases.
ADMIN_MODULES = ("zus_m2m.admin_values", "zus_m2m.provisioning", "zus_m2m.rotation")
# boto3's wrapper over botocore: its import brings s3transfer (and multiprocessing), about 14 ms on 3.13;
# the function makes its clients with botocore's session (zus_m2m.wiring.aws_client).
SDK_WRAPPER_MODULES = ("boto3", "s3transfer")

# A fresh interpreter loads the handler as Lambda does, then answers two calls that need no AWS: a query
# parameter the route does not take (400) and a path it does not serve (404), through the error mapping
# and the audit line. It prints the statuses and which router modules were imported.
PROBE = """
import copy, importlib.util, json, sys
sys.path[:0] = [sys.argv[1] + "/layers/zus_m2m/python", sys.argv[1] + "/local"]
from zus_local.lambda_context import LocalLambdaContext
spec = importlib.util.spec_from_file_location("token_vending_app", sys.argv[1] + "/functions/token_vending/app.py")
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
imported_at_init = [name for name in json.loads(sys.argv[2]) if name in sys.modules]
event = json.loads(open(sys.argv[1] + "/events/apigw_get_token.json").read())
misspelt = copy.deepcopy(event)
misspelt["queryStringParameters"] = {"minttl": "5"}
elsewhere = copy.deepcopy(event)
elsewhere["rawPath"] = "/app-clients"
statuses = [
    module.lambda_handler(call, LocalLambdaContext("TokenVendingFunction", timeout_seconds=10))["statusCode"]
    for call in (misspelt, elsewhere)
]
print(json.dumps({
    "init": imported_at_init,
    "calls": [name for name in json.loads(sys.argv[2]) if name in sys.modules],
    "statuses": statuses,
}))
"""

# What the handler needs to import (placeholders: nothing is called at AWS).
ENVIRONMENT = {
    "TABLE_NAME": "zus-m2m-cold-start",
    "ADMIN_SECRET_NAME": "zus-m2m/cold-start/zus-m2m-admin",
    "ADMIN_PRINCIPALS": "arn:aws:iam::123456789012:role/platform-admin",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "cold-start",
    "AWS_SECRET_ACCESS_KEY": "cold-start",
    "POWERTOOLS_SERVICE_NAME": "zus-m2m",
    "POWERTOOLS_METRICS_NAMESPACE": "ZusM2M",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
    "PATH": "/usr/bin:/bin",
}


def test_the_vend_function_never_imports_a_router_the_admin_side_or_boto3_at_init_or_on_its_calls() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(ROOT), json.dumps(ROUTER_MODULES + ADMIN_MODULES + SDK_WRAPPER_MODULES)],
        env=ENVIRONMENT,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    seen = json.loads(out.stdout.strip().splitlines()[-1])

    assert seen["statuses"] == [400, 404]
    assert seen["init"] == []
    assert seen["calls"] == []
