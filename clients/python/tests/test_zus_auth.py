"""ZusAuth over real HTTP: a recording server on 127.0.0.1 refuses chosen bearer tokens with 401."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import requests
from client_support import FakeClock, FakeTokenRoute, RecordingServer, ScriptedTokens

from zus_m2m_client import TokenProvider, ZusAuth, fingerprint


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def test_every_request_carries_the_bearer_token(recording_server: RecordingServer, http: requests.Session) -> None:
    tokens = ScriptedTokens("token-a")
    answer = http.get(recording_server.url + "/patients", auth=ZusAuth(tokens), timeout=5)
    assert answer.status_code == 200
    assert [r.authorization for r in recording_server.received] == ["Bearer token-a"]
    assert tokens.reported == []


def test_a_refused_token_is_reported_and_the_request_sent_once_more_with_its_body(
    recording_server: RecordingServer, http: requests.Session
) -> None:
    recording_server.refused = {"token-a"}
    tokens = ScriptedTokens("token-a", "token-b")
    answer = http.post(recording_server.url + "/patients?x=1", json={"k": "v"}, auth=ZusAuth(tokens), timeout=5)
    assert answer.status_code == 200
    assert [r.status_code for r in answer.history] == [401]
    assert tokens.reported == [fingerprint("token-a")]
    first, second = recording_server.received
    assert (first.authorization, second.authorization) == ("Bearer token-a", "Bearer token-b")
    assert first.path == second.path == "/patients?x=1"
    assert json.loads(second.body) == {"k": "v"}
    assert second.headers["cookie"] == "seen=1"  # what the 401 set is kept, as a browser would
    assert answer.request.headers["Authorization"] == "Bearer token-b"


def test_a_file_body_is_rewound_for_the_retry(recording_server: RecordingServer, http: requests.Session) -> None:
    recording_server.refused = {"token-a"}
    body = io.BytesIO(b"0123456789")
    body.seek(2)
    answer = http.put(
        recording_server.url + "/files", data=body, auth=ZusAuth(ScriptedTokens("token-a", "token-b")), timeout=5
    )
    assert answer.status_code == 200
    assert [r.body for r in recording_server.received] == [b"23456789", b"23456789"]


def test_a_body_that_cannot_be_read_again_is_not_resent(
    recording_server: RecordingServer, http: requests.Session
) -> None:
    recording_server.refused = {"token-a"}
    tokens = ScriptedTokens("token-a", "token-b")
    answer = http.post(recording_server.url + "/stream", data=iter([b"a", b"b"]), auth=ZusAuth(tokens), timeout=5)
    assert answer.status_code == 401
    assert len(recording_server.received) == 1
    assert tokens.reported == [fingerprint("token-a")]


def test_the_retry_is_sent_once_even_when_it_is_refused_too(
    recording_server: RecordingServer, http: requests.Session
) -> None:
    recording_server.refused = {"token-a", "token-b"}
    tokens = ScriptedTokens("token-a", "token-b", "token-c")
    answer = http.get(recording_server.url + "/patients", auth=ZusAuth(tokens), timeout=5)
    assert answer.status_code == 401
    assert [r.authorization for r in recording_server.received] == ["Bearer token-a", "Bearer token-b"]


def test_no_retry_when_the_same_token_comes_back(recording_server: RecordingServer, http: requests.Session) -> None:
    recording_server.refused = {"token-a"}
    tokens = ScriptedTokens("token-a")
    answer = http.get(recording_server.url + "/patients", auth=ZusAuth(tokens), timeout=5)
    assert answer.status_code == 401
    assert len(recording_server.received) == 1
    assert tokens.reported == [fingerprint("token-a")]


def test_with_a_provider_the_retry_names_the_refused_token_to_the_service(
    recording_server: RecordingServer, http: requests.Session, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    clock = FakeClock()
    route = FakeTokenRoute(clock)
    provider = TokenProvider(
        "https://abc.execute-api.us-east-1.amazonaws.com", "billing", transport=route, clock=clock, sleep=clock.sleep
    )
    auth = ZusAuth(provider)
    recording_server.refused = {"token-1"}
    answer = http.get(recording_server.url + "/patients", auth=auth, timeout=5)
    assert answer.status_code == 200
    assert [call.get("refused") for call in route.calls] == [None, fingerprint("token-1")]
    assert provider.get_token().access_token == "token-2"
    shown = repr(auth) + caplog.text
    assert "token-1" not in shown
    assert "token-2" not in shown
    assert fingerprint("token-1") in caplog.text
