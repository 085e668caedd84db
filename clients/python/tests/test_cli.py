"""The CLI in process against an in-memory fake of the API (with the PATCH route the service is getting):
grant and revoke, the output formats, where options go, error lines. The real stack: test_local_stack.py."""

from __future__ import annotations

import json

import pytest
from client_support import FakeApi, problem

from zus_m2m_client import HttpResponse, ZusM2MApi
from zus_m2m_client.cli import main

API = ["--api-url", "https://abc.execute-api.us-east-1.amazonaws.com"]
ROLE = "arn:aws:iam::123456789012:role/billing"
OTHER = "arn:aws:iam::123456789012:role/reports"


def run(capsys: pytest.CaptureFixture[str], api: FakeApi, *argv: str) -> tuple[int, str, str]:
    code = main([*API, *argv], transport=api)
    out, err = capsys.readouterr()
    return code, out, err


def test_grant_adds_the_arn_to_the_consumers(capsys: pytest.CaptureFixture[str]) -> None:
    api = FakeApi("billing")
    api.clients["billing"]["consumers"] = [OTHER]
    code, out, _ = run(capsys, api, "clients", "grant", "billing", ROLE)
    assert code == 0
    assert json.loads(out)["consumers"] == [OTHER, ROLE]
    assert api.calls == [
        ("GET", "/app-clients/billing", None),
        ("PATCH", "/app-clients/billing", {"consumers": [OTHER, ROLE]}),
    ]


def test_granting_twice_or_revoking_what_is_not_there_changes_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    api = FakeApi("billing")
    api.clients["billing"]["consumers"] = [ROLE]
    assert run(capsys, api, "clients", "grant", "billing", ROLE)[0] == 0
    assert run(capsys, api, "clients", "revoke", "billing", OTHER)[0] == 0
    assert [method for method, _, _ in api.calls] == ["GET", "GET"]


def test_revoke_removes_the_arn(capsys: pytest.CaptureFixture[str]) -> None:
    api = FakeApi("billing")
    api.clients["billing"]["consumers"] = [ROLE, OTHER]
    code, out, _ = run(capsys, api, "clients", "revoke", "billing", ROLE)
    assert code == 0
    assert json.loads(out)["consumers"] == [OTHER]
    assert api.calls[-1] == ("PATCH", "/app-clients/billing", {"consumers": [OTHER]})


def test_a_client_without_consumers_yet_is_granted_its_first(capsys: pytest.CaptureFixture[str]) -> None:
    api = FakeApi("billing")
    del api.clients["billing"]["consumers"]  # what the service answers before it knows consumers
    assert run(capsys, api, "clients", "grant", "billing", ROLE)[0] == 0
    assert api.calls[-1] == ("PATCH", "/app-clients/billing", {"consumers": [ROLE]})


def test_create_sends_the_role_and_every_consumer(capsys: pytest.CaptureFixture[str]) -> None:
    api = FakeApi()
    argv = ["clients", "create", "billing", "--role", "Care Team User", "--consumer", ROLE, "--consumer", OTHER]
    assert run(capsys, api, *argv)[0] == 0
    assert api.calls == [
        ("POST", "/app-clients", {"name": "billing", "roleName": "Care Team User", "consumers": [ROLE, OTHER]})
    ]


def test_tables_for_people_and_options_after_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    api = FakeApi("billing", "reports")
    api.clients["billing"]["consumers"] = [ROLE]
    code, out, _ = run(capsys, api, "clients", "list", "--output", "table")
    assert code == 0
    header, *rows = out.splitlines()
    assert header.split("  ")[0] == "NAME"
    assert rows[0].startswith("billing ")
    assert rows[0].endswith(ROLE)
    assert "2027-01-15 08:00:00Z" in rows[0]
    code, out, _ = run(capsys, api, "--output", "table", "clients", "show", "reports")
    assert out.splitlines()[1].split() == ["name", "reports"]


def test_token_prints_the_token_alone(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, FakeApi("billing"), "token", "billing", "--min-ttl", "120")
    assert (code, out, err) == (0, "token-1\n", "")


def test_an_error_is_one_line_on_stderr_with_its_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, FakeApi(), "clients", "show", "nope")
    assert (code, out) == (3, "")
    assert err == "zus-m2m: 404 Test Problem: no managed app client named 'nope'\n"


def test_a_throttled_answer_says_when_to_retry(capsys: pytest.CaptureFixture[str]) -> None:
    api = FakeApi("billing")
    api.script.append(problem(429, "the hourly budget is spent", retry_after=42))  # beyond the 20 s max wait
    code, _, err = run(capsys, api, "token", "billing")
    assert code == 6
    assert err == "zus-m2m: 429 Test Problem: the hourly budget is spent (retry after 42 s)\n"


