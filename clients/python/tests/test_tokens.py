"""TokenProvider against an in-process fake of the client's Transport and a fake clock. No sockets."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable

import pytest
from client_support import GATE_TIMEOUT, FakeClock, FakeTokenRoute, problem, wait_until

from zus_m2m_client import (
    AccessToken,
    NotFoundError,
    ThrottledError,
    TokenProvider,
    TokenRefusedError,
    TransportError,
    UnavailableError,
    ZusM2MApiError,
    fingerprint,
)
from zus_m2m_client.transport import HttpResponse

API = "https://abc123.execute-api.us-east-1.amazonaws.com"


def provider_for(
    route: FakeTokenRoute, *, min_ttl: float = 60.0, refresh_margin: float = 240.0, max_wait: float = 20.0
) -> TokenProvider:
    return TokenProvider(
        API,
        "billing",
        min_ttl=min_ttl,
        refresh_margin=refresh_margin,
        max_wait=max_wait,
        transport=route,
        clock=route.clock,
        sleep=route.clock.sleep,
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def route(clock: FakeClock) -> FakeTokenRoute:
    return FakeTokenRoute(clock)


def in_threads(count: int, work: Callable[[], object]) -> tuple[list[object], list[threading.Thread]]:
    """Start ``count`` threads running ``work``; returns where their results land and the threads."""
    results: list[object] = []

    def run() -> None:
        try:
            results.append(work())
        except Exception as exc:
            results.append(exc)

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    return results, threads


def join(threads: list[threading.Thread]) -> None:
    deadline = time.monotonic() + GATE_TIMEOUT
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    assert not any(thread.is_alive() for thread in threads)


def callers_at_once(count: int, provider: TokenProvider, route: FakeTokenRoute, clock: FakeClock) -> list[object]:
    """``count`` callers of ``get_token`` at once, the route's fetch held until every one has read the clock
    inside ``get_token`` (under its lock): those that did not fetch decided to wait rather than fetch.
    Their tokens or errors."""
    route.gate = threading.Event()
    results, threads = in_threads(count, provider.get_token)
    assert route.entered.wait(GATE_TIMEOUT)
    wait_until(lambda: len(clock.readers) == count, "every caller to be inside get_token")
    route.gate.set()
    join(threads)
    return results


def test_fingerprint_is_the_first_16_hex_characters_of_sha256() -> None:
    assert fingerprint("abc") == "ba7816bf8f01cfea"


def test_the_token_is_kept_and_asked_for_with_room_for_the_refresh_window(
    route: FakeTokenRoute, clock: FakeClock
) -> None:
    provider = provider_for(route, min_ttl=60, refresh_margin=240.5)
    first = provider.get_token()
    assert provider.get_token() is first
    assert first.access_token == "token-1"
    clock.advance(3600 - 300)  # in the refresh window of a token known to live an hour
    provider.get_token()
    # More than the held token can have left (its 300 s, plus a second of rounding of expires_in): its successor.
    assert route.calls == [{"minTtl": "60"}, {"minTtl": "302"}]


class ShortLivedTokenRoute(FakeTokenRoute):
    """The token route of a Zus whose tokens live ``lifetime`` seconds: a minTtl above that is 422."""

    def request(self, method: str, path: str, *, query=None, body=None):  # type: ignore[no-untyped-def]
        if int((query or {}).get("minTtl", "0")) > self.lifetime:
            with self._lock:
                self.calls.append(dict(query or {}))
            return problem(422, f"tokens from Zus live {self.lifetime} s; minTtl {query['minTtl']} cannot be met")
        return super().request(method, path, query=query, body=body)


def test_the_default_margin_is_at_most_half_a_short_tokens_life(clock: FakeClock) -> None:
    """Tokens living 90 s, the provider's defaults (min_ttl 60, margin 240): no 422, one fetch per token."""
    route = ShortLivedTokenRoute(clock, lifetime=90)
    provider = TokenProvider(API, "billing", transport=route, clock=clock, sleep=clock.sleep)
    seen = []
    for _ in range(90):  # 90 s of a call a second
        seen.append(provider.get_token().access_token)
        clock.advance(1)
    assert all(int(call["minTtl"]) <= 90 for call in route.calls), route.calls
    assert len(set(seen)) == len(route.calls) <= 3, route.calls


