"""A batch's requests travel to PostgreSQL as one newline-joined value (claim and the log
provider's insert): documents whose strings hold newlines and other separators come back
whole, one row each, in order."""

from __future__ import annotations

import hashlib
import uuid

import httpx
import orjson
import pytest
from fastapi import FastAPI
from gateway.messages.service import request_hash
from gateway.models import LoggedMessage, MessageRecord
from gateway.providers.base import Message
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


async def test_log_provider_copies_the_claimed_request(
    app: FastAPI,
    client: httpx.AsyncClient,
    writer: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """Decision 0056: a message whose JSON the claim stored (``stored_as``) is recorded from
    that row in the database, not sent again; one without it is recorded as its own JSON."""
    items = [{"idempotency_key": "copy-1", "message": email(provider="log", text="stored")}]
    r = await client.post("/v1/messages:batch", json={"items": items}, headers=writer)
    assert r.json()["results"][0]["outcome"] == "accepted"
    row_id = uuid.UUID(r.json()["results"][0]["message_id"])

    provider = app.state.registry.get("log").provider
    copied = Message.model_validate(email(text="in hand"))
    copied.remember_json(b'{"marker":"in hand"}', stored_as=row_id)
    own = Message.model_validate(email(text="own"))
    own.remember_json(b'{"marker":"own"}')
    assert own.stored_as is None
    results = await provider.send_many([copied, own])

    async with sessionmaker() as s:
        logged = {
            row.provider_message_id: row.message
            for row in (await s.execute(select(LoggedMessage))).scalars()
        }
    assert logged[results[0].provider_message_id]["text"] == "stored"
    assert logged[results[1].provider_message_id] == {"marker": "own"}


async def test_a_changed_message_forgets_its_stored_row() -> None:
    message = Message.model_validate(email())
    message.remember_json(b"{}", stored_as=uuid.uuid4())
    message.remember_json(None)
    assert message.stored_as is None
    assert message.model_copy().stored_as is None


async def test_large_requests_are_compressed_with_lz4_and_kept_in_the_row(
    client: httpx.AsyncClient,
    writer: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """Decision 0086: a rendered letter's request (~4.4 KB) is compressed with lz4, not pglz
    (~5x the CPU of the claim statement's inserts), and stays in the row after compression
    (``toast_tuple_target``): the log provider copies it as it is and reads find it in the row,
    without a TOAST table lookup."""
    async with sessionmaker() as s:
        if not await s.scalar(
            sql(
                "SELECT 'lz4' = ANY(enumvals) FROM pg_settings"
                " WHERE name = 'default_toast_compression'"
            )
        ):
            pytest.skip("this PostgreSQL is built without lz4")  # migration 0007 keeps pglz
    # ~3 KB that lz4 cannot shrink (hex digests) and ~6 KB it can: compressed, the request is
    # over the default in-row limit (~2 KB) and under the table's (4080 bytes)
    noise = "".join(hashlib.sha256(str(i).encode()).hexdigest() for i in range(30))
    body = noise + "".join(f"<p>Строка {i}: баланс пополнен.</p>\n" for i in range(160))
    items = [{"idempotency_key": "lz4-1", "message": email(provider="log", html=body)}]
    r = await client.post("/v1/messages:batch", json={"items": items}, headers=writer)
    assert r.json()["results"][0]["outcome"] == "accepted"

    async with sessionmaker() as s:
        for table, column in (("messages", "request"), ("logged_messages", "message")):
            method, stored, size = (
                await s.execute(
                    sql(
                        f"SELECT pg_column_compression({column}), pg_column_size({column}),"
                        f" octet_length({column}) FROM gateway.{table}"
                    )
                )
            ).one()
            assert method == "lz4", table
            assert stored < size / 2, table
            toast = await s.scalar(
                sql(
                    "SELECT reltoastrelid::regclass::text FROM pg_class"
                    f" WHERE oid = 'gateway.{table}'::regclass"
                )
            )
            assert await s.scalar(sql(f"SELECT count(*) FROM {toast}")) == 0, table
