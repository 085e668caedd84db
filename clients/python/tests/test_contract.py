"""One contract: every request the Python client sends is one docs/openapi.json describes (its method
and path, its query parameters, its body's fields), and the problem fields its errors read are the
document's. A route change there that breaks the client fails here (the TypeScript client compiles
against types its build generates from the same document: clients/typescript/README.md)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from client_support import FakeApi

from zus_m2m_client import HttpResponse, ZusM2MApi

OPENAPI = json.loads((Path(__file__).resolve().parents[3] / "docs" / "openapi.json").read_text())


def operation(method: str, path: str) -> dict[str, Any]:
    for template, item in OPENAPI["paths"].items():
        if re.fullmatch(re.sub(r"\{[^}]+\}", "[^/]+", template), path) and method.lower() in item:
            return dict(item[method.lower()])
    raise AssertionError(f"{method} {path} is not a route of docs/openapi.json")


def schema(reference: Mapping[str, Any]) -> dict[str, Any]:
    name = reference["$ref"].rsplit("/", 1)[-1]
    return dict(OPENAPI["components"]["schemas"][name])


class ContractTransport(FakeApi):
    """The fake API, checking each request against the document before answering it."""

    def request(
        self, method: str, path: str, *, query: Mapping[str, str] | None = None, body: object = None
    ) -> HttpResponse:
        described = operation(method, path)
        allowed = {parameter["name"] for parameter in described.get("parameters", []) if parameter["in"] == "query"}
        assert set(query or {}) <= allowed, f"{method} {path}: query {sorted(query or {})}, the document {allowed}"
        if body is not None:
            content = described["requestBody"]["content"]["application/json"]["schema"]
            fields = schema(content)
            assert isinstance(body, dict)
            assert set(body) <= set(fields["properties"]), f"{method} {path}: body {sorted(body)}"
            assert set(fields.get("required", [])) <= set(body), f"{method} {path}: body {sorted(body)}"
        return super().request(method, path, query=query, body=body)


def test_every_request_of_the_client_is_a_route_of_the_document() -> None:
    transport = ContractTransport()
    api = ZusM2MApi("http://127.0.0.1:9", transport=transport)
    api.create_client("billing-service", role_name="Builder Admin", consumers=["arn:aws:iam::123456789012:root"])
    api.list_page(page_size=2)
    api.list_clients(page_size=1)
    api.get_client("billing-service")
    api.set_consumers("billing-service", ["arn:aws:iam::123456789012:root"])
    api.token("billing-service", min_ttl=300, refused="0123456789abcdef")
    api.delete_client("billing-service")
    sent = {(method, path.count("/")) for method, path, _ in transport.calls}
    assert sent == {("POST", 1), ("GET", 1), ("GET", 2), ("PATCH", 2), ("GET", 3), ("DELETE", 2)}


def test_the_problem_fields_errors_read_are_the_documents() -> None:
    problem = OPENAPI["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "detail"} <= set(problem["required"])
    token = OPENAPI["components"]["schemas"]["AccessToken"]
    assert set(token["required"]) == {"access_token", "token_type", "expires_in", "expires_at"}