class RenewingTokenRoute(FakeTokenRoute):
    """The token route as the service answers it: one token for every caller, renewed by the call that
    finds it inside the service's refresh ``margin`` (that call still answers it; the renewal is for the
    next), and replaced at once for a ``minTtl`` it no longer has; ``expires_in`` is whole seconds
    (rounded down), and a call takes ``latency`` seconds. Its tokens are named by the order minted."""

    def __init__(self, clock: FakeClock, margin: float, latency: float = 0.2) -> None:
        super().__init__(clock)
        self.margin = margin
        self.latency = latency
        self.minted = 0
        self.answered: list[str] = []
        self._token = ("", 0.0)  # the current token and when it expires

    def request(self, method: str, path: str, *, query=None, body=None):  # type: ignore[no-untyped-def]
        self.calls.append(dict(query or {}))
        self.clock.advance(self.latency / 2)
        now = self.clock.now
        if self._token[1] - now < int((query or {})["minTtl"]):
            self._mint(now)
        answer, expires_at = self._token
        if expires_at - now < self.margin:
            self._mint(now)
        self.answered.append(answer)
        body = {"access_token": answer, "token_type": "Bearer", "expires_in": int(expires_at - now), "expires_at": 0}
        self.clock.advance(self.latency / 2)
        return HttpResponse(200, {"content-type": "application/json"}, json.dumps(body).encode())

    def _mint(self, now: float) -> None:
        self.minted += 1
        self._token = (f"token-{self.minted}", now + self.lifetime)


@pytest.mark.parametrize("service_margin", [120, 300, 600])
def test_one_route_call_per_token_lifetime_whatever_the_services_refresh_margin(
    clock: FakeClock, service_margin: int
) -> None:
    """The defaults (a window of 300 s) against a service renewing at its margin (300 s by default, or an
    operator's): each call answers a token the process did not hold yet, so it is not asked again 10 s
    later for the one it holds."""
    route = RenewingTokenRoute(clock, margin=service_margin)
    provider = TokenProvider(API, "billing", transport=route, clock=clock, sleep=clock.sleep)
    hours = 5
    started = clock.now
    while clock.now - started < hours * 3600:  # ten calls a second
        provider.get_token()
        clock.advance(0.1)
    assert len(set(route.answered)) == len(route.answered), route.answered
    assert len(route.calls) <= 1 + hours * 3600 / (3600 - 300 - 1), route.calls


def test_a_token_is_handed_out_until_min_ttl_before_expiry(route: FakeTokenRoute, clock: FakeClock) -> None:
    provider = provider_for(route, min_ttl=60, refresh_margin=0)
    provider.get_token()
    clock.advance(3600 - 60)  # exactly min_ttl left: still handed out
    assert provider.get_token().access_token == "token-1"
    clock.advance(1)
    assert provider.get_token().access_token == "token-2"
    assert len(route.calls) == 2


def test_lifetimes_are_timed_from_expires_in_not_the_servers_wall_clock(route: FakeTokenRoute) -> None:
    """expires_at is by the API's clock (here far from ours); only expires_in counts."""
    provider = provider_for(route)
    provider.get_token()
    route.clock.advance(1000)
    provider.get_token()
    assert len(route.calls) == 1


def test_callers_without_a_token_wait_for_one_fetch(route: FakeTokenRoute, clock: FakeClock) -> None:
    provider = provider_for(route)
    results = callers_at_once(20, provider, route, clock)
    assert len(route.calls) == 1
    assert [token.access_token for token in results if isinstance(token, AccessToken)] == ["token-1"] * 20


def test_in_the_refresh_window_one_caller_refreshes_while_the_others_use_the_held_token(
    route: FakeTokenRoute, clock: FakeClock
) -> None:
    provider = provider_for(route, min_ttl=60, refresh_margin=240)
    provider.get_token()
    clock.advance(3600 - 299)  # 299 s left: inside the refresh window, well above min_ttl
    route.gate = threading.Event()
    route.entered.clear()
    refresher, refreshing = in_threads(1, provider.get_token)
    try:
        assert route.entered.wait(GATE_TIMEOUT)
        others, other_threads = in_threads(10, provider.get_token)
        join(other_threads)  # they return while the refresh is still blocked
    finally:
        route.gate.set()
    assert [token.access_token for token in others if isinstance(token, AccessToken)] == ["token-1"] * 10
    join(refreshing)
    assert [token.access_token for token in refresher if isinstance(token, AccessToken)] == ["token-2"]
    assert provider.get_token().access_token == "token-2"
    assert len(route.calls) == 2


