# ruff: noqa: RUF001  (Russian text: Cyrillic letters are intended)
from __future__ import annotations

import asyncio
import pickle
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
import respx
from notifier.enrichment import (
    Balance,
    ClientProfile,
    Contract,
    EnrichmentClient,
    UpstreamInvalid,
    UpstreamNotFound,
    UpstreamUnavailable,
)
from notifier.events.processing import PermanentEventError, TransientEventError
from notifier_common.http import create_http_client

CLIENTS = "http://clients.test"
BILLING = "http://billing.test"

PROFILE = {
    "id": "c1",
    "name": "ООО «Ромашка»",
    "locale": "ru",
    "timezone": "Europe/Moscow",
    "emails": ["boss@romashka.example"],
    "payment_type": "prepaid",
    "service": "taxi",
    "cabinet_url": "https://corp.example.com/c1",
    "unknown_new_field": 1,
}
BALANCE = {
    "client_id": "c1",
    "contract_id": "k1",
    "amount": "1234.56",
    "currency": "RUB",
    "threshold": 5000,
    "limit": "0",
}
CONTRACT = {
    "id": "k1",
    "client_id": "c1",
    "payment_type": "prepaid",
    "is_paid": False,
    "status": "active",
}


@pytest.fixture(autouse=True)
def _mock_upstreams() -> Iterator[None]:
    # Unmatched requests raise: nothing leaves the process.
    with respx.mock:
        yield


