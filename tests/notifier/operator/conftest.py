"""Fixtures of the operator API tests: tokens per scope and fast bulk letter inserts."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from notifier.models import Attempt, Event, EventStatus, Letter, LetterOrigin, LetterStatus
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.conftest import TokenFactory

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)

InsertLetters = Callable[..., Awaitable[list[int]]]


def letter_row(i: int = 0, **overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "letter": "LowBalanceNotice",
        "client_id": f"client-{i % 10}",
        "channel": "email",
        "recipient": f"finance{i}@example.com",
        "locale": "ru",
        "context": {"client": {"id": f"client-{i % 10}", "timezone": "Europe/Moscow"}},
        "status": LetterStatus.sent,
        "origin": LetterOrigin.event,
        "triggered_at": T0 + timedelta(minutes=i),
        "send_at": T0 + timedelta(minutes=i),
        "created_at": T0 + timedelta(minutes=i),
        "updated_at": T0 + timedelta(minutes=i),
    }
    row.update(overrides)
    return row


@pytest.fixture
def insert_letters(sessionmaker: async_sessionmaker[AsyncSession]) -> InsertLetters:
    """Insert rows in one statement; returns their ids in order."""

    async def insert_rows(*rows: dict[str, Any]) -> list[int]:
        async with sessionmaker() as s, s.begin():
            result = await s.execute(insert(Letter).returning(Letter.id), list(rows))
            return list(result.scalars())

    return insert_rows


@pytest.fixture
def insert_event(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> Callable[..., Awaitable[uuid.UUID]]:
    async def insert_one(type_: str = "client.balance_changed", **overrides: Any) -> uuid.UUID:
        event_id = overrides.pop("id", uuid.uuid4())
        values: dict[str, Any] = {
            "id": event_id,
            "type": type_,
            "version": 1,
            "client_id": "client-1",
            "producer": "tests",
            "occurred_at": T0,
            "body": {"type": type_},
            "status": EventStatus.processed,
            "source": "api",
            **overrides,
        }
        async with sessionmaker() as s, s.begin():
            await s.execute(insert(Event).values(**values))
        return event_id

    return insert_one


@pytest.fixture
def insert_attempts(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> Callable[..., Awaitable[None]]:
    async def insert_rows(*rows: dict[str, Any]) -> None:
        async with sessionmaker() as s, s.begin():
            await s.execute(insert(Attempt), list(rows))

    return insert_rows


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def reader(make_token: TokenFactory) -> dict[str, str]:
    return bearer(await make_token("letters:read", name="reader"))


@pytest.fixture
async def writer(make_token: TokenFactory) -> dict[str, str]:
    return bearer(await make_token("letters:read", "letters:write", name="ops-alice"))


@pytest.fixture
async def configurer(make_token: TokenFactory) -> dict[str, str]:
    return bearer(await make_token("letters:read", "config:write", name="ops-bob"))


@pytest.fixture
async def admin(make_token: TokenFactory) -> dict[str, str]:
    return bearer(await make_token("admin", name="root"))
