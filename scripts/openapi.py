"""``make openapi``: docs/openapi.json, generated from the handlers.

Each API function describes its own routes: the provisioning function's resolver (``app``) its
decorators and handlers' signatures; the token vending function, which serves its one route without
a resolver, its ``ROUTE`` (method, path, handler) with the arguments ``zus_m2m.openapi.UNROUTED``
gives it, put here on a resolver of its own. Powertools builds a document from each resolver
(``app.get_openapi_schema()``, which needs pydantic: the dev venv has it, the Lambda layer does not).
This script imports both handlers as Lambda would (with a placeholder environment; nothing is
called), merges their documents into one, puts back the parameters the decorators declare (see
``zus_m2m.openapi``), adds the shared schemas and drops Powertools' unused validation-error schemas.

    python scripts/openapi.py            # write docs/openapi.json
    python scripts/openapi.py --check    # exit 1 if docs/openapi.json differs from a fresh generation
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import json
import re
import sys
import tomllib
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver

from zus_local.local_aws import applied_environment

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "docs" / "openapi.json"
FUNCTIONS = ("token_vending", "provisioning")
METHODS = ("get", "put", "post", "delete", "patch", "head", "options")

# What a handler needs to import: placeholders, never used (the handlers make no call at import).
PLACEHOLDER_ENVIRONMENT = {
    "TABLE_NAME": "zus-m2m-openapi",
    "ADMIN_SECRET_NAME": "zus-m2m/openapi/zus-m2m-admin",
    "ADMIN_PRINCIPALS": "arn:aws:iam::123456789012:role/openapi",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "openapi",
    "AWS_SECRET_ACCESS_KEY": "openapi",
    "POWERTOOLS_SERVICE_NAME": "zus-m2m",
    "POWERTOOLS_METRICS_NAMESPACE": "ZusM2M",
}

DESCRIPTION = (
    "Provision, store, rotate and vend Zus Health machine-to-machine credentials. Deployed, every "
    "route is behind API Gateway with AWS_IAM authorisation (SigV4-signed requests): the stack's admins "
    "(AdminPrincipals) manage clients, a client's consumers get its token (docs/security.md). Errors are "
    "application/problem+json (RFC 9457); 429 and 503 carry Retry-After. Generated from the handlers "
    "by scripts/openapi.py (make openapi)."
)


def _load_handler(function: str) -> Any:
    path = ROOT / "functions" / function / "app.py"
    spec = importlib.util.spec_from_file_location(f"openapi_{function}_{uuid.uuid4().hex}", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    with applied_environment(PLACEHOLDER_ENVIRONMENT):
        spec.loader.exec_module(module)
    return module


def _resolver(module: Any, unrouted: Mapping[tuple[str, str], Mapping[str, Any]]) -> Any:
    """The handler's resolver, or one made for the route it serves without one (``ROUTE``)."""
    if hasattr(module, "app"):
        return module.app
    method, path, handler = module.ROUTE
    app = APIGatewayHttpResolver()

    def documented() -> None:
        """Never called: the route's entry in the document."""

    documented.__name__ = handler.__name__
    # The path's parameters as a handler's signature, for Powertools to infer as it does for a handler.
    documented.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=str)
            for name in re.findall(r"<(\w+)>", path)
        ]
    )
    app.route(path, method, **unrouted[(method, path)])(documented)
    return app


def _version() -> str:
    with (ROOT / "pyproject.toml").open("rb") as file:
        return str(tomllib.load(file)["project"]["version"])


def generate() -> dict[str, Any]:
    """The merged document of both resolvers."""
    layer = str(ROOT / "layers" / "zus_m2m" / "python")
    if layer not in sys.path:
        sys.path.insert(0, layer)
    from zus_m2m import openapi

    paths: dict[str, dict[str, Any]] = {}
    for function in FUNCTIONS:
        app = _resolver(_load_handler(function), openapi.UNROUTED)
        document = json.loads(app.get_openapi_json_schema(title="zus-m2m", version=_version()))
        for path, item in document.get("paths", {}).items():
            for method, operation in item.items():
                if method in METHODS:
                    _merge_declared_parameters(operation, openapi.PARAMETERS_EXTENSION)
                    if paths.get(path, {}).get(method):
                        raise SystemExit(f"{method.upper()} {path} is served by two functions")
                    paths.setdefault(path, {})[method] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "zus-m2m", "version": _version(), "description": DESCRIPTION},
        "servers": [{"url": "/"}],
        "paths": {path: paths[path] for path in sorted(paths)},
        "components": {"schemas": dict(openapi.SCHEMAS)},
    }


def _merge_declared_parameters(operation: dict[str, Any], extension: str) -> None:
    """Powertools lists the signature's parameters; the decorator's declared ones replace them by
    (name, in), in the declared order, and the extension itself is dropped."""
    declared = operation.pop(extension, [])
    inferred = operation.get("parameters", [])
    keys = {(parameter["name"], parameter["in"]) for parameter in declared}
    merged = declared + [parameter for parameter in inferred if (parameter["name"], parameter["in"]) not in keys]
    if merged:
        operation["parameters"] = merged


def render(document: Mapping[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/openapi.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail if the committed document is out of date")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    fresh = render(generate())
    if args.check:
        current = args.output.read_text() if args.output.exists() else ""
        if current != fresh:
            print(f"{args.output} is out of date: run `make openapi`", file=sys.stderr)
            return 1
        print(f"{args.output} is up to date")
        return 0
    args.output.write_text(fresh)
    print(f"wrote {args.output.relative_to(ROOT) if args.output.is_relative_to(ROOT) else args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
