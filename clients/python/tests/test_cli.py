"""The CLI in process against an in-memory fake of the API (with the PATCH route the service is getting):
grant and revoke, the output formats, where options go, error lines. The real stack: test_local_stack.py."""

from __future__ import annotations

import json

import pytest
from client_support import FakeApi, problem

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
