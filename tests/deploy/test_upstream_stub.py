# ruff: noqa: RUF001  (Russian demo names: Cyrillic letters are intended)
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal

import httpx
import pytest
from notifier.enrichment import EnrichmentClient, UpstreamNotFound, UpstreamUnavailable

from deploy.upstream_stub import app

BASE = "http://upstream.test"


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as c:
        yield c


@pytest.fixture
def enrichment(http: httpx.AsyncClient) -> EnrichmentClient:
    async def no_sleep(_delay: float) -> None:
        return None

    return EnrichmentClient(
        http, clients_url=BASE, billing_url=BASE, retries=1, cache_ttl=0, sleep=no_sleep
    )


class TestUpstreamStub:
    async def test_healthz(self, http: httpx.AsyncClient) -> None:
        assert (await http.get("/healthz")).json() == {"status": "ok"}

    async def test_any_client_id_has_a_deterministic_profile(self, http: httpx.AsyncClient) -> None:
        first = (await http.get("/v1/clients/bench-000123")).json()
        again = (await http.get("/v1/clients/bench-000123")).json()
        other = (await http.get("/v1/clients/bench-000124")).json()
        assert first == again
        assert first["id"] == "bench-000123"
        assert other["id"] == "bench-000124"

    async def test_hashed_clients_cover_both_locales_and_payment_types(
        self, http: httpx.AsyncClient
    ) -> None:
        profiles = [(await http.get(f"/v1/clients/c-{i}")).json() for i in range(40)]
        assert {p["locale"] for p in profiles} == {"ru", "en"}
        assert {p["payment_type"] for p in profiles} == {"prepaid", "postpaid"}

    async def test_named_demo_clients(self, http: httpx.AsyncClient) -> None:
        ru = (await http.get("/v1/clients/demo-prepaid-ru")).json()
        assert (ru["name"], ru["locale"], ru["payment_type"]) == ("ООО «Ромашка»", "ru", "prepaid")
        en = (await http.get("/v1/clients/demo-postpaid-en")).json()
        assert (en["locale"], en["payment_type"]) == ("en", "postpaid")
        cargo = (await http.get("/v1/clients/demo-cargo")).json()
        assert cargo["service"] == "cargo"

    async def test_missing_ids_are_404(self, http: httpx.AsyncClient) -> None:
        for path in (
            "/v1/clients/missing-1",
            "/v1/clients/missing-1/balance",
            "/v1/contracts/contract-missing-1",
        ):
            assert (await http.get(path)).status_code == 404, path

    async def test_unavailable_ids_are_503_with_retry_after(self, http: httpx.AsyncClient) -> None:
        response = await http.get("/v1/clients/unavailable-1")
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "1"

    async def test_contract_suffixes(self, http: httpx.AsyncClient) -> None:
        unpaid = (await http.get("/v1/contracts/contract-demo-prepaid-ru")).json()
        paid = (await http.get("/v1/contracts/contract-demo-prepaid-ru-paid")).json()
        closed = (await http.get("/v1/contracts/contract-demo-prepaid-ru-closed")).json()
        assert (unpaid["is_paid"], unpaid["status"]) == (False, "active")
        assert paid["is_paid"] is True
        assert paid["client_id"] == "demo-prepaid-ru"
        assert closed["status"] == "closed"


class TestEnrichmentAgainstTheStub:
    async def test_profiles_of_many_ids_validate(self, enrichment: EnrichmentClient) -> None:
        profiles = await asyncio.gather(*(enrichment.client(f"id-{i}") for i in range(50)))
        assert len({p.id for p in profiles}) == 50

    async def test_balances_and_contracts_validate(self, enrichment: EnrichmentClient) -> None:
        for client_id in ("demo-prepaid-ru", "demo-postpaid-en", "x-42", "x-43", "x-44"):
            balance = await enrichment.balance(client_id)
            contract = await enrichment.contract(balance.contract_id)
            assert contract.client_id == client_id
            profile = await enrichment.client(client_id)
            assert contract.payment_type == profile.payment_type
            assert balance.amount > balance.limit

    async def test_demo_balances_trigger_the_balance_letters(
        self, enrichment: EnrichmentClient
    ) -> None:
        low = await enrichment.balance("demo-low-balance")
        assert low.limit < low.amount < low.threshold
        assert low.amount == Decimal("1500.00")
        over = await enrichment.balance("demo-limit-over")
        assert over.amount <= over.limit

    async def test_missing_is_not_found(self, enrichment: EnrichmentClient) -> None:
        with pytest.raises(UpstreamNotFound):
            await enrichment.client("missing-42")

    async def test_unavailable_is_transient(self, enrichment: EnrichmentClient) -> None:
        with pytest.raises(UpstreamUnavailable, match="503"):
            await enrichment.balance("unavailable-42")


class TestFastPath:
    @pytest.mark.parametrize(
        "path",
        [
            "/healthz",
            "/v1/clients/bench-000123",
            "/v1/clients/demo-prepaid-ru",
            "/v1/clients/bench-000123/balance",
            "/v1/contracts/contract-demo-prepaid-ru-paid",
            "/v1/clients/missing-1",
            "/v1/clients/unavailable-1/balance",
            "/v1/contracts/contract-missing-2",
            "/v1/clients/a%20b",
        ],
    )
    async def test_answers_exactly_what_the_fastapi_routes_answer(self, path: str) -> None:
        from deploy.upstream_stub import answer, api

        assert answer(path.replace("%20", " ")) is not None  # served by the fast path
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url=BASE) as s:
            slow = await s.get(path)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as f:
            fast = await f.get(path)
        assert (fast.status_code, fast.content) == (slow.status_code, slow.content)
        for header in ("content-type", "content-length", "retry-after"):
            assert fast.headers.get(header) == slow.headers.get(header)

    async def test_other_paths_are_fastapis(self, http: httpx.AsyncClient) -> None:
        assert (await http.get("/docs")).status_code == 200
        assert (await http.get("/v1/nothing/here")).status_code == 404
