"""Writes that are one statement run without a transaction block around them (decision 0088):
the results of a dispatch and the ``log`` provider's record: two statements of such a session
are two transactions (two transaction ids), not one."""

from __future__ import annotations

from typing import cast

from fastapi import FastAPI
from gateway.messages.service import MessageService
from gateway.providers.log import LogProvider
from notifier_common.db import session_scope
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

TXID = text("SELECT txid_current()")


async def runs_alone(factory: async_sessionmaker[AsyncSession]) -> bool:
    async with session_scope(factory) as session:
        return await session.scalar(TXID) != await session.scalar(TXID)


async def test_results_are_stored_by_a_statement_that_is_its_own_transaction(
    app: FastAPI,
) -> None:
    service = cast(MessageService, app.state.message_service)
    assert await runs_alone(service.single_statement)
    assert not await runs_alone(service.sessionmaker)  # the claim stays one transaction


async def test_log_provider_records_without_a_transaction_block(app: FastAPI) -> None:
    entry = app.state.registry.get("log")
    provider = cast(LogProvider, entry.provider)
    assert provider._sessionmaker is not None
    assert await runs_alone(provider._sessionmaker)
