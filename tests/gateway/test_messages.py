import asyncio
import json
import uuid
from typing import Any

import httpx
import pytest
from gateway.messages import repository
from gateway.messages.service import legacy_request_hash, request_hash, request_json
from gateway.models import LoggedMessage, MessageRecord
from gateway.providers.base import Message
from notifier_common.db import session_scope
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.gateway.conftest import SettingsFactory, client_for, email, running
from tests.gateway.fakes import CountingProvider


async def send(
    client: httpx.AsyncClient, headers: dict[str, str], key: str, body: dict[str, Any]
) -> httpx.Response:
    return await client.post("/v1/messages", json=body, headers={**headers, "Idempotency-Key": key})


async def count(sm: async_sessionmaker[AsyncSession], model: Any) -> int:
    async with sm() as s:
        return int((await s.execute(select(func.count()).select_from(model))).scalar_one())


class TestSend:
    async def test_new_message_is_accepted_and_readable(
        self, client: httpx.AsyncClient, writer: dict[str, str], counting: CountingProvider
    ) -> None:
        r = await send(client, writer, "k1", email())
        assert r.status_code == 200
        result = r.json()
        assert result["outcome"] == "accepted"
        assert result["provider"] == "counting"
        assert result["provider_message_id"].startswith("cnt-")
        assert "Idempotent-Replayed" not in r.headers
        shown = await client.get(f"/v1/messages/{result['message_id']}", headers=writer)
        assert shown.json()["status"] == "accepted"
        assert shown.json()["attempts"] == 1
        assert shown.json()["request"]["to"][0]["address"] == "alice@example.com"
        assert counting.calls == 1

    async def test_log_provider_records_the_message(
        self,
        client: httpx.AsyncClient,
        writer: dict[str, str],
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        r = await send(client, writer, "k-log", email(provider="log"))
        assert r.json()["outcome"] == "accepted"
        async with sessionmaker() as s:
            row = (await s.execute(select(LoggedMessage))).scalar_one()
        assert row.provider_message_id == r.json()["provider_message_id"]
        assert row.content["to"][0]["address"] == "alice@example.com"
        shown = await client.get(f"/v1/messages/{r.json()['message_id']}", headers=writer)
        assert row.content == shown.json()["request"]  # the same document, written once
        assert (row.message_id, row.message) == (uuid.UUID(r.json()["message_id"]), None)

    async def test_repeat_answers_the_stored_result_without_sending(
        self, client: httpx.AsyncClient, writer: dict[str, str], counting: CountingProvider
    ) -> None:
        first = await send(client, writer, "k1", email())
        again = await send(client, writer, "k1", email())
        assert again.status_code == 200
        assert again.json() == first.json()
        assert again.headers["Idempotent-Replayed"] == "true"
        assert counting.calls == 1

    async def test_same_key_with_another_body_is_422(
        self, client: httpx.AsyncClient, writer: dict[str, str], counting: CountingProvider
    ) -> None:
        await send(client, writer, "k1", email())
        r = await send(client, writer, "k1", email("bob@example.com"))
        assert r.status_code == 422
        assert r.headers["content-type"] == "application/problem+json"
        assert counting.calls == 1

    async def test_missing_idempotency_key_is_422(
        self, client: httpx.AsyncClient, writer: dict[str, str]
    ) -> None:
        r = await client.post("/v1/messages", json=email(), headers=writer)
        assert r.status_code == 422
        assert r.json()["errors"][0]["loc"] == "header.Idempotency-Key"

    async def test_invalid_message_is_422(
        self, client: httpx.AsyncClient, writer: dict[str, str]
    ) -> None:
        r = await send(client, writer, "k1", {"channel": "email", "to": []})
        assert r.status_code == 422

    @pytest.mark.parametrize("gateway_settings", [{"delay": 0.3}], indirect=True)
    async def test_twenty_concurrent_identical_requests_send_once(
        self, client: httpx.AsyncClient, writer: dict[str, str], counting: CountingProvider
    ) -> None:
        responses = await asyncio.gather(*(send(client, writer, "k1", email()) for _ in range(20)))
        assert {r.status_code for r in responses} == {200}
        assert counting.calls == 1
        assert len({r.json()["provider_message_id"] for r in responses}) == 1
        assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in responses) == 19

    @pytest.mark.parametrize(
        "gateway_settings", [{"delay": 3.0, "inflight_wait_seconds": 0.2}], indirect=True
    )
    async def test_request_still_in_flight_after_the_wait_is_409(
        self, client: httpx.AsyncClient, writer: dict[str, str], counting: CountingProvider
    ) -> None:
        first = asyncio.create_task(send(client, writer, "k1", email()))
        async with asyncio.timeout(10):
            while counting.calls == 0:  # noqa: ASYNC110 (the first request is at the provider)
                await asyncio.sleep(0.01)
        r = await send(client, writer, "k1", email())
        assert r.status_code == 409
        assert int(r.headers["Retry-After"]) >= 1
        assert r.json()["title"] == "Request In Progress"
        assert (await first).json()["outcome"] == "accepted"
        assert counting.calls == 1

    async def test_transient_result_is_not_final(
        self,
        client: httpx.AsyncClient,
        writer: dict[str, str],
        counting: CountingProvider,
    ) -> None:
        counting.outcome = "transient"
        r = await send(client, writer, "k1", email())
        assert r.json()["outcome"] == "transient_error"
        assert r.json()["code"] == "http_503"
        counting.outcome = "accepted"
        again = await send(client, writer, "k1", email())
        assert again.json()["outcome"] == "accepted"
        assert again.json()["message_id"] == r.json()["message_id"]
        assert counting.calls == 2
        shown = await client.get(f"/v1/messages/{r.json()['message_id']}", headers=writer)
        assert shown.json()["attempts"] == 2

    async def test_permanent_result_is_final(
        self, client: httpx.AsyncClient, writer: dict[str, str], counting: CountingProvider
    ) -> None:
        counting.outcome = "permanent"
        first = await send(client, writer, "k1", email())
        counting.outcome = "accepted"
        again = await send(client, writer, "k1", email())
        assert again.json()["outcome"] == "permanent_error"
        assert again.json() == first.json()
        assert counting.calls == 1

    async def test_key_of_a_crashed_request_is_retaken_after_its_lease(
        self,
        client: httpx.AsyncClient,
        writer: dict[str, str],
        counting: CountingProvider,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        claim = repository.NewClaim(
            id=uuid.uuid4(),
            idempotency_key="k1",
            request_hash=request_hash(request_json(Message.model_validate(email()))),
            request=email(),
            channel="email",
            action="send",
            provider="counting",
            recipient="alice@example.com",
        )
        async with session_scope(sessionmaker) as session:  # a request that died mid-send
            assert await repository.claim(session, [claim], lease=-1)
        r = await send(client, writer, "k1", email())
        assert r.json()["outcome"] == "accepted"
        assert r.json()["message_id"] == str(claim.id)
        assert counting.calls == 1

    @pytest.mark.parametrize("gateway_settings", [{"inflight_wait_seconds": 0.1}], indirect=True)
    async def test_key_under_a_live_lease_is_not_retaken(
        self,
        client: httpx.AsyncClient,
        writer: dict[str, str],
        counting: CountingProvider,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        claim = repository.NewClaim(
            id=uuid.uuid4(),
            idempotency_key="k1",
            request_hash=request_hash(request_json(Message.model_validate(email()))),
            request=email(),
            channel="email",
            action="send",
            provider="counting",
            recipient=None,
        )
        async with session_scope(sessionmaker) as session:
            await repository.claim(session, [claim], lease=60)
        r = await send(client, writer, "k1", email())
        assert r.status_code == 409
        assert counting.calls == 0

    async def test_key_order_whitespace_and_spelled_out_defaults_are_the_same_request(
        self, client: httpx.AsyncClient, writer: dict[str, str], counting: CountingProvider
    ) -> None:
        body = email(metadata={"b": 1, "a": {"y": 2, "x": "й"}})
        spelled = {**body, "action": "send", "headers": {}, "html": None}
        reordered = json.dumps(dict(reversed(list(spelled.items()))), indent=2, ensure_ascii=True)
        headers = {**writer, "Idempotency-Key": "k1", "Content-Type": "application/json"}
        first = await client.post("/v1/messages", json=body, headers=headers)
        again = await client.post("/v1/messages", content=reordered, headers=headers)

        assert again.status_code == 200
        assert again.headers["Idempotent-Replayed"] == "true"
        assert again.json() == first.json()
        assert counting.calls == 1
        stored = await client.get(f"/v1/messages/{first.json()['message_id']}", headers=writer)
        request = stored.json()["request"]  # the message with its defaults
        assert (request["metadata"], request["action"]) == (body["metadata"], "send")

    async def _legacy_row(
        self, sessionmaker: async_sessionmaker[AsyncSession], *, status: str
    ) -> repository.NewClaim:
        """A row written before request hashes were versioned (decision 0050)."""
        message = Message.model_validate(email())
        claim = repository.NewClaim(
            id=uuid.uuid4(),
            idempotency_key="k1",
            request_hash=legacy_request_hash(message),
            request=message.model_dump(mode="json"),
            channel="email",
            action="send",
            provider="counting",
            recipient="alice@example.com",
        )
        async with session_scope(sessionmaker) as session:
            assert await repository.claim(session, [claim], lease=-1)
            await session.execute(
                update(MessageRecord).where(MessageRecord.id == claim.id).values(status=status)
            )
        return claim

    @pytest.mark.parametrize("status", ["in_progress", "transient_error"])
    async def test_retryable_row_with_a_legacy_hash_is_retaken_by_the_same_body(
        self,
        client: httpx.AsyncClient,
        writer: dict[str, str],
        counting: CountingProvider,
        sessionmaker: async_sessionmaker[AsyncSession],
        status: str,
    ) -> None:
        claim = await self._legacy_row(sessionmaker, status=status)

        r = await send(client, writer, "k1", email())

        assert r.status_code == 200
        assert (r.json()["outcome"], r.json()["message_id"]) == ("accepted", str(claim.id))
        assert counting.calls == 1

    async def test_final_row_with_a_legacy_hash_replays_or_conflicts(
        self,
        client: httpx.AsyncClient,
        writer: dict[str, str],
        counting: CountingProvider,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        claim = await self._legacy_row(sessionmaker, status="accepted")

        same = await send(client, writer, "k1", email())
        other = await send(client, writer, "k1", email(subject="another"))

        assert same.status_code == 200
        assert same.headers["Idempotent-Replayed"] == "true"
        assert same.json()["message_id"] == str(claim.id)
        assert other.status_code == 422
        assert counting.calls == 0

    async def test_provider_exception_is_a_transient_internal_result(
        self, client: httpx.AsyncClient, writer: dict[str, str], counting: CountingProvider
    ) -> None:
        counting.outcome = "raise"
        r = await send(client, writer, "k1", email())
        assert r.status_code == 200
        assert (r.json()["outcome"], r.json()["code"]) == ("transient_error", "internal")

    async def test_unknown_provider_is_permanent(
        self, client: httpx.AsyncClient, writer: dict[str, str]
    ) -> None:
        r = await send(client, writer, "k1", email(provider="pigeon"))
        assert (r.json()["outcome"], r.json()["code"]) == ("permanent_error", "unknown_provider")


class TestRead:
    async def test_message_is_found_by_idempotency_key(
        self, client: httpx.AsyncClient, writer: dict[str, str]
    ) -> None:
        sent = await send(client, writer, "letter-42", email())
        await send(client, writer, "letter-43", email())
        r = await client.get(
            "/v1/messages", params={"idempotency_key": "letter-42"}, headers=writer
        )
        [item] = r.json()["items"]
        assert item["id"] == sent.json()["message_id"]
        assert item["idempotency_key"] == "letter-42"

    async def test_listing_pages_with_a_cursor(
        self, client: httpx.AsyncClient, writer: dict[str, str]
    ) -> None:
        for i in range(3):
            await send(client, writer, f"k{i}", email())
        first = (await client.get("/v1/messages", params={"limit": 2}, headers=writer)).json()
        rest = await client.get(
            "/v1/messages", params={"limit": 2, "cursor": first["next_cursor"]}, headers=writer
        )
        keys = [m["idempotency_key"] for m in first["items"] + rest.json()["items"]]
        assert sorted(keys) == ["k0", "k1", "k2"]
        assert rest.json()["next_cursor"] is None

    async def test_unknown_message_is_404(
        self, client: httpx.AsyncClient, writer: dict[str, str]
    ) -> None:
        r = await client.get(f"/v1/messages/{uuid.uuid4()}", headers=writer)
        assert r.status_code == 404


def item(key: str, address: str = "alice@example.com", **extra: Any) -> dict[str, Any]:
    return {"idempotency_key": key, "message": email(address, **extra)}


class TestBatch:
    async def test_invalid_json_is_a_422(
        self, client: httpx.AsyncClient, writer: dict[str, str], counting: CountingProvider
    ) -> None:
        headers = {**writer, "Content-Type": "application/json"}
        r = await client.post("/v1/messages:batch", content=b'{"items": [', headers=headers)

        assert r.status_code == 422
        assert counting.calls == 0

    async def test_integers_beyond_64_bits_are_hashed_and_stored(
        self, client: httpx.AsyncClient, writer: dict[str, str], counting: CountingProvider
    ) -> None:
        body = {"items": [{"idempotency_key": "big", "message": email(metadata={"n": 2**70})}]}
        first = (await client.post("/v1/messages:batch", json=body, headers=writer)).json()
        again = (await client.post("/v1/messages:batch", json=body, headers=writer)).json()

        assert first["results"][0]["outcome"] == "accepted"
        assert again == first
        assert counting.calls == 1

    @pytest.mark.parametrize(
        "gateway_settings", [{"delay": 0.2, "max_concurrent_batches": 1}], indirect=True
    )
    async def test_batches_beyond_the_limit_wait_their_turn(
        self, client: httpx.AsyncClient, writer: dict[str, str], counting: CountingProvider
    ) -> None:
        bodies = [
            {"items": [{"idempotency_key": f"b{b}-{i}", "message": email()} for i in range(2)]}
            for b in range(3)
        ]

        answers = await asyncio.gather(
            *(client.post("/v1/messages:batch", json=body, headers=writer) for body in bodies)
        )

        assert [r.status_code for r in answers] == [200] * 3
        assert [x["outcome"] for r in answers for x in r.json()["results"]] == ["accepted"] * 6
        assert counting.max_in_flight == 1

    async def test_batch_mixes_new_repeated_and_conflicting_keys(
        self, client: httpx.AsyncClient, writer: dict[str, str], counting: CountingProvider
    ) -> None:
        old = await send(client, writer, "old", email())
        await send(client, writer, "taken", email())
        body = {"items": [item("new-1"), item("old"), item("taken", "bob@example.com")]}
        r = await client.post("/v1/messages:batch", json=body, headers=writer)
        assert r.status_code == 200
        results = r.json()["results"]
        assert [x["idempotency_key"] for x in results] == ["new-1", "old", "taken"]
        assert results[0]["outcome"] == "accepted"
        assert results[1] == old.json()
        assert (results[2]["outcome"], results[2]["code"]) == (
            "permanent_error",
            "idempotency_conflict",
        )
        assert results[2]["message_id"] is None
        assert counting.calls == 3

    async def test_key_repeated_inside_one_batch_is_sent_once(
        self, client: httpx.AsyncClient, writer: dict[str, str], counting: CountingProvider
    ) -> None:
        body = {"items": [item("a"), item("a"), item("a", "bob@example.com")]}
        results = (await client.post("/v1/messages:batch", json=body, headers=writer)).json()
        assert results["results"][0] == results["results"][1]
        assert results["results"][2]["code"] == "idempotency_conflict"
        assert counting.calls == 1

    async def test_five_hundred_items_are_sent_in_one_call(
        self,
        client: httpx.AsyncClient,
        writer: dict[str, str],
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        body = {"items": [item(f"k{i}", f"u{i}@example.com", provider="log") for i in range(500)]}
        r = await client.post("/v1/messages:batch", json=body, headers=writer)
        assert r.status_code == 200
        assert {x["outcome"] for x in r.json()["results"]} == {"accepted"}
        assert await count(sessionmaker, LoggedMessage) == 500
        assert await count(sessionmaker, MessageRecord) == 500
        again = await client.post("/v1/messages:batch", json=body, headers=writer)
        assert again.json() == r.json()
        assert await count(sessionmaker, LoggedMessage) == 500

    async def test_more_than_five_hundred_items_is_413(
        self, client: httpx.AsyncClient, writer: dict[str, str]
    ) -> None:
        body = {"items": [item(f"k{i}") for i in range(501)]}
        r = await client.post("/v1/messages:batch", json=body, headers=writer)
        assert r.status_code == 413
        assert r.headers["content-type"] == "application/problem+json"

    async def test_empty_batch_is_422(
        self, client: httpx.AsyncClient, writer: dict[str, str]
    ) -> None:
        r = await client.post("/v1/messages:batch", json={"items": []}, headers=writer)
        assert r.status_code == 422

    async def test_concurrent_overlapping_batches_send_each_key_once(
        self,
        make_settings: SettingsFactory,
        writer: dict[str, str],
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        """Two gateway instances, overlapping keys in opposite order: no deadlock, no double."""
        settings = make_settings()
        async with running(settings) as one, running(settings) as two:
            body = {"items": [item(f"k{i}", provider="log") for i in range(100)]}
            reverse = {"items": body["items"][::-1]}
            async with client_for(one) as c1, client_for(two) as c2:
                r1, r2 = await asyncio.gather(
                    c1.post("/v1/messages:batch", json=body, headers=writer),
                    c2.post("/v1/messages:batch", json=reverse, headers=writer),
                )
        assert r1.status_code == r2.status_code == 200
        assert await count(sessionmaker, LoggedMessage) == 100
        by_key = {x["idempotency_key"]: x for x in r1.json()["results"]}
        for x in r2.json()["results"]:
            assert x["provider_message_id"] == by_key[x["idempotency_key"]]["provider_message_id"]
