"""``zus_m2m_client.powertools.ZusTokenProvider`` against the whole local stack (``make dev``) over HTTP,
signed as the stack's local consumer; token-route calls counted from the stack's console, tokens minted
at Zus from the emulator's stats."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import botocore.session
import pytest
import requests
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError
from client_support import minted_long_ago, token_route_calls, wait_until

from zus_local.local_principals import CONSUMER_USER as CONSUMER_PROFILE
from zus_m2m_client import ForbiddenError, powertools
from zus_m2m_client.api import fingerprint
from zus_m2m_client.powertools import ZusTokenProvider


def tokens(stack: Any, session: botocore.session.Session, **options: Any) -> ZusTokenProvider:
    return ZusTokenProvider(stack.api, session=session, **options)


def answers_at_zus(stack: Any, record: Mapping[str, Any], token: str) -> int:
    url = f"{stack.zus}/auth/app-clients/{record['appClientId']}"
    return requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10).status_code


def mints(stack: Any, record: Mapping[str, Any]) -> int:
    stats = requests.get(f"{stack.zus}/_emulator/stats", timeout=5).json()
    return int(stats["tokenRequests"].get(record["clientId"], 0))


def test_get_returns_a_token_zus_accepts_and_caches_it(
    local_stack: Any, managed: Any, consumer_session: botocore.session.Session
) -> None:
    record = managed("pt-cached")
    provider = tokens(local_stack, consumer_session)
    values = {provider.get("pt-cached", max_age=60) for _ in range(20)}
    (token,) = values
    assert answers_at_zus(local_stack, record, token) == 200
    assert token_route_calls(local_stack, "pt-cached") == 1


def test_max_age_bounds_the_cache(local_stack: Any, managed: Any, consumer_session: botocore.session.Session) -> None:
    """The client's TokenProvider is told the token was refused behind the cache's back: the cache
    keeps answering it until max_age, then the replacement comes through."""
    managed("pt-max-age")
    provider = tokens(local_stack, consumer_session)
    first = provider.get("pt-max-age", max_age=1)
    minted_long_ago(local_stack, "pt-max-age")
    provider.token_provider("pt-max-age").report_refused(first)
    assert provider.get("pt-max-age", max_age=1) == first  # cached
    wait_until(lambda: provider.get("pt-max-age", max_age=1) != first, "the cached token to age out", timeout=20)
    assert token_route_calls(local_stack, "pt-max-age") == 2


def test_a_cached_token_never_outlives_its_min_ttl(
    local_stack: Any, managed: Any, consumer_session: botocore.session.Session
) -> None:
    """Tokens live an hour; with min_ttl=3000 one is good for about 600 s, however long max_age."""
    managed("pt-expiry")
    provider = tokens(local_stack, consumer_session, min_ttl=3000, refresh_margin=0)
    provider.get("pt-expiry", max_age=7200)
    (cached,) = provider.store.values()
    assert cached.ttl <= datetime.now() + timedelta(seconds=600)


def test_force_fetch_asks_the_token_route_again(
    local_stack: Any, managed: Any, consumer_session: botocore.session.Session
) -> None:
    managed("pt-force")
    provider = tokens(local_stack, consumer_session)
    first = provider.get("pt-force", max_age=300)
    assert provider.get("pt-force", max_age=300, force_fetch=True) == first  # the service's cached token
    assert provider.get("pt-force", max_age=300) == first
    assert token_route_calls(local_stack, "pt-force") == 2


def test_a_forced_fetch_replaces_the_token_the_provider_holds(
    local_stack: Any, managed: Any, consumer_session: botocore.session.Session
) -> None:
    """Another process had the token replaced: the forced fetch's answer is what later calls get, from
    the client's TokenProvider too (max_age=0 skips Powertools' cache)."""
    managed("pt-force-held")
    a, b = tokens(local_stack, consumer_session), tokens(local_stack, consumer_session)
    first = a.get("pt-force-held", max_age=0)
    minted_long_ago(local_stack, "pt-force-held")
    b.token_provider("pt-force-held").report_refused(first)
    replaced = fingerprint(b.get("pt-force-held", max_age=0))
    assert replaced != fingerprint(first)
    assert fingerprint(a.get("pt-force-held", max_age=0, force_fetch=True)) == replaced
    assert fingerprint(a.get("pt-force-held", max_age=0)) == replaced


def test_a_refused_token_is_replaced_once_for_every_process(
    local_stack: Any, managed: Any, consumer_session: botocore.session.Session
) -> None:
    record = managed("pt-refused")
    a, b = tokens(local_stack, consumer_session), tokens(local_stack, consumer_session)
    held = a.get("pt-refused", max_age=300)
    assert b.get("pt-refused", max_age=300) == held
    before = mints(local_stack, record)
    minted_long_ago(local_stack, "pt-refused")
    a.report_refused("pt-refused", held)
    replaced = a.get("pt-refused", max_age=300)
    assert replaced != held
    b.report_refused("pt-refused", held)
    assert b.get("pt-refused", max_age=300) == replaced
    assert mints(local_stack, record) - before == 1
    assert answers_at_zus(local_stack, record, replaced) == 200


def test_failures_are_get_parameter_errors_caused_by_the_typed_error(
    local_stack: Any, consumer_session: botocore.session.Session
) -> None:
    provider = tokens(local_stack, consumer_session)
    with pytest.raises(GetParameterError) as raised:
        provider.get("pt-nobody")
    assert isinstance(raised.value.__cause__, ForbiddenError)  # a consumer gets 403 for an unknown client
    assert raised.value.__cause__.status == 403
    with pytest.raises(GetParameterError, match="a client name is 1-64 characters"):
        provider.get("Not A Name")


def test_the_package_imports_without_powertools() -> None:
    """Without the extra: the package imports, and the module says what to install."""
    script = (
        "import sys; sys.modules['aws_lambda_powertools'] = None\n"
        "import zus_m2m_client\n"
        "try:\n    import zus_m2m_client.powertools\nexcept ImportError as e:\n    print(e)\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 0, run.stderr
    assert "pip install 'zus-m2m-client[powertools]'" in run.stdout


def test_get_token_uses_the_api_in_the_environment(
    local_stack: Any, managed: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As a Lambda function would: the API's URL and the role's credentials from the environment."""
    record = managed("pt-default")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(local_stack.credentials_file))
    monkeypatch.setenv("AWS_PROFILE", CONSUMER_PROFILE)
    monkeypatch.delenv(powertools.API_URL_ENV, raising=False)
    with pytest.raises(GetParameterError, match="ZUS_M2M_API_URL is not set"):
        powertools.get_token("pt-default")
    monkeypatch.setenv(powertools.API_URL_ENV, local_stack.api)
    token = powertools.get_token("pt-default", max_age=60)
    assert powertools.get_token("pt-default", max_age=60) == token
    assert answers_at_zus(local_stack, record, token) == 200
    assert token_route_calls(local_stack, "pt-default") == 1
