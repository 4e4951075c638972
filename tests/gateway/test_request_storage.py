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
from sqlalchemy.exc import IntegrityError
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
            row.provider_message_id: row.content["text"]
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
    """Decision 0055: PostgreSQL keeps the request as text, byte for byte the compact JSON the
    gateway hashed (JSONB parsed and rewrote it, ~4x the cost of the claim statement), and the
    models still read it as a dict; the log provider's record names that row (decision 0111)."""
    items = [{"idempotency_key": "text-1", "message": email(provider="log", text="Привет")}]
    r = await client.post("/v1/messages:batch", json={"items": items}, headers=writer)
    assert r.json()["results"][0]["outcome"] == "accepted"

    async with sessionmaker() as s:
        raw_request, stored_hash, raw_logged, reference = (
            await s.execute(
                sql(
                    "SELECT m.request, m.request_hash, l.message, l.message_id = m.id"
                    " FROM gateway.messages m JOIN gateway.logged_messages l"
                    " ON l.provider_message_id = m.provider_message_id"
                    " WHERE m.idempotency_key = 'text-1'"
                )
            )
        ).one()
        record = (await s.execute(select(MessageRecord))).scalar_one()
        logged = (await s.execute(select(LoggedMessage))).scalar_one()
    assert isinstance(raw_request, str)
    assert request_hash(raw_request.encode()) == stored_hash
    assert (raw_logged, reference) == (None, True)  # not written a second time
    assert record.request == logged.content == orjson.loads(raw_request)
    assert record.request["text"] == "Привет"


async def test_log_provider_records_the_claimed_request_by_reference(
    app: FastAPI,
    client: httpx.AsyncClient,
    writer: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """Decision 0111: a message whose JSON the claim stored (``stored_as``) is recorded as a
    reference to that row, not sent or written again; one without it is recorded as its own
    JSON. ``content`` reads both."""
    items = [{"idempotency_key": "copy-1", "message": email(provider="log", text="stored")}]
    r = await client.post("/v1/messages:batch", json={"items": items}, headers=writer)
    assert r.json()["results"][0]["outcome"] == "accepted"
    row_id = uuid.UUID(r.json()["results"][0]["message_id"])

    provider = app.state.registry.get("log").provider
    referenced = Message.model_validate(email(text="in hand", channel="sms"))
    referenced.remember_json(b'{"marker":"in hand"}', stored_as=row_id)
    own = Message.model_validate(email(text="own"))
    own.remember_json(b'{"marker":"own"}')
    assert own.stored_as is None
    results = await provider.send_many([referenced, own])

    async with sessionmaker() as s:
        logged = {
            row.provider_message_id: row
            for row in (await s.execute(select(LoggedMessage))).scalars()
        }
    by_ref = logged[results[0].provider_message_id]
    assert (by_ref.message_id, by_ref.message, by_ref.channel) == (row_id, None, "sms")
    assert by_ref.content["text"] == "stored"
    by_copy = logged[results[1].provider_message_id]
    assert (by_copy.message_id, by_copy.message) == (None, {"marker": "own"})
    assert by_copy.content == {"marker": "own"}


async def test_a_logged_message_has_its_json_or_a_reference(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as s:
        with pytest.raises(IntegrityError, match="ck_logged_messages_message_or_reference"):
            await s.execute(
                sql(
                    "INSERT INTO gateway.logged_messages"
                    " (provider, provider_message_id, channel, action)"
                    " VALUES ('log', 'log-x', 'email', 'send')"
                )
            )


async def test_a_changed_message_forgets_its_stored_row() -> None:
    message = Message.model_validate(email())
    message.remember_json(b"{}", stored_as=uuid.uuid4())
    message.remember_json(None)
    assert message.stored_as is None
    assert message.model_copy().stored_as is None


async def test_large_requests_are_compressed_with_lz4_and_stored_out_of_the_row(
    client: httpx.AsyncClient,
    writer: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """Decision 0086: a rendered letter's request is compressed with lz4, not pglz (~5x the CPU
    of the claim statement's inserts). Decision 0112: once compressed it is still over the
    default in-row limit (~2 KB) and goes to the TOAST table, so each later version of the row
    (the result of the send) carries a pointer to it instead of a second copy."""
    async with sessionmaker() as s:
        if not await s.scalar(
            sql(
                "SELECT 'lz4' = ANY(enumvals) FROM pg_settings"
                " WHERE name = 'default_toast_compression'"
            )
        ):
            pytest.skip("this PostgreSQL is built without lz4")  # migration 0007 keeps pglz
    # ~3 KB that lz4 cannot shrink (hex digests) and ~6 KB it can: compressed, the request is
    # over the default in-row limit (~2 KB)
    noise = "".join(hashlib.sha256(str(i).encode()).hexdigest() for i in range(30))
    body = noise + "".join(f"<p>Строка {i}: баланс пополнен.</p>\n" for i in range(160))
    items = [{"idempotency_key": "lz4-1", "message": email(provider="log", html=body)}]
    r = await client.post("/v1/messages:batch", json={"items": items}, headers=writer)
    assert r.json()["results"][0]["outcome"] == "accepted"

    async with sessionmaker() as s:
        method, stored, size = (
            await s.execute(
                sql(
                    "SELECT pg_column_compression(request), pg_column_size(request),"
                    " octet_length(request) FROM gateway.messages"
                )
            )
        ).one()
        toast = await s.scalar(
            sql(
                "SELECT reltoastrelid::regclass::text FROM pg_class"
                " WHERE oid = 'gateway.messages'::regclass"
            )
        )
        chunks = await s.scalar(sql(f"SELECT count(*) FROM {toast}"))
    assert method == "lz4"
    assert stored < size / 2
    assert chunks > 0  # out of the row: the row holds a pointer to it
