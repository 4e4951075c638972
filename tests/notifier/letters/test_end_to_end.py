"""The letter engine against the REAL gateway app (log provider) and the upstream stub."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from gateway.app import create_app
from gateway.models.logged_message import LoggedMessage
from gateway.tokens import create_token
from notifier.letters import repository
from notifier.models import LetterStatus
from notifier.settings import NotifierSettings
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from deploy.upstream_stub import app as upstream_app
from tests.factories import event_body
from tests.gateway.conftest import log_gateway_settings
from tests.notifier.letters.conftest import (
    GATEWAY,
    START,
    UPSTREAM,
    Engine,
    FakeClock,
    build_engine,
)

CLIENT = "demo-prepaid-ru"
CONTRACT = f"contract-{CLIENT}"


@pytest.fixture
async def real_engine(
    settings: NotifierSettings,
    database_url: str,
    redis_url: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    clock: FakeClock,
) -> AsyncIterator[Engine]:
    gateway_settings = log_gateway_settings(database_url, redis_url, db_pool_size=5)
    gateway_app = create_app(gateway_settings)
    token = await create_token(database_url, name="notifier", scopes=["messages:write"])
    async with gateway_app.router.lifespan_context(gateway_app):
        mounts = {
            GATEWAY: httpx.ASGITransport(app=gateway_app),
            UPSTREAM: httpx.ASGITransport(app=upstream_app),
        }
        async with httpx.AsyncClient(mounts=mounts, timeout=10.0) as http:
            yield build_engine(
                settings.model_copy(update={"gateway_token": token}), sessionmaker, clock, http
            )


async def logged(sessionmaker: async_sessionmaker[AsyncSession]) -> list[dict[str, Any]]:
    async with sessionmaker() as s:
        rows = (await s.execute(select(LoggedMessage).order_by(LoggedMessage.id))).scalars()
        return [r.content for r in rows]


async def test_reminders_and_welcome_letter_go_through_the_real_gateway(
    real_engine: Engine, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    created = event_body(
        "contract.created",
        client_id=CLIENT,
        payload={"contract_id": CONTRACT, "payment_type": "prepaid"},
        occurred_at=START,
    )
    activated = event_body(
        "client.activated", client_id=CLIENT, payload={"payment_type": "prepaid"}, occurred_at=START
    )
    assert await real_engine.handle(created) == "processed"
    assert await real_engine.handle(activated) == "processed"
    welcome = await real_engine.letters(letter="ActivateClientNotice")
    assert {w.status for w in welcome} == {LetterStatus.sent}  # immediate, after commit
    reminders = await real_engine.letters(letter="FirstRemindPrepaidNotice")
    assert {r.status for r in reminders} == {LetterStatus.scheduled}
    assert {r.locale for r in reminders} == {"ru"}
    await real_engine.sender.drain(now=reminders[0].send_at)
    reminders = await real_engine.letters(letter="FirstRemindPrepaidNotice")
    assert {r.status for r in reminders} == {LetterStatus.sent}
    messages = await logged(sessionmaker)
    by_letter = [m["metadata"]["letter"] for m in messages]
    assert by_letter == ["ActivateClientNotice"] * len(welcome) + [
        "FirstRemindPrepaidNotice"
    ] * len(reminders)
    sent_to = {(m["metadata"]["letter_id"], m["to"][0]["address"]) for m in messages}
    assert sent_to == {(x.id, x.recipient) for x in [*welcome, *reminders]}
    assert all(x.provider_message_id for x in reminders)


async def test_a_crash_after_the_real_gateway_accepted_sends_once(
    real_engine: Engine,
    sessionmaker: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await real_engine.handle(
        event_body("client.created_by_offer", client_id=CLIENT, occurred_at=START)
    )
    due = START + timedelta(days=7)

    async def crash(*_a: Any, **_k: Any) -> None:
        raise ConnectionResetError("killed")

    with monkeypatch.context() as m:
        m.setattr(repository, "update_letters", crash)
        with pytest.raises(ConnectionResetError):
            await real_engine.sender.drain(now=due)
    # rolled back: due again at once, no lease to wait out (decision 0103)
    assert {x.status for x in await real_engine.letters()} == {LetterStatus.scheduled}
    await real_engine.sender.drain(now=due)
    letters = await real_engine.letters()
    assert {x.status for x in letters} == {LetterStatus.sent}
    async with sessionmaker() as s:
        count = (await s.execute(select(func.count()).select_from(LoggedMessage))).scalar_one()
    assert count == len(letters)  # once per letter, though each was offered twice
