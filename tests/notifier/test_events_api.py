import json
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from notifier.events.service import validate
from notifier.models import Event, EventStatus
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.conftest import TokenFactory
from tests.factories import event_body


@pytest.fixture
async def writer(make_token: TokenFactory) -> dict[str, str]:
    return {"Authorization": f"Bearer {await make_token('events:write', 'letters:read')}"}


async def count(sm: async_sessionmaker[AsyncSession], **where: object) -> int:
    async with sm() as s:
        stmt = select(func.count()).select_from(Event).filter_by(**where)
        return int((await s.execute(stmt)).scalar_one())


class TestAuth:
    async def test_missing_token_is_401_problem(self, client: httpx.AsyncClient) -> None:
        r = await client.post("/v1/events", json=event_body())
        assert r.status_code == 401
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["title"] == "Unauthorized"

    async def test_unknown_token_is_401(self, client: httpx.AsyncClient) -> None:
        r = await client.post(
            "/v1/events", json=event_body(), headers={"Authorization": "Bearer ntf_nope"}
        )
        assert r.status_code == 401

    async def test_wrong_scope_is_403(
        self, client: httpx.AsyncClient, make_token: TokenFactory
    ) -> None:
        token = await make_token("letters:read")
        r = await client.post(
            "/v1/events", json=event_body(), headers={"Authorization": f"Bearer {token}"}
        )
        assert r.status_code == 403
        assert "events:write" in r.json()["detail"]


