"""Decision 0060: a batch's request JSON lives in one buffer, the messages' strings do not keep
a UTF-8 copy of themselves, and the claim is sent in chunks of keys in key order. Decision
0061: the collector's middle generation while the app runs."""

from __future__ import annotations

import asyncio
import gc
import sys
from typing import Any

import httpx
import orjson
import pytest
from gateway.messages import service
from gateway.messages.repository import join_json
from gateway.messages.service import RequestDocuments, request_hash, request_json
from gateway.models import LoggedMessage, MessageRecord
from gateway.providers.base import Message
from notifier_common.collector import MIDDLE_GENERATION_THRESHOLD
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.gateway.conftest import SettingsFactory, client_for, email, running

LONG = "Пополните баланс, чтобы поездки продолжались. " * 20


def _messages() -> list[Message]:
    return [
        Message.model_validate(email(f"u{i}@example.com", text=f"{i}\n{LONG}", html=f"<p>{i}</p>"))
        for i in range(4)
    ]


def _item(key: str, address: str = "alice@example.com") -> dict[str, Any]:
    return {"idempotency_key": key, "message": email(address, provider="log", text=LONG)}


async def _count(sm: async_sessionmaker[AsyncSession], model: Any) -> int:
    async with sm() as s:
        return int((await s.execute(select(func.count()).select_from(model))).scalar_one())


class TestRequestDocuments:
    def test_each_document_is_its_request_json_and_runs_are_joined(self) -> None:
        messages = _messages()
        documents = RequestDocuments(messages)

        assert len(documents) == 4
        assert [bytes(documents[i]) for i in range(4)] == [request_json(m) for m in messages]
        expected = join_json(request_json(m) for m in messages[1:3])
        assert bytes(documents.joined(1, 3)) == expected
        assert bytes(documents.joined(0, 4)) == join_json(request_json(m) for m in messages)
        assert request_hash(documents[2]) == request_hash(request_json(messages[2]))

    def test_writing_json_leaves_the_message_strings_as_they_were(self) -> None:
        """orjson caches the UTF-8 form inside each non-ASCII str it writes; the message's own
        strings must not grow by it while the batch is handled."""
        [message, *_] = _messages()
        assert message.text is not None
        before = sys.getsizeof(message.text)

        written = request_json(message)
        RequestDocuments([message])

        assert sys.getsizeof(message.text) == before
        assert orjson.loads(written)["text"] == message.text
        assert written == orjson.dumps(message.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)


class TestChunkedClaim:
    @pytest.fixture(autouse=True)
    def small_chunks(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(service, "CLAIM_CHUNK", 3)

    async def test_a_batch_is_claimed_in_chunks_and_stored_as_hashed(
        self,
        client: httpx.AsyncClient,
        writer: dict[str, str],
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        items = [_item(f"c{i:02}", f"u{i}@example.com") for i in range(10)]
        items.insert(5, _item("c03", "u3@example.com"))  # repeated: sent once, same result
        items.append(_item("c04", "other@example.com"))  # repeated with another body
        r = await client.post("/v1/messages:batch", json={"items": items}, headers=writer)

        results = r.json()["results"]
        assert [x["outcome"] for x in results[:11]] == ["accepted"] * 11
        assert results[5] == results[3]
        assert results[11]["code"] == "idempotency_conflict"
        assert await _count(sessionmaker, LoggedMessage) == 10
        async with sessionmaker() as s:
            rows = (await s.execute(select(MessageRecord))).scalars().all()
        assert len(rows) == 10
        for row in rows:
            stored = Message.model_validate(row.request)
            assert row.request_hash == request_hash(request_json(stored))
            assert stored.to[0].address == f"u{int(row.idempotency_key[1:])}@example.com"

        again = await client.post("/v1/messages:batch", json={"items": items}, headers=writer)
        assert again.json()["results"][:11] == results[:11]
        assert await _count(sessionmaker, LoggedMessage) == 10

    async def test_overlapping_batches_in_opposite_order_send_each_key_once(
        self,
        make_settings: SettingsFactory,
        writer: dict[str, str],
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        """Chunks follow key order whatever the order of the items: no deadlock between two
        gateways claiming the same keys."""
        settings = make_settings()
        body = {"items": [_item(f"k{i:02}") for i in range(20)]}
        reverse = {"items": body["items"][::-1]}
        async with (
            running(settings) as one,
            running(settings) as two,
            client_for(one) as c1,
            client_for(two) as c2,
        ):
            r1, r2 = await asyncio.gather(
                c1.post("/v1/messages:batch", json=body, headers=writer),
                c2.post("/v1/messages:batch", json=reverse, headers=writer),
            )
        assert r1.status_code == r2.status_code == 200
        assert await _count(sessionmaker, LoggedMessage) == 20
        by_key = {x["idempotency_key"]: x for x in r1.json()["results"]}
        for x in r2.json()["results"]:
            first = by_key[x["idempotency_key"]]
            assert x["provider_message_id"] == first["provider_message_id"]


async def test_the_collector_is_tuned_while_the_app_runs_and_restored(
    make_settings: SettingsFactory,
) -> None:
    """Decision 0061: the middle generation is collected once per 100 young collections while
    a gateway runs; the process's own thresholds come back when it stops."""
    before = gc.get_threshold()
    async with running(make_settings()):
        young, middle, old = gc.get_threshold()
        assert (young, old) == (before[0], before[2])
        assert middle == max(before[1], MIDDLE_GENERATION_THRESHOLD)
    assert gc.get_threshold() == before


def test_mmap_threshold_is_accepted_by_glibc() -> None:
    from notifier_common.collector import set_mmap_threshold

    assert set_mmap_threshold(128 * 1024) is True


async def test_the_gateway_sets_its_mmap_threshold_when_it_starts(
    make_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Decision 0084: big buffers are mmapped and unmapped when freed (GATEWAY_MALLOC_MMAP_
    THRESHOLD; 0 leaves glibc's own growing threshold alone)."""
    from gateway import app as app_module

    calls: list[int] = []
    monkeypatch.setattr(app_module, "set_mmap_threshold", calls.append)
    async with running(make_settings()):
        pass
    async with running(make_settings(malloc_mmap_threshold=0)):
        pass
    assert calls == [131072]
