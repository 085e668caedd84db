"""The SigV4 transport: which URL and region it signs for (pure), and the signature a server receives
(a recording server on 127.0.0.1 checks it against botocore's own computation)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import botocore.session
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from client_support import RecordingServer

from zus_m2m_client import ConfigurationError, SigV4Transport
from zus_m2m_client.transport import normalize_api_url, region_from_url, resolve_region

KEY_ID, SECRET, SESSION_TOKEN = "AKIDCLIENTTEST", "client-test-secret-key", "client-test-session-token"


def session_with(**config: str) -> botocore.session.Session:
    session = botocore.session.Session()
    session.set_credentials(KEY_ID, SECRET, SESSION_TOKEN)
    for name, value in config.items():
        session.set_config_variable(name, value)
    return session


@pytest.mark.parametrize(
    ("url", "region"),
    [
        ("https://abc123.execute-api.eu-west-2.amazonaws.com", "eu-west-2"),
        ("https://abc123.execute-api.us-gov-west-1.amazonaws.com/prod/", "us-gov-west-1"),
        ("https://abc123.execute-api.cn-north-1.amazonaws.com.cn", "cn-north-1"),
        ("https://abc-vpce-0123.execute-api.ap-southeast-2.amazonaws.com", "ap-southeast-2"),
        ("https://m2m.example.com", None),
        ("http://127.0.0.1:3000", None),
    ],
)
def test_the_region_of_an_execute_api_url(url: str, region: str | None) -> None:
    assert region_from_url(url) == region


def test_the_region_given_wins_then_the_urls_then_the_sessions() -> None:
    url = "https://abc123.execute-api.eu-west-2.amazonaws.com"
    assert resolve_region("us-east-1", url, "ca-central-1") == "us-east-1"
    assert resolve_region(None, url, "ca-central-1") == "eu-west-2"
    assert resolve_region(None, "https://m2m.example.com", "ca-central-1") == "ca-central-1"
    with pytest.raises(ConfigurationError, match="no AWS region"):
        resolve_region(None, "https://m2m.example.com", None)


def test_a_transport_takes_its_region_from_the_session_then_aws_region(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    monkeypatch.setenv("AWS_REGION", "ap-south-1")
    assert SigV4Transport("https://m2m.example.com", session=session_with(region="sa-east-1")).region == "sa-east-1"
    assert SigV4Transport("https://m2m.example.com", session=session_with()).region == "ap-south-1"
    monkeypatch.delenv("AWS_REGION")
    with pytest.raises(ConfigurationError, match="no AWS region"):
        SigV4Transport("https://m2m.example.com", session=session_with())


@pytest.mark.parametrize(
    ("url", "normalized"),
    [
        ("https://abc.execute-api.us-east-1.amazonaws.com/", "https://abc.execute-api.us-east-1.amazonaws.com"),
        ("https://m2m.example.com/base/path/", "https://m2m.example.com/base/path"),
        (" http://127.0.0.1:3000 ", "http://127.0.0.1:3000"),
    ],
)
def test_api_urls_are_normalized(url: str, normalized: str) -> None:
    assert normalize_api_url(url) == normalized


@pytest.mark.parametrize(
    "url", ["ftp://m2m.example.com", "m2m.example.com", "https://user:pw@m2m.example.com", "https://h/?a=1", ""]
)
def test_other_api_urls_are_refused_without_being_echoed(url: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        normalize_api_url(url)
    assert "pw" not in str(raised.value)


def test_a_missing_profile_is_a_configuration_error() -> None:
    transport = SigV4Transport("http://127.0.0.1:9", session=botocore.session.Session(profile="no-such-profile"))
    with pytest.raises(ConfigurationError, match=r"The config profile \(no-such-profile\) could not be found"):
        transport.request("GET", "/app-clients")


def test_no_credentials_is_a_configuration_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    transport = SigV4Transport("http://127.0.0.1:9", session=botocore.session.Session())
    with pytest.raises(ConfigurationError, match="no AWS credentials found"):
        transport.request("GET", "/app-clients")


def test_requests_carry_a_sigv4_signature_for_execute_api(
    recording_server: RecordingServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    transport = SigV4Transport(recording_server.url + "/base", session=session_with(), region="eu-west-2")
    answer = transport.request("PATCH", "/app-clients/billing", query={"minTtl": "300"}, body={"consumers": ["a"]})
    assert answer.status == 200

    [received] = recording_server.received
    assert (received.method, received.path) == ("PATCH", "/base/app-clients/billing?minTtl=300")
    assert received.body == b'{"consumers": ["a"]}'
    assert received.headers["x-amz-security-token"] == SESSION_TOKEN
    fields = re.fullmatch(
        r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/\d{8}/(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request, "
        r"SignedHeaders=(?P<signed>[^,]+), Signature=(?P<signature>[0-9a-f]{64})",
        received.authorization,
    )
    assert fields is not None, received.authorization
    assert (fields["key"], fields["region"], fields["service"]) == (KEY_ID, "eu-west-2", "execute-api")
    signed = fields["signed"].split(";")
    assert {"host", "x-amz-date", "x-amz-security-token", "content-type"} <= set(signed)

    # The request as it arrived, signed again by botocore at the same instant, gives the same signature:
    # nothing between signing and sending changed the path, query, signed headers or body.
    again = AWSRequest(
        method=received.method,
        url=recording_server.url + received.path,
        data=received.body,
        headers={name: received.headers[name] for name in signed},
    )
    again.context["timestamp"] = received.headers["x-amz-date"]
    signer = SigV4Auth(Credentials(KEY_ID, SECRET, SESSION_TOKEN), "execute-api", "eu-west-2")
    assert signer.signature(signer.string_to_sign(again, signer.canonical_request(again)), again) == fields["signature"]

    # botocore logs the canonical request (with the session token) and the signature at DEBUG: not ours.
    assert "Calculating signature using v4 auth." in caplog.text
    for secret in (SECRET, SESSION_TOKEN, fields["signature"]):
        assert secret not in caplog.text