class TestIntake:
    async def test_valid_event_is_queued(
        self, client: httpx.AsyncClient, writer: dict[str, str]
    ) -> None:
        body = event_body()
        r = await client.post("/v1/events", json=body, headers=writer)
        assert r.status_code == 202
        assert r.json()["results"] == [
            {"index": 0, "id": body["id"], "status": "queued", "errors": None}
        ]
        shown = await client.get(f"/v1/events/{body['id']}", headers=writer)
        assert shown.json()["status"] == "queued"
        assert shown.json()["source"] == "queue"  # what a worker will store it as

    async def test_same_event_twice_is_reported_duplicate(
        self, client: httpx.AsyncClient, writer: dict[str, str]
    ) -> None:
        body = event_body()
        await client.post("/v1/events", json=body, headers=writer)
        r = await client.post("/v1/events", json=body, headers=writer)
        assert r.json()["results"][0]["status"] == "duplicate"

    async def test_single_invalid_event_is_422_and_stored_rejected(
        self,
        client: httpx.AsyncClient,
        writer: dict[str, str],
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        body = event_body(payload={"old_balance": "x"})
        r = await client.post("/v1/events", json=body, headers=writer)
        assert r.status_code == 422
        locs = {e["loc"] for e in r.json()["errors"]}
        assert locs == {"payload.old_balance", "payload.new_balance"}
        assert await count(sessionmaker, status=EventStatus.rejected) == 1
        listed = await client.get("/v1/events", params={"status": "rejected"}, headers=writer)
        assert listed.json()["items"][0]["body"]["id"] == body["id"]

    async def test_a_rejected_event_is_found_by_the_producers_id(
        self, client: httpx.AsyncClient, writer: dict[str, str]
    ) -> None:
        """Stored under an id of its own, so the corrected event can take the producer's id;
        asked for by the producer's id it is still answered, until the corrected one exists."""
        bad = event_body(payload={"old_balance": "x", "new_balance": "1.00"})
        assert (await client.post("/v1/events", json=bad, headers=writer)).status_code == 422
        shown = await client.get(f"/v1/events/{bad['id']}", headers=writer)
        assert shown.status_code == 200, shown.text
        assert shown.json()["status"] == "rejected"
        assert shown.json()["id"] != bad["id"]
        assert shown.json()["body"]["id"] == bad["id"]
        assert shown.json()["error"]
        fixed = {**bad, "payload": {"old_balance": "2.00", "new_balance": "1.00"}}
        r = await client.post("/v1/events", json=fixed, headers=writer)
        assert r.json()["results"][0]["status"] == "queued"
        assert (await client.get(f"/v1/events/{bad['id']}", headers=writer)).json()[
            "status"
        ] == "queued"
        other = await client.get(f"/v1/events/{uuid.uuid4()}", headers=writer)
        assert other.status_code == 404

    async def test_batch_mixes_valid_and_invalid_items(
        self,
        client: httpx.AsyncClient,
        writer: dict[str, str],
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        good, bad = event_body(), event_body("client.teleported")
        r = await client.post("/v1/events", json={"events": [good, bad, good]}, headers=writer)
        assert r.status_code == 202
        data = r.json()
        assert (data["accepted"], data["duplicates"], data["rejected"]) == (1, 1, 1)
        assert [x["status"] for x in data["results"]] == ["queued", "rejected", "duplicate"]
        assert data["results"][1]["errors"][0]["loc"] == "type"
        assert await count(sessionmaker, status=EventStatus.rejected) == 1

    async def test_batch_over_the_limit_is_413(
        self, client: httpx.AsyncClient, writer: dict[str, str]
    ) -> None:
        r = await client.post("/v1/events", json={"events": [event_body()] * 1001}, headers=writer)
        assert r.status_code == 413

    async def test_oversize_body_is_413(
        self, client: httpx.AsyncClient, writer: dict[str, str]
    ) -> None:
        r = await client.post("/v1/events", content=b"x" * 5_000_001, headers=writer)
        assert r.status_code == 413
        assert r.headers["content-type"] == "application/problem+json"

    async def test_non_json_body_is_422(
        self, client: httpx.AsyncClient, writer: dict[str, str]
    ) -> None:
        r = await client.post("/v1/events", content=b"{nope", headers=writer)
        assert r.status_code == 422
        assert r.json()["errors"][0]["type"] == "json_invalid"

    async def test_nan_is_not_json_and_is_422(
        self, client: httpx.AsyncClient, writer: dict[str, str]
    ) -> None:
        """RFC 8259 has no NaN (Python's json module accepts it; PostgreSQL's jsonb does not)."""
        body = json.dumps(event_body()).replace('"50.00"', "NaN", 1).encode()
        assert b"NaN" in body
        r = await client.post("/v1/events", content=body, headers=writer)
        assert r.status_code == 422
        assert r.json()["errors"][0]["type"] == "json_invalid"

    async def test_nul_character_is_rejected_with_its_path_and_stored(
        self,
        client: httpx.AsyncClient,
        writer: dict[str, str],
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        body = event_body()
        body["producer"] = "bil\x00ling"
        r = await client.post("/v1/events", json=body, headers=writer)
        assert r.status_code == 422
        assert r.json()["errors"] == [
            {
                "loc": "producer",
                "msg": "U+0000 (NUL) is not allowed in strings",
                "type": "string_nul",
            }
        ]
        listed = await client.get("/v1/events", params={"status": "rejected"}, headers=writer)
        assert listed.json()["items"][0]["body"]["producer"] == "bil\ufffdling"

    async def test_empty_batch_is_422(
        self, client: httpx.AsyncClient, writer: dict[str, str]
    ) -> None:
        r = await client.post("/v1/events", json={"events": []}, headers=writer)
        assert r.status_code == 422


class TestReading:
    async def test_unknown_event_is_404(
        self, client: httpx.AsyncClient, writer: dict[str, str]
    ) -> None:
        r = await client.get(f"/v1/events/{uuid.uuid4()}", headers=writer)
        assert r.status_code == 404

    async def test_event_types_publish_json_schemas(self, client: httpx.AsyncClient) -> None:
        r = await client.get("/v1/event-types")
        types = {t["type"]: t for t in r.json()}
        assert "client.balance_changed" in types
        assert types["contract.created"]["schema"]["properties"]["payload"]

    async def test_bad_cursor_is_422(
        self, client: httpx.AsyncClient, writer: dict[str, str]
    ) -> None:
        r = await client.get("/v1/events", params={"cursor": "!!"}, headers=writer)
        assert r.status_code == 422


class TestOps:
    async def test_healthz_and_readyz(self, client: httpx.AsyncClient) -> None:
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        ready = await client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["checks"] == {"postgres": "ok", "redis": "ok"}

    async def test_metrics_are_prometheus_text(self, client: httpx.AsyncClient) -> None:
        await client.get("/healthz")
        r = await client.get("/metrics")
        assert "http_requests_total" in r.text


class TestValidate:
    """``service.validate`` as the worker calls it (the NUL walk only when orjson's text may
    hold one)."""

    def test_a_nul_in_a_nested_key_or_value_is_found(self) -> None:
        body = event_body("client.created_by_offer")
        body["payload"] = {"k\x00": "v", "ok": ["a", "b\x00"]}
        checked = validate(body)
        assert checked.event is None
        assert {e["loc"] for e in checked.errors or []} == {"payload.k\x00", "payload.ok.1"}

    def test_the_text_backslash_u0000_is_no_nul(self) -> None:
        body = {**event_body("client.created_by_offer"), "trace_id": "\\u0000"}
        assert validate(body).event is not None


class TestListTimeRanges:
    async def test_occurred_and_received_ranges_are_half_open_and_need_a_time_zone(
        self,
        client: httpx.AsyncClient,
        writer: dict[str, str],
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        day = datetime(2026, 11, 20, tzinfo=UTC)
        ids_in_order = []
        async with sessionmaker.begin() as s:  # processed events, received an hour apart
            for i in range(3):
                body = event_body(occurred_at=day + timedelta(days=i))
                ids_in_order.append(body["id"])
                s.add(
                    Event(
                        id=uuid.UUID(body["id"]),
                        type=body["type"],
                        version=1,
                        client_id=body["client_id"],
                        producer="tests",
                        occurred_at=day + timedelta(days=i),
                        body=body,
                        status=EventStatus.processed,
                        source="api",
                        received_at=day + timedelta(hours=i),
                    )
                )
        first, second, third = ids_in_order

        async def ids(**params: str) -> list[str]:
            r = await client.get("/v1/events", params=params, headers=writer)
            assert r.status_code == 200, r.text
            return [item["id"] for item in r.json()["items"]]

        at = {n: (day + timedelta(days=n)).isoformat() for n in range(3)}
        assert await ids(occurred_from=at[1], occurred_to=at[2]) == [second]
        assert await ids(occurred_from=at[1]) == [third, second]
        assert await ids(occurred_to=at[1]) == [first]
        hour = (day + timedelta(hours=1)).isoformat()
        assert await ids(received_from=hour) == [third, second]
        assert await ids(received_to=hour) == [first]
        assert await ids(received_from=hour, occurred_to=at[2]) == [second]
        naive = await client.get(
            "/v1/events", params={"received_from": "2026-11-20T00:00:00"}, headers=writer
        )
        assert naive.status_code == 422
