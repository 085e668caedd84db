"""Bad input: the service's OpenAPI document (generated from the handlers, committed, checked for
drift), schemathesis against the local API, and hand-written cases: oversized bodies, wrong content
types, unicode and path-traversal names, missing and extra fields, odd ``minTtl`` and ``refused`` values.

Every answer: no 5xx, problem+json for every 4xx, and no answer slower than the function's timeout;
schemathesis also checks every answer against the document (status, content type, headers, schema).
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from typing import Any

import hypothesis
import pytest
import requests
import schemathesis
from reliability_calls import Answer
from reliability_contract import TIMEOUTS, violations
from reliability_results import RESULTS
from reliability_support import CONSUMER_ARN, ROOT, SOAK, profile
from schemathesis.specs.openapi.checks import unsupported_method

DOCUMENT = ROOT / "docs" / "openapi.json"
# The local stack's account (its consumer's).
ACCOUNT = CONSUMER_ARN.split(":")[4]


def _openapi_script() -> Any:
    spec = importlib.util.spec_from_file_location("reliability_openapi_script", ROOT / "scripts" / "openapi.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_committed_openapi_document_is_current() -> None:
    script = _openapi_script()
    fresh = script.render(script.generate())
    committed = DOCUMENT.read_text() if DOCUMENT.exists() else ""
    assert committed == fresh, "docs/openapi.json is out of date: run `make openapi`"


def test_openapi_document_describes_every_route_of_the_template() -> None:
    from zus_local.cfn_yaml import load_template

    resources = load_template(ROOT / "template.yaml")["Resources"]
    routes = {
        (event["Properties"]["Method"].lower(), event["Properties"]["Path"])
        for resource in resources.values()
        if resource.get("Type") == "AWS::Serverless::Function"
        for event in (resource["Properties"].get("Events") or {}).values()
        if event.get("Type") == "HttpApi"
    }
    document = json.loads(DOCUMENT.read_text())
    described = {(method, path) for path, item in document["paths"].items() for method in item}
    assert described == routes
    for path, item in document["paths"].items():
        for method, operation in item.items():
            statuses = set(operation["responses"])
            errors = {status for status in statuses if int(status) >= 400}
            assert errors, f"{method} {path} documents no error"
            for status in errors:
                content = operation["responses"][status]["content"]
                assert list(content) == ["application/problem+json"], (method, path, status)


# --- schemathesis ---------------------------------------------------------------------------------------
# Schemathesis' own pytest loader (``from_fixture``) does not run under pytest 9; its strategies do, so
# each operation gets a Hypothesis run of its own here, positive (valid) and negative (invalid) data.

_PATHS = json.loads(DOCUMENT.read_text()).get("paths", {}) if DOCUMENT.exists() else {}
# Negative data needs something to break: a parameter or a body (GET /app-clients has neither).
CASES = [
    (method.upper(), path, mode)
    for path, item in _PATHS.items()
    for method, operation in item.items()
    for mode in ("positive", "negative")
    if mode == "positive" or {"parameters", "requestBody"} & set(operation)
]
EXAMPLES = profile(25, 200)


@pytest.mark.parametrize(("method", "path", "mode"), CASES, ids=[f"{m} {p} {mode}" for m, p, mode in CASES])
def test_schemathesis(ctx: Any, method: str, path: str, mode: str) -> None:
    schema = schemathesis.openapi.from_path(str(DOCUMENT))
    schema.config.update(base_url=ctx.api.base)
    [operation] = [
        found
        for found in (result.ok() for result in schema.get_all_operations())  # type: ignore[union-attr]
        if found.method.upper() == method and found.path == path
    ]
    timeout = TIMEOUTS["token" if path.endswith("/token") else "provisioning"]
    row = RESULTS.row(f"bad input: schemathesis, {mode} data ({EXAMPLES} examples per operation)")
    session = requests.Session()
    session.auth = ctx.api.signer  # every case signed, as the local admin (the consumer on the token route)

    @hypothesis.settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=not SOAK,
        suppress_health_check=list(hypothesis.HealthCheck),
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
    )
    @hypothesis.given(case=operation.as_strategy(generation_mode=schemathesis.GenerationMode(mode)))
    def exercise(case: Any) -> None:
        if mode == "positive" and case.query:
            # A nextToken is valid only as a previous page gave it out; any other string is a 400 by design.
            case.query.pop("nextToken", None)
        if mode == "positive" and isinstance(case.body, dict) and isinstance(case.body.get("consumers"), list):
            # Consumers must be of the stack's own account (a 400 by design otherwise), which no static
            # schema can say: the generated ARNs are moved into it.
            case.body["consumers"] = [_in_account(arn, ACCOUNT) for arn in case.body["consumers"]]
        started = time.monotonic()
        response = case.call(session=session, timeout=timeout + 5)
        answer = Answer(
            case.method,
            case.formatted_path,
            response.status_code,
            {key.lower(): values[0] for key, values in response.headers.items() if values},
            response.content,
            started,
            time.monotonic(),
        )
        # 403: a name generated for the token route is no client of the consumer's; 429: a rotation of
        # one client requested twice in a row
        problems = violations(answer, {200, 201, 202, 204, 400, 403, 404, 409, 422, 429}, timeout)
        row.add([answer], bad=len(problems))
        assert not problems, problems
        # the document's checks: status, content type, headers and body schema of every answer
        case.validate_response(response, excluded_checks=[unsupported_method])

    exercise()


def _in_account(arn: Any, account: str) -> Any:
    """``arn`` with its account field replaced by ``account``."""
    if not isinstance(arn, str) or arn.count(":") < 5:
        return arn
    parts = arn.split(":", 5)
    return ":".join([*parts[:4], account, parts[5]])


# --- hand-written cases ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def existing(ctx: Any) -> dict[str, Any]:
    return dict(ctx.provision("bad-input"))


BAD_NAMES = [
    "..%2F..",
    "..%2F..%2Fetc%2Fpasswd",
    "%2e%2e",
    "..",
    "a%00b",
    "%00",
    "%F0%9F%98%80",  # an emoji
    "caf%C3%A9",
    "%E2%80%AE",  # right-to-left override
    "a%2Fb",
    "a%20b",
    "a%0Ab",
    "%25",
    "x" * 65,
    "%C0%AE%C0%AE",  # an overlong '.' (invalid UTF-8)
    "%FF",
]


def _record(scenario: str, answers: list[Answer], allowed: set[int], timeout: float) -> list[str]:
    problems: list[str] = []
    for answer in answers:
        problems += violations(answer, allowed, timeout)
    RESULTS.row(scenario).add(answers, bad=len(problems))
    return problems


def test_unicode_and_path_traversal_names(ctx: Any) -> None:
    answers = []
    for name in BAD_NAMES:
        answers += [
            ctx.api.raw("GET", f"/app-clients/{name}/token"),
            ctx.api.raw("GET", f"/app-clients/{name}"),
            ctx.api.raw("DELETE", f"/app-clients/{name}"),
            ctx.api.raw("POST", f"/app-clients/{name}/rotations"),
        ]
    for raw in (
        "/app-clients/../app-clients",
        "/app-clients/%2e%2e/token",
        "/app-clients//token",
        "/app-clients/a/../b",
    ):
        answers.append(ctx.api.raw("GET", raw))
    problems = _record("bad input: unicode and path-traversal names", answers, {400, 404}, TIMEOUTS["provisioning"])
    assert not problems, "\n".join(problems)
    # as a JSON name too
    bodies = ["../..", "a\x00b", "😀", "café", "a/b", "", " ", "x" * 65, "\u202e", "..\\..\\x"]
    answers = [ctx.api.create(name) for name in bodies]
    problems = _record("bad input: unicode and path-traversal names", answers, {400}, TIMEOUTS["provisioning"])
    assert not problems, "\n".join(problems)


def test_missing_extra_and_mistyped_fields(ctx: Any, existing: dict[str, Any]) -> None:
    documents: list[Any] = [
        {},
        {"roleName": "Builder Admin"},
        {"name": existing["name"], "extra": 1},
        {"name": existing["name"], "roleName": ""},
        {"name": existing["name"], "roleName": 7},
        {"name": existing["name"], "roleName": "x" * 129},
        {"name": None},
        {"name": 12},
        {"name": ["a"]},
        {"name": {"a": 1}},
        {"name": "."},  # dot-segments: such a client could never be addressed by URL
        {"name": ".."},
        [],
        ["name"],
        "name",
        7,
        None,
        True,
    ]
    answers = [ctx.api.call("POST", "/app-clients", json=document) for document in documents]
    answers.append(ctx.api.create(existing["name"], "Care Team User"))  # 409: the name exists with another role
    answers.append(ctx.api.create(f"{existing['name']}-x", "No Such Role"))  # 422: not a role the stack allows
    problems = _record(
        "bad input: missing, extra and mistyped fields", answers, {400, 409, 422}, TIMEOUTS["provisioning"]
    )
    assert [answer.status for answer in answers[-2:]] == [409, 422]
    assert not problems, "\n".join(problems)


def test_wrong_content_types_and_malformed_bodies(ctx: Any, existing: dict[str, Any]) -> None:
    body = json.dumps({"name": "content-type-check"}).encode()
    answers = [
        ctx.api.call("POST", "/app-clients", data=body, headers={"content-type": kind})
        for kind in ("text/plain", "application/xml", "application/x-www-form-urlencoded", "multipart/form-data")
    ]
    answers += [
        ctx.api.call("POST", "/app-clients", data=raw, headers={"content-type": "application/json"})
        for raw in (b"", b"{", b'{"name": "a"', b"\xff\xfe\x00", b"null", b'{"name": "a"}{"name": "b"}', b"\x00" * 64)
    ]
    problems = _record("bad input: content types and malformed bodies", answers, {400}, TIMEOUTS["provisioning"])
    assert not problems, "\n".join(problems)


def test_unknown_query_parameters_keys_given_twice_and_bad_pages(ctx: Any, existing: dict[str, Any]) -> None:
    name = existing["name"]
    json_type = {"content-type": "application/json"}
    answers = [
        ctx.api.raw("GET", f"/app-clients/{name}/token?minttl=5000"),
        ctx.api.raw("GET", f"/app-clients/{name}/token?minTtl=60&x=1"),
        ctx.api.raw("GET", "/app-clients?limitt=5"),
        ctx.api.raw("GET", f"/app-clients/{name}?verbose=1"),
        ctx.api.raw("DELETE", f"/app-clients/{name}?force=true"),
        ctx.api.raw("POST", f"/app-clients/{name}/rotations?repair=true"),
        ctx.api.raw("POST", "/app-clients?dryRun=1", json_type, json.dumps({"name": "query-check"}).encode()),
        ctx.api.raw("POST", "/app-clients", json_type, b'{"name": "dup-key-a", "name": "dup-key-b"}'),
        ctx.api.raw("POST", "/app-clients", json_type, b'{"name": "dup-key-c", "roleName": {"x": 1, "x": 2}}'),
        ctx.api.raw("POST", f"/app-clients/{name}/rotations", json_type, b'{"repair": true, "repair": false}'),
        ctx.api.raw("POST", f"/app-clients/{name}/rotations", json_type, b'{"repair": "yes"}'),
        ctx.api.raw("POST", f"/app-clients/{name}/rotations", json_type, b'{"force": true}'),
        ctx.api.raw("GET", "/app-clients?limit=0"),
        ctx.api.raw("GET", "/app-clients?limit=101"),
        ctx.api.raw("GET", "/app-clients?nextToken=tampered"),
        ctx.api.raw("GET", "/app-clients?nextToken=eyJwayI6IDF9"),
    ]
    problems = _record(
        "bad input: unknown query parameters, keys given twice, bad pages", answers, {400}, TIMEOUTS["provisioning"]
    )
    assert not problems, "\n".join(problems)
    # Nothing was done: the client is still there, nothing was created
    assert ctx.api.get(name).status == 200
    assert all(ctx.api.get(other).status == 404 for other in ("query-check", "dup-key-a", "dup-key-b", "dup-key-c"))


def test_oversized_bodies(ctx: Any, existing: dict[str, Any]) -> None:
    megabyte = 1024 * 1024
    answers = [
        ctx.api.call("POST", "/app-clients", json={"name": "a" * megabyte}),
        ctx.api.call("POST", "/app-clients", json={"name": "ok-name", "roleName": "r" * megabyte}),
        ctx.api.call("POST", "/app-clients", json={"name": "ok-name", **{f"k{i}": "v" * 64 for i in range(10_000)}}),
        ctx.api.call("POST", "/app-clients", data=b"[" * megabyte, headers={"content-type": "application/json"}),
        ctx.api.call("POST", "/app-clients", data=b"x" * (11 * megabyte), headers={"content-type": "application/json"}),
    ]
    # A body on routes that take none is ignored.
    ignored = [
        ctx.api.call("GET", f"/app-clients/{existing['name']}/token", data=b"x" * megabyte),
        ctx.api.call("GET", f"/app-clients/{existing['name']}", data=b"x" * megabyte),
    ]
    problems = _record("bad input: oversized bodies (1 MB, 11 MB)", answers, {400}, TIMEOUTS["provisioning"])
    problems += _record("bad input: oversized bodies (1 MB, 11 MB)", ignored, {200}, TIMEOUTS["token"])
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("value", "status"),
    [
        ("-1", 400),
        ("1e9", 400),
        ("abc", 400),
        ("", 400),
        ("1.5", 400),
        ("0x10", 400),
        ("99999999999999999999", 400),
        ("3001", 400),
        ("%00", 400),
        ("0", 200),
        ("3000", 200),
        ("60", 200),
    ],
)
def test_min_ttl_values(ctx: Any, existing: dict[str, Any], value: str, status: int) -> None:
    answer = ctx.api.raw("GET", f"/app-clients/{existing['name']}/token?minTtl={value}")
    problems = _record("bad input: minTtl -1, 1e9, abc and others", [answer], {status}, TIMEOUTS["token"])
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("value", "status"),
    [
        ("", 400),
        ("0123456789ABCDEF", 400),
        ("0123456789abcde", 400),
        ("0123456789abcdef0", 400),
        ("0123456789abcdef%20", 400),
        ("0123456789abcdeg", 400),
        ("0123456789abcde%00", 400),
        ("eyJhbGciOiJIUzI1NiJ9.e30.x", 400),
        ("0123456789abcdef", 200),  # a fingerprint, of no token: the cached token, nothing minted
    ],
)
def test_refused_values(ctx: Any, existing: dict[str, Any], value: str, status: int) -> None:
    answer = ctx.api.raw("GET", f"/app-clients/{existing['name']}/token?refused={value}")
    problems = _record(
        "bad input: refused in capitals, too short, a token and others", [answer], {status}, TIMEOUTS["token"]
    )
    assert not problems, "\n".join(problems)
