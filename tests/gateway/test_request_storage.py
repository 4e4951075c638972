"""A batch's requests travel to PostgreSQL as one newline-joined value (claim and the log
provider's insert): documents whose strings hold newlines and other separators come back
whole, one row each, in order."""

from __future__ import annotations

import httpx
import orjson
from gateway.messages.service import request_hash
from gateway.models import LoggedMessage, MessageRecord
from sqlalchemy import select
from sqlalchemy import text as sql
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.gateway.conftest import email

TEXTS = ["line one\nline two\r\n", "tab\tand \u2028 \u2029 separators", "Привет,\n мир", "\\n"]


async def test_documents_with_newlines_are_stored_whole(
    client: httpx.AsyncClient,
    writer: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    items = [
        {"idempotency_key": f"nl-{i}", "message": email(provider="log", text=text)}
        for i, text in enumerate(TEXTS)
    ]
    r = await client.post("/v1/messages:batch", json={"items": items}, headers=writer)
    assert [x["outcome"] for x in r.json()["results"]] == ["accepted"] * len(TEXTS)

    async with sessionmaker() as s:
        stored = {
            row.idempotency_key: row.request["text"]
            for row in (await s.execute(select(MessageRecord))).scalars()
        }
        logged = {
            row.provider_message_id: row.message["text"]
            for row in (await s.execute(select(LoggedMessage))).scalars()
        }
    assert stored == {f"nl-{i}": text for i, text in enumerate(TEXTS)}
    by_pmid = {x["provider_message_id"]: i for i, x in enumerate(r.json()["results"])}
    assert {by_pmid[pmid]: text for pmid, text in logged.items()} == dict(enumerate(TEXTS))


async def test_request_is_stored_as_the_hashed_document(
    client: httpx.AsyncClient,
    writer: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """Decision 0055: PostgreSQL keeps the request and the logged message as text, byte for
    byte the compact JSON the gateway hashed (JSONB parsed and rewrote both, ~4x the cost of
    the claim statement), and the models still read them as dicts."""
    items = [{"idempotency_key": "text-1", "message": email(provider="log", text="Привет")}]
    r = await client.post("/v1/messages:batch", json={"items": items}, headers=writer)
    assert r.json()["results"][0]["outcome"] == "accepted"

    async with sessionmaker() as s:
        raw_request, stored_hash, raw_logged = (
            await s.execute(
                sql(
                    "SELECT m.request, m.request_hash, l.message FROM gateway.messages m"
                    " JOIN gateway.logged_messages l ON l.provider_message_id"
                    " = m.provider_message_id WHERE m.idempotency_key = 'text-1'"
                )
            )
        ).one()
        record = (await s.execute(select(MessageRecord))).scalar_one()
        logged = (await s.execute(select(LoggedMessage))).scalar_one()
    assert isinstance(raw_request, str)
    assert request_hash(raw_request.encode()) == stored_hash
    assert raw_logged == raw_request
    assert record.request == logged.message == orjson.loads(raw_request)
    assert record.request["text"] == "Привет"