def test_a_failed_refresh_ahead_keeps_the_held_token_and_waits_before_trying_again(
    route: FakeTokenRoute, clock: FakeClock
) -> None:
    provider = provider_for(route)
    provider.get_token()
    clock.advance(3600 - 200)
    route.script.append(problem(503, "DynamoDB is down", retry_after=1))
    assert provider.get_token().access_token == "token-1"  # the failure is not the caller's problem
    assert provider.get_token().access_token == "token-1"  # and the route is not asked on every call
    assert len(route.calls) == 2
    assert clock.slept == []  # refreshing ahead never sleeps on a Retry-After
    clock.advance(10)
    assert provider.get_token().access_token == "token-3"


def test_waiters_get_the_fetchers_error_each_their_own(route: FakeTokenRoute, clock: FakeClock) -> None:
    provider = provider_for(route)
    route.script.append(problem(404, "no managed app client named 'billing'"))
    results = callers_at_once(8, provider, route, clock)
    assert len(route.calls) == 1
    assert all(isinstance(error, NotFoundError) for error in results), results
    assert len({id(error) for error in results}) == 8
    assert {(error.status, error.detail) for error in results if isinstance(error, NotFoundError)} == {
        (404, "no managed app client named 'billing'")
    }


def test_429_is_retried_after_its_retry_after(route: FakeTokenRoute, clock: FakeClock) -> None:
    provider = provider_for(route, max_wait=20)
    route.script.extend([problem(429, "budget spent", retry_after=3), problem(503, "Zus is down", retry_after=5)])
    assert provider.get_token().access_token == "token-3"
    assert clock.slept == [3, 5]


def test_a_retry_after_beyond_max_wait_raises_at_once(route: FakeTokenRoute, clock: FakeClock) -> None:
    provider = provider_for(route, max_wait=20)
    route.script.append(problem(429, "budget spent", retry_after=30))
    with pytest.raises(ThrottledError) as raised:
        provider.get_token()
    assert (raised.value.status, raised.value.retry_after, raised.value.detail) == (429, 30, "budget spent")
    assert raised.value.problem_type == "urn:zus-m2m:problem:test"
    assert clock.slept == []


def test_retries_stop_within_max_wait(route: FakeTokenRoute, clock: FakeClock) -> None:
    provider = provider_for(route, max_wait=20)
    route.script.extend(problem(503, "Zus is down", retry_after=4) for _ in range(10))
    with pytest.raises(UnavailableError):
        provider.get_token()
    assert clock.slept == [4, 4, 4, 4, 4]
    assert len(route.calls) == 6


def test_errors_that_retrying_cannot_fix_are_raised_at_once(route: FakeTokenRoute, clock: FakeClock) -> None:
    provider = provider_for(route)
    route.script.append(problem(422, "tokens from Zus live 300 s; minTtl 600 cannot be met"))
    with pytest.raises(ZusM2MApiError) as raised:
        provider.get_token()
    assert raised.value.status == 422
    assert clock.slept == []


def test_no_answer_is_retried_like_a_503(route: FakeTokenRoute, clock: FakeClock) -> None:
    route.script.append(TransportError("no answer from the API: ConnectionError"))
    assert provider_for(route).get_token().access_token == "token-2"
    assert clock.slept == [1.0]


def test_a_refused_token_is_dropped_and_named_by_the_next_fetch(route: FakeTokenRoute) -> None:
    provider = provider_for(route)
    first = provider.get_token()
    provider.report_refused(first.access_token)
    provider.report_refused(first.access_token)  # another thread saw the same 401
    second = provider.get_token()
    assert second.access_token == "token-2"
    provider.report_refused(first.access_token)  # late: token-2 is held, nothing to do
    assert provider.get_token() is second
    provider.get_token()
    assert [call.get("refused") for call in route.calls] == [None, fingerprint("token-1")]