class Sleeps:
    """Records requested delays instead of sleeping."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture(params=["pool", "httpx"])
async def http(request: pytest.FixtureRequest) -> AsyncIterator[httpx.AsyncClient]:
    """Both ways a GET is made (decision 0076): straight on the pool (``Http1Pool``) of the
    process's shared client (``create_http_client``, production), and through httpx for any
    other client."""
    if request.param == "pool":
        client = create_http_client(timeout=1.0)
    else:
        client = httpx.AsyncClient(timeout=1.0)
    async with client:
        yield client


@pytest.fixture
def enrichment(http: httpx.AsyncClient, sleeps: Sleeps) -> EnrichmentClient:
    return EnrichmentClient(
        http, clients_url=CLIENTS + "/", billing_url=BILLING, cache_ttl=0, sleep=sleeps
    )


class TestFetching:
    async def test_client_profile_is_parsed(self, enrichment: EnrichmentClient) -> None:
        respx.get(f"{CLIENTS}/v1/clients/c1").respond(json=PROFILE)
        profile = await enrichment.client("c1")
        assert isinstance(profile, ClientProfile)
        assert profile.name == "ООО «Ромашка»"
        assert profile.timezone == "Europe/Moscow"

    async def test_balance_amounts_are_decimals(self, enrichment: EnrichmentClient) -> None:
        respx.get(f"{BILLING}/v1/clients/c1/balance").respond(json=BALANCE)
        balance = await enrichment.balance("c1")
        assert isinstance(balance, Balance)
        assert balance.amount == Decimal("1234.56")
        assert balance.threshold == Decimal(5000)
        assert balance.limit == Decimal(0)

    async def test_contract_is_parsed(self, enrichment: EnrichmentClient) -> None:
        respx.get(f"{BILLING}/v1/contracts/k1").respond(json=CONTRACT)
        contract = await enrichment.contract("k1")
        assert isinstance(contract, Contract)
        assert contract.is_paid is False

    async def test_ids_are_quoted_in_the_path(self, enrichment: EnrichmentClient) -> None:
        route = respx.get(f"{CLIENTS}/v1/clients/a%2Fb%20c").respond(json=PROFILE)
        await enrichment.client("a/b c")
        assert route.call_count == 1


class TestErrors:
    async def test_404_is_permanent_not_found(
        self, enrichment: EnrichmentClient, sleeps: Sleeps
    ) -> None:
        route = respx.get(f"{CLIENTS}/v1/clients/nope").respond(404)
        with pytest.raises(UpstreamNotFound, match="not found") as info:
            await enrichment.client("nope")
        assert isinstance(info.value, PermanentEventError)
        assert info.value.status == 404
        assert route.call_count == 1
        assert sleeps.delays == []

    async def test_500_then_200_is_retried(
        self, enrichment: EnrichmentClient, sleeps: Sleeps
    ) -> None:
        route = respx.get(f"{CLIENTS}/v1/clients/c1")
        route.side_effect = [
            httpx.Response(500),
            httpx.Response(502),
            httpx.Response(200, json=PROFILE),
        ]
        profile = await enrichment.client("c1")
        assert profile.id == "c1"
        assert route.call_count == 3
        assert len(sleeps.delays) == 2
        # exponential backoff with jitter: 0.1-0.2 s, then 0.2-0.4 s
        assert 0.1 <= sleeps.delays[0] <= 0.2
        assert 0.2 <= sleeps.delays[1] <= 0.4

    async def test_500_forever_becomes_unavailable(
        self, enrichment: EnrichmentClient, sleeps: Sleeps
    ) -> None:
        route = respx.get(f"{BILLING}/v1/clients/c1/balance").respond(503)
        with pytest.raises(UpstreamUnavailable, match="HTTP 503") as info:
            await enrichment.balance("c1")
        assert isinstance(info.value, TransientEventError)
        assert info.value.status == 503
        assert route.call_count == 4  # the first try + 3 retries
        assert len(sleeps.delays) == 3

    async def test_timeout_is_retried_then_unavailable(self, enrichment: EnrichmentClient) -> None:
        route = respx.get(f"{BILLING}/v1/contracts/k1").mock(side_effect=httpx.ReadTimeout("slow"))
        with pytest.raises(UpstreamUnavailable, match="timeout"):
            await enrichment.contract("k1")
        assert route.call_count == 4

    async def test_connection_error_then_success(self, enrichment: EnrichmentClient) -> None:
        route = respx.get(f"{BILLING}/v1/contracts/k1")
        route.side_effect = [httpx.ConnectError("refused"), httpx.Response(200, json=CONTRACT)]
        assert (await enrichment.contract("k1")).id == "k1"

    async def test_429_retry_after_is_honoured(
        self, enrichment: EnrichmentClient, sleeps: Sleeps
    ) -> None:
        route = respx.get(f"{CLIENTS}/v1/clients/c1")
        route.side_effect = [
            httpx.Response(429, headers={"Retry-After": "3"}),
            httpx.Response(200, json=PROFILE),
        ]
        await enrichment.client("c1")
        assert sleeps.delays == [3.0]

    async def test_retry_after_beyond_the_cap_gives_up_at_once(
        self, enrichment: EnrichmentClient, sleeps: Sleeps
    ) -> None:
        route = respx.get(f"{CLIENTS}/v1/clients/c1").respond(429, headers={"Retry-After": "120"})
        with pytest.raises(UpstreamUnavailable, match="Retry-After") as info:
            await enrichment.client("c1")
        assert info.value.retry_after == 120.0
        assert route.call_count == 1
        assert sleeps.delays == []

    async def test_invalid_body_names_the_field(self, enrichment: EnrichmentClient) -> None:
        respx.get(f"{CLIENTS}/v1/clients/c1").respond(
            json={**PROFILE, "timezone": "Mars/Olympus", "emails": []}
        )
        with pytest.raises(UpstreamInvalid, match="timezone") as info:
            await enrichment.client("c1")
        assert isinstance(info.value, PermanentEventError)
        assert set(info.value.fields) == {"timezone", "emails"}

    async def test_missing_field_is_named(self, enrichment: EnrichmentClient) -> None:
        body = {k: v for k, v in BALANCE.items() if k != "threshold"}
        respx.get(f"{BILLING}/v1/clients/c1/balance").respond(json=body)
        with pytest.raises(UpstreamInvalid, match="threshold: Field required"):
            await enrichment.balance("c1")

    async def test_non_json_body_is_invalid(self, enrichment: EnrichmentClient) -> None:
        respx.get(f"{BILLING}/v1/contracts/k1").respond(200, text="<html>oops</html>")
        with pytest.raises(UpstreamInvalid, match="not JSON"):
            await enrichment.contract("k1")

    async def test_unexpected_4xx_is_permanent_and_not_retried(
        self, enrichment: EnrichmentClient
    ) -> None:
        route = respx.get(f"{BILLING}/v1/contracts/k1").respond(403, text="forbidden")
        with pytest.raises(UpstreamInvalid, match="unexpected HTTP 403"):
            await enrichment.contract("k1")
        assert route.call_count == 1

    def test_errors_survive_pickling(self) -> None:
        error = UpstreamUnavailable("down", upstream="billing", url="u", status=503, retry_after=2)
        copy = pickle.loads(pickle.dumps(error))
        assert (str(copy), copy.upstream, copy.status, copy.retry_after) == (
            "down",
            "billing",
            503,
            2,
        )


def answer_after(
    seconds: float, body: dict[str, Any]
) -> Callable[[httpx.Request], Awaitable[httpx.Response]]:
    """A respx side effect answering 200 with ``body`` after ``seconds`` (a slow upstream)."""

    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(seconds)
        return httpx.Response(200, json=body)

    return slow


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class TestCache:
    @pytest.fixture
    def clock(self) -> FakeClock:
        return FakeClock()

    @pytest.fixture
    def cached(self, http: httpx.AsyncClient, clock: FakeClock) -> EnrichmentClient:
        return EnrichmentClient(
            http, clients_url=CLIENTS, billing_url=BILLING, cache_ttl=30, clock=clock
        )

    async def test_repeated_calls_within_ttl_make_one_request(
        self, cached: EnrichmentClient, clock: FakeClock
    ) -> None:
        route = respx.get(f"{CLIENTS}/v1/clients/c1").respond(json=PROFILE)
        await cached.client("c1")
        clock.now += 29
        await cached.client("c1")
        assert route.call_count == 1
        clock.now += 2
        await cached.client("c1")
        assert route.call_count == 2

    async def test_expired_answers_are_dropped_as_new_ones_are_stored(
        self, cached: EnrichmentClient, clock: FakeClock
    ) -> None:
        """The cache holds what the last ttl seconds loaded, not max_entries stale answers."""
        respx.get(url__regex=rf"{CLIENTS}/v1/clients/c\d+").mock(
            side_effect=lambda request: httpx.Response(
                200, json={**PROFILE, "id": request.url.path.rsplit("/", 1)[1]}
            )
        )
        for i in range(5):
            await cached.client(f"c{i}")
        assert len(cached._clients) == 5
        clock.now += 20
        await cached.client("c5")
        assert len(cached._clients) == 6
        clock.now += 15  # c0..c4 expired, c5 not
        await cached.client("c6")
        assert len(cached._clients) == 2
        assert (await cached.client("c5")).id == "c5"

    async def test_cached_answers_are_equal_models_the_collector_does_not_walk(
        self, cached: EnrichmentClient
    ) -> None:
        """Decision 0081: kept as tuples of atoms, which CPython's collector untracks; handed
        out as the same validated model (lists as lists)."""
        import gc

        respx.get(f"{CLIENTS}/v1/clients/c1").respond(json=PROFILE)
        respx.get(f"{BILLING}/v1/clients/c1/balance").respond(json=BALANCE)
        first = await cached.client("c1")
        balance = await cached.balance("c1")
        gc.collect()  # a tuple holding a tuple is untracked one collection after the inner one
        gc.collect()
        assert not gc.is_tracked(cached._clients.peek("c1"))
        assert not gc.is_tracked(cached._balances.peek("c1"))
        again = await cached.client("c1")
        assert again == first == ClientProfile.model_validate(PROFILE)
        assert isinstance(again.emails, list)
        assert await cached.balance("c1") == balance == Balance.model_validate(BALANCE)

    async def test_fifty_concurrent_calls_share_one_request(self, cached: EnrichmentClient) -> None:
        async def slow(request: httpx.Request) -> httpx.Response:
            await asyncio.sleep(0.05)
            return httpx.Response(200, json=BALANCE)

        route = respx.get(f"{BILLING}/v1/clients/c1/balance").mock(side_effect=slow)
        results = await asyncio.gather(*(cached.balance("c1") for _ in range(50)))
        assert route.call_count == 1
        assert {r.amount for r in results} == {Decimal("1234.56")}

    async def test_single_flight_also_works_with_cache_off(
        self, enrichment: EnrichmentClient
    ) -> None:
        route = respx.get(f"{CLIENTS}/v1/clients/c1").mock(side_effect=answer_after(0.05, PROFILE))
        await asyncio.gather(*(enrichment.client("c1") for _ in range(10)))
        assert route.call_count == 1
        await enrichment.client("c1")  # ttl=0: nothing kept
        assert route.call_count == 2

    async def test_errors_are_shared_but_not_cached(self, cached: EnrichmentClient) -> None:
        route = respx.get(f"{CLIENTS}/v1/clients/c1")
        route.side_effect = [httpx.Response(404), httpx.Response(200, json=PROFILE)]
        with pytest.raises(UpstreamNotFound):
            await cached.client("c1")
        assert (await cached.client("c1")).id == "c1"
        assert route.call_count == 2

    async def test_a_cancelled_waiter_does_not_cancel_the_others(
        self, cached: EnrichmentClient
    ) -> None:
        route = respx.get(f"{CLIENTS}/v1/clients/c1").mock(side_effect=answer_after(0.05, PROFILE))
        first = asyncio.ensure_future(cached.client("c1"))
        second = asyncio.ensure_future(cached.client("c1"))
        await asyncio.sleep(0.01)
        first.cancel()
        assert (await second).id == "c1"
        assert route.call_count == 1

    async def test_fresh_skips_and_drops_the_cached_value(self, cached: EnrichmentClient) -> None:
        route = respx.get(f"{BILLING}/v1/clients/c1/balance").respond(json=BALANCE)
        await cached.balance("c1")
        await cached.balance("c1")
        assert route.call_count == 1
        await cached.balance("c1", fresh=True)
        assert route.call_count == 2
        await cached.balance("c1")  # the fresh answer was not kept either (decision 0081)
        assert route.call_count == 3

    async def test_fresh_reads_keep_nothing_but_share_one_flight(
        self, cached: EnrichmentClient
    ) -> None:
        """A drain's re-checks of thousands of distinct clients must not fill the cache."""

        route = respx.get(url__regex=rf"{BILLING}/v1/clients/c\d+/balance").mock(
            side_effect=answer_after(0.02, BALANCE)
        )
        await asyncio.gather(*(cached.balance(f"c{i}", fresh=True) for i in range(50)))
        await asyncio.gather(*(cached.balance("c1", fresh=True) for _ in range(5)))
        assert route.call_count == 51
        assert len(cached._balances) == 0

    async def test_cache_is_per_resource_and_id(self, cached: EnrichmentClient) -> None:
        one = respx.get(f"{CLIENTS}/v1/clients/c1").respond(json=PROFILE)
        two = respx.get(f"{CLIENTS}/v1/clients/c2").respond(json={**PROFILE, "id": "c2"})
        assert (await cached.client("c1")).id == "c1"
        assert (await cached.client("c2")).id == "c2"
        assert (one.call_count, two.call_count) == (1, 1)


class TestConcurrencyCap:
    async def test_at_most_max_concurrency_requests_are_in_flight(
        self, http: httpx.AsyncClient
    ) -> None:
        capped = EnrichmentClient(
            http, clients_url=CLIENTS, billing_url=BILLING, cache_ttl=0, max_concurrency=2
        )
        in_flight, most = 0, 0

        async def slow(request: httpx.Request, cid: str) -> httpx.Response:
            nonlocal in_flight, most
            in_flight += 1
            most = max(most, in_flight)
            await asyncio.sleep(0.01)
            in_flight -= 1
            return httpx.Response(200, json={**PROFILE, "id": cid})

        respx.get(url__regex=rf"{CLIENTS}/v1/clients/(?P<cid>[^/]+)$").mock(side_effect=slow)
        profiles = await asyncio.gather(*(capped.client(f"c{n}") for n in range(10)))
        assert [p.id for p in profiles] == [f"c{n}" for n in range(10)]
        assert most == 2