@pytest.mark.parametrize(
    "argv",
    [
        ["clients", "grant", "billing", "role/billing"],
        ["clients", "show", "a/b"],
        ["clients", "create", "ZUS-M2M-ADMIN"],  # names are lower case (the service says 400)
        ["token", "billing", "--min-ttl", "3001"],
        ["clients", "frobnicate"],
        ["token"],
    ],
)
def test_bad_usage_exits_2(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([*API, *argv], transport=FakeApi("billing"))
    assert exited.value.code == 2
    assert "usage: zus-m2m" in capsys.readouterr().err


def test_the_api_url_is_required(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ZUS_M2M_API_URL", raising=False)
    with pytest.raises(SystemExit) as exited:
        main(["clients", "list"], transport=FakeApi())
    assert exited.value.code == 2
    assert "--api-url is required (or set ZUS_M2M_API_URL)" in capsys.readouterr().err


# --- issue 20: every page, and the rough edges an operator met ------------------------------------------


def test_list_shows_every_page_unless_limited(capsys: pytest.CaptureFixture[str]) -> None:
    api = FakeApi(*(f"client-{n:02}" for n in range(7)))
    code, out, _ = run(capsys, api, "clients", "list", "--page-size", "3")
    assert code == 0
    assert [c["name"] for c in json.loads(out)["appClients"]] == [f"client-{n:02}" for n in range(7)]
    assert api.queries == [{"limit": "3"}, {"limit": "3", "nextToken": "p3"}, {"limit": "3", "nextToken": "p6"}]
    code, out, _ = run(capsys, api, "clients", "list", "--page-size", "3", "--limit", "4", "--output", "table")
    assert (code, len(out.splitlines())) == (0, 1 + 4)
    assert len(api.queries) == 3 + 2  # the third page is not asked for


def test_list_clients_reads_every_page_of_the_api() -> None:
    api = FakeApi(*(f"client-{n:03}" for n in range(120)))  # 3 pages of the API's default 50
    listed = ZusM2MApi("https://abc.execute-api.us-east-1.amazonaws.com", transport=api).list_clients()
    assert [c["name"] for c in listed] == [f"client-{n:03}" for n in range(120)]
    assert [query.get("nextToken") for query in api.queries] == [None, "p50", "p100"]


def test_api_gateways_own_403_keeps_its_reason(capsys: pytest.CaptureFixture[str]) -> None:
    api = FakeApi()
    reason = (
        "User: arn:aws:iam::123456789012:user/ops is not authorized to perform: execute-api:Invoke on "
        "resource: arn:aws:execute-api:us-east-1:********7890:abc/prod/GET/app-clients"
    )
    body = json.dumps({"Message": reason}).encode()
    api.script.append(HttpResponse(403, {"content-type": "application/json"}, body))
    code, _, err = run(capsys, api, "clients", "list")
    assert (code, err) == (4, f"zus-m2m: 403 Forbidden: {reason}\n")


@pytest.mark.parametrize("url", ["ftp://abc.example", "https://user@abc.example", "not a url"])
def test_the_api_url_must_be_http_or_https_and_says_so(capsys: pytest.CaptureFixture[str], url: str) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--api-url", url, "clients", "list"], transport=FakeApi())
    assert exited.value.code == 2
    assert "the API URL is http(s)://host[:port][/base-path]" in capsys.readouterr().err
    assert main(["--api-url", "http://127.0.0.1:3000/", "clients", "list"], transport=FakeApi()) == 0


def test_delete_says_what_it_deleted(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, FakeApi("billing"), "clients", "delete", "billing")
    assert (code, json.loads(out)) == (0, {"name": "billing", "deleted": True})
    code, out, _ = run(capsys, FakeApi("billing"), "clients", "delete", "billing", "--output", "table")
    assert out.splitlines()[1:] == ["name     billing", "deleted  yes"]


def test_token_with_output_json_prints_the_token_document(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, FakeApi("billing"), "token", "billing", "--output", "json")
    assert code == 0
    assert json.loads(out) == {"access_token": "token-1", "token_type": "Bearer", "expires_in": 3600, "expires_at": 1}


def test_a_grant_that_changes_nothing_prints_the_record_as_a_change_would(capsys: pytest.CaptureFixture[str]) -> None:
    api = FakeApi("billing")
    api.clients["billing"].update(consumers=[ROLE], lastRotation=1, nextRotation=2, budget={"usedLastHour": 1})
    _, changed, _ = run(capsys, api, "clients", "grant", "billing", OTHER)
    _, unchanged, _ = run(capsys, api, "clients", "grant", "billing", OTHER)
    assert set(json.loads(unchanged)) == set(json.loads(changed)) - {"lastRotation", "nextRotation", "budget"}
    assert "budget" not in unchanged


def test_clients_help_names_every_action(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"], transport=FakeApi())
    listed = next(line for line in capsys.readouterr().out.splitlines() if line.strip().startswith("clients"))
    for action in ("create", "list", "show", "grant", "revoke", "rotate", "delete"):
        assert action in listed


def test_a_consumer_before_the_name_leaves_the_name_alone(capsys: pytest.CaptureFixture[str]) -> None:
    api = FakeApi()
    assert run(capsys, api, "clients", "create", "--consumer", ROLE, "billing")[0] == 0
    assert api.calls == [("POST", "/app-clients", {"name": "billing", "consumers": [ROLE]})]