def test_the_refused_fingerprint_is_sent_once(route: FakeTokenRoute, clock: FakeClock) -> None:
    provider = provider_for(route, min_ttl=60, refresh_margin=0)
    provider.report_refused(provider.get_token().access_token)
    provider.get_token()
    clock.advance(3600)
    provider.get_token()
    assert [call.get("refused") for call in route.calls] == [None, fingerprint("token-1"), None]


def test_a_token_reported_refused_during_its_fetch_is_asked_for_again(route: FakeTokenRoute, clock: FakeClock) -> None:
    """The service (not yet told) answers the refused token again while a refresh is under way."""
    provider = provider_for(route)
    provider.get_token()
    clock.advance(3600 - 200)
    route.script.append(route.answer("token-1"))
    route.gate = threading.Event()
    route.entered.clear()
    results, threads = in_threads(1, provider.get_token)
    assert route.entered.wait(GATE_TIMEOUT)
    provider.report_refused("token-1")
    route.gate.set()
    join(threads)
    assert [token.access_token for token in results if isinstance(token, AccessToken)] == ["token-3"]
    assert [call.get("refused") for call in route.calls] == [None, None, fingerprint("token-1")]


def test_a_refusal_a_newer_token_already_answers_is_not_sent(route: FakeTokenRoute, clock: FakeClock) -> None:
    provider = provider_for(route, min_ttl=60, refresh_margin=0)
    route.gate = threading.Event()
    results, threads = in_threads(1, provider.get_token)
    try:
        assert route.entered.wait(GATE_TIMEOUT)
        provider.report_refused("token-0")  # an older token, refused while token-1 is being fetched
    finally:
        route.gate.set()
    join(threads)
    assert [token.access_token for token in results if isinstance(token, AccessToken)] == ["token-1"]
    clock.advance(3600)
    provider.get_token()
    assert [call.get("refused") for call in route.calls] == [None, None]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"min_ttl": -1}, "seconds >= 0"),
        ({"min_ttl": 2000, "refresh_margin": 1001}, "at most 3000"),
    ],
)
def test_settings_out_of_range_are_refused(route: FakeTokenRoute, options: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        provider_for(route, **options)


def test_a_bad_client_name_is_refused(route: FakeTokenRoute) -> None:
    with pytest.raises(ValueError, match="1-64 characters"):
        TokenProvider(API, "../admin", transport=route)


def test_no_token_in_reprs_errors_or_debug_logs(
    route: FakeTokenRoute, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    provider = provider_for(route)
    first = provider.get_token()
    provider.report_refused(first.access_token)
    clock.advance(3600 - 200)
    second = provider.get_token()
    clock.advance(3600 - 200)
    route.script.append(problem(503, "Zus is down"))
    provider.get_token()  # a failed refresh ahead, logged as a warning
    shown = " ".join([repr(provider), repr(first), str(second), caplog.text])
    assert first.fingerprint in shown
    assert "token-1" not in shown
    assert "token-2" not in shown
    assert "failed (503 Test Problem: Zus is down)" in caplog.text


def test_refused_fresh_tokens_are_replaced_after_a_growing_back_off(route: FakeTokenRoute, clock: FakeClock) -> None:
    provider = provider_for(route)
    first = provider.get_token()
    provider.report_refused(first.access_token)
    provider.report_refused(first.access_token)  # a second thread's report of the same token counts once
    second = provider.get_token()  # the first refusal is replaced at once
    assert len(route.calls) == 2
    waits = []
    refused = second
    for _ in range(4):  # each fresh token refused too: the back-off doubles (with jitter)
        provider.report_refused(refused.access_token)
        with pytest.raises(TokenRefusedError) as raised:
            provider.get_token()
        assert "Zus refused the last" in str(raised.value)
        waits.append(raised.value.retry_after)
        calls = len(route.calls)
        clock.advance(raised.value.retry_after / 2)
        with pytest.raises(TokenRefusedError):
            provider.get_token()  # still backing off: the route is not asked
        assert len(route.calls) == calls
        clock.advance(raised.value.retry_after / 2 + 0.001)
        refused = provider.get_token()
        assert len(route.calls) == calls + 1
    ceilings = [2, 4, 8, 16]  # the jitter takes each wait to between half its ceiling and the ceiling
    assert all(ceiling / 2 <= wait <= ceiling for wait, ceiling in zip(waits, ceilings, strict=True)), waits
    assert len(route.calls) == 6  # six tokens for six refusals, not one per request
