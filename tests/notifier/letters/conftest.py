"""Letter-engine fixtures: a movable clock, respx upstream + a recording gateway, the engine."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import respx
from notifier.enrichment import EnrichmentClient
from notifier.events import service as events_service
from notifier.events.service import Outcome
from notifier.gateway_client import GatewayClient
from notifier.letters.drain import LetterSender
from notifier.letters.processor import LetterProcessor
from notifier.letters.rendering import render
from notifier.models import Attempt, Letter
from notifier.settings import NotifierSettings
from notifier.worker import delivery_config, plan_config
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

UPSTREAM = "http://upstream.test"
GATEWAY = "http://gateway.test"
# A Monday, 10:00 UTC = 13:00 in Moscow: outside quiet hours.
START = datetime(2026, 6, 1, 10, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self, start: datetime = START) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> datetime:
        self.now += delta
        return self.now

    def set(self, at: datetime) -> datetime:
        self.now = at
        return at


@dataclass
class Upstream:
    """Deterministic upstream data served through respx; tests edit the dicts."""

    clients: dict[str, dict[str, Any]] = field(default_factory=dict)
    balances: dict[str, dict[str, Any]] = field(default_factory=dict)
    contracts: dict[str, dict[str, Any]] = field(default_factory=dict)
    fail_with: int | None = None  # answer every call with this status
    timeout: bool = False  # every call times out
    calls: int = 0

    def add_client(self, client_id: str = "client-1", **overrides: Any) -> dict[str, Any]:
        profile = {
            "id": client_id,
            "name": f"ACME {client_id}",
            "locale": "en",
            "timezone": "Europe/Moscow",
            "emails": [f"boss@{client_id}.example"],
            "payment_type": "prepaid",
            "service": "taxi",
            "cabinet_url": f"https://corp.example/{client_id}",
            **overrides,
        }
        self.clients[client_id] = profile
        self.balances[client_id] = {
            "client_id": client_id,
            "contract_id": "ct-1",
            "amount": "50.00",
            "currency": "RUB",
            "threshold": "100.00",
            "limit": "0.00",
        }
        return profile

    def add_contract(
        self, contract_id: str = "ct-1", client_id: str = "client-1", **kw: Any
    ) -> None:
        self.contracts[contract_id] = {
            "id": contract_id,
            "client_id": client_id,
            "payment_type": "prepaid",
            "is_paid": False,
            "status": "active",
            **kw,
        }

    def _answer(self, table: dict[str, dict[str, Any]], key: str) -> httpx.Response:
        self.calls += 1
        if self.timeout:
            raise httpx.ReadTimeout("upstream too slow")
        if self.fail_with is not None:
            return httpx.Response(self.fail_with, json={"detail": "boom"})
        if key not in table:
            return httpx.Response(404, json={"detail": "not found"})
        return httpx.Response(200, json=table[key])

    def install(self, router: respx.MockRouter) -> None:
        router.get(url__regex=rf"{UPSTREAM}/v1/clients/(?P<cid>[^/]+)$").mock(
            side_effect=lambda request, cid: self._answer(self.clients, cid)
        )
        router.get(url__regex=rf"{UPSTREAM}/v1/clients/(?P<cid>[^/]+)/balance$").mock(
            side_effect=lambda request, cid: self._answer(self.balances, cid)
        )
        router.get(url__regex=rf"{UPSTREAM}/v1/contracts/(?P<ctid>[^/]+)$").mock(
            side_effect=lambda request, ctid: self._answer(self.contracts, ctid)
        )


@dataclass
class RecordingGateway:
    """Idempotent like the real gateway: a repeated key gets its first result, no new send."""

    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    sent: list[dict[str, Any]] = field(default_factory=list)  # items actually delivered
    calls: int = 0
    fail_with: int | None = None
    outcome_for: dict[str, str] = field(default_factory=dict)  # letter name -> outcome

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        assert request.headers["authorization"] == "Bearer test-gateway-token"
        if self.fail_with is not None:
            return httpx.Response(self.fail_with, json={"detail": "gateway down"})
        items = json.loads(request.content)["items"]
        assert len(items) <= 500
        out = []
        for item in items:
            key = item["idempotency_key"]
            if key not in self.results:
                outcome = self.outcome_for.get(item["message"]["metadata"]["letter"], "accepted")
                self.results[key] = {
                    "idempotency_key": key,
                    "message_id": len(self.results) + 1,
                    "outcome": outcome,
                    "provider": "log",
                    "provider_message_id": f"pm-{key}" if outcome == "accepted" else None,
                    "code": None if outcome == "accepted" else "suppressed",
                    "reason": None,
                    "retry_after": None,
                    "status_code": None,
                }
                if outcome == "accepted":
                    self.sent.append(item)
            out.append(self.results[key])
        return httpx.Response(200, json={"results": out})

    def sent_for(self, letter: str) -> list[dict[str, Any]]:
        return [i for i in self.sent if i["message"]["metadata"]["letter"] == letter]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def upstream() -> Upstream:
    up = Upstream()
    up.add_client()
    up.add_contract()
    return up


@pytest.fixture
def gateway() -> RecordingGateway:
    return RecordingGateway()


@pytest.fixture
def router(upstream: Upstream, gateway: RecordingGateway) -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as mock:
        upstream.install(mock)
        mock.post(f"{GATEWAY}/v1/messages:batch").mock(side_effect=gateway.handle)
        yield mock


@dataclass
class Engine:
    processor: LetterProcessor
    sender: LetterSender
    sessionmaker: async_sessionmaker[AsyncSession]
    clock: FakeClock
    enrichment: EnrichmentClient

    async def handle(self, body: dict[str, Any]) -> Outcome:
        return await events_service.handle_event(self.sessionmaker, self.processor, body)

    async def letters(self, **where: Any) -> list[Letter]:
        async with self.sessionmaker() as s:
            stmt = select(Letter).filter_by(**where).order_by(Letter.id)
            return list((await s.execute(stmt)).scalars())

    async def attempts(self, letter_id: int) -> list[Attempt]:
        async with self.sessionmaker() as s:
            stmt = select(Attempt).where(Attempt.letter_id == letter_id)
            return list((await s.execute(stmt.order_by(Attempt.try_number))).scalars())


async def _no_sleep(_seconds: float) -> None:
    return None


def build_engine(
    settings: NotifierSettings,
    sessionmaker: async_sessionmaker[AsyncSession],
    clock: FakeClock,
    http: httpx.AsyncClient,
    *,
    gateway_url: str = GATEWAY,
) -> Engine:
    enrichment = EnrichmentClient(
        http, clients_url=UPSTREAM, billing_url=UPSTREAM, cache_ttl=0, sleep=_no_sleep
    )
    gateway = GatewayClient(
        http, base_url=gateway_url, token=settings.gateway_token, batch_size=500
    )
    sender = LetterSender(
        sessionmaker,
        gateway=gateway,
        enricher=enrichment,
        render=render,
        config=delivery_config(settings),
        clock=clock,
    )
    processor = LetterProcessor(
        enricher=enrichment, config=plan_config(settings), clock=clock, sender=sender
    )
    return Engine(processor, sender, sessionmaker, clock, enrichment)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5.0) as client:
        yield client


@pytest.fixture
def letter_engine(
    settings: NotifierSettings,
    sessionmaker: async_sessionmaker[AsyncSession],
    clock: FakeClock,
    http: httpx.AsyncClient,
    router: respx.MockRouter,
) -> Engine:
    return build_engine(settings, sessionmaker, clock, http)
