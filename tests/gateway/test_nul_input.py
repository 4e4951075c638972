"""A U+0000 (NUL) in a request is a 422 problem+json, not a 503 "database unavailable": the
database is up, the input is bad (decision 0094). A real outage is still a 503."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from gateway.models import MessageRecord
from notifier_common.devservices import with_database
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.gateway.conftest import SettingsFactory, email, running
from tests.gateway.fakes import CountingProvider

NUL_ERROR = {"msg": "U+0000 (NUL) is not allowed in strings", "type": "string_nul"}
OUTAGE = "a dependency (database) is unavailable; nothing was sent, retry later"


def lenient(application: FastAPI) -> httpx.AsyncClient:
    """Answers as a caller sees them (an unhandled error is a 500, not raised into the test)."""
    transport = httpx.ASGITransport(app=application, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://gateway.test")


@pytest.fixture
async def api(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with lenient(app) as c:
        yield c


def problem_of(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = r.json()
    assert body["status"] == status
    return body


async def stored(sm: async_sessionmaker[AsyncSession]) -> int:
    async with sm() as s:
        return int((await s.execute(select(func.count()).select_from(MessageRecord))).scalar_one())


class TestNulIsRefused:
    @pytest.mark.parametrize(
        ("path", "param"),
        [
            ("/v1/messages", "idempotency_key"),
            ("/v1/messages", "provider"),
            ("/v1/suppressions", "address"),
            ("/v1/suppressions", "scope"),
        ],
    )
    async def test_list_query(
        self, api: httpx.AsyncClient, writer: dict[str, str], path: str, param: str
    ) -> None:
        r = await api.get(f"{path}?{param}=a%00b", headers=writer)
        assert problem_of(r, 422)["errors"] == [{"loc": f"query.{param}", **NUL_ERROR}]

    async def test_batch_item_key_names_the_item(
        self,
        api: httpx.AsyncClient,
        writer: dict[str, str],
        counting: CountingProvider,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        items = [
            {"idempotency_key": "fine", "message": email()},
            {"idempotency_key": "a\x00b", "message": email()},
        ]
        r = await api.post("/v1/messages:batch", json={"items": items}, headers=writer)
        errors = problem_of(r, 422)["errors"]
        assert errors == [{"loc": "body.items.1.idempotency_key", **NUL_ERROR}]
        assert counting.calls == 0
        assert await stored(sessionmaker) == 0

    async def test_a_value_the_database_refuses_is_422_not_503(
        self,
        api: httpx.AsyncClient,
        writer: dict[str, str],
        counting: CountingProvider,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        """The safety net: a NUL that no validation catches (a recipient address) is refused by
        PostgreSQL itself (SQLSTATE 22021); nothing is sent or stored."""
        r = await api.post(
            "/v1/messages", json=email("a\x00b"), headers={**writer, "Idempotency-Key": "nul-1"}
        )
        problem = problem_of(r, 422)
        assert problem["title"] == "Unprocessable Content"
        assert "U+0000" in problem["detail"]
        assert counting.calls == 0
        assert await stored(sessionmaker) == 0

    async def test_message_text_with_nul_is_still_sent(
        self, api: httpx.AsyncClient, writer: dict[str, str], counting: CountingProvider
    ) -> None:
        """The message body is stored as JSON text, where U+0000 is an escape: not refused."""
        r = await api.post(
            "/v1/messages",
            json=email(text="a\x00b", metadata={"k": "\x00"}),
            headers={**writer, "Idempotency-Key": "nul-2"},
        )
        assert r.status_code == 200, r.text
        assert r.json()["outcome"] == "accepted"
        assert counting.calls == 1


class TestDatabaseOutageIsStill503:
    @pytest.mark.parametrize(
        "where",
        [
            pytest.param("closed_port", id="server-down"),  # connection refused: an OSError
            pytest.param("missing_database", id="database-missing"),  # a DBAPIError (3D000)
        ],
    )
    async def test_send_and_list_answer_503(
        self,
        make_settings: SettingsFactory,
        writer: dict[str, str],
        database_url: str,
        where: str,
    ) -> None:
        if where == "closed_port":
            url = "postgresql+asyncpg://postgres@127.0.0.1:1/notifier"
        else:
            url = with_database(database_url, f"ntf_missing_{uuid.uuid4().hex}")
        async with (
            running(make_settings(database_url=url)) as application,
            lenient(application) as api,
        ):
            sent = await api.post(
                "/v1/messages", json=email(), headers={**writer, "Idempotency-Key": "o-1"}
            )
            listed = await api.get("/v1/messages?idempotency_key=o-1", headers=writer)
        for r in (sent, listed):
            problem = problem_of(r, 503)
            assert problem["title"] == "Service Unavailable"
            assert problem["detail"] == OUTAGE


async def test_a_provider_answer_with_nul_is_stored_and_answered(
    api: httpx.AsyncClient,
    writer: dict[str, str],
    counting: CountingProvider,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """A NUL in what a provider answered (after the send) is stored as U+FFFD: the results are
    written and the caller gets the provider's outcome, not a 422 for a batch already sent."""
    counting.outcome = "nul"
    r = await api.post("/v1/messages", json=email(), headers={**writer, "Idempotency-Key": "n-3"})
    assert r.status_code == 200, r.text
    answer = r.json()
    assert (answer["outcome"], answer["code"]) == ("permanent_error", "bad\ufffdcode")
    async with sessionmaker() as s:
        row = (await s.execute(select(MessageRecord))).scalar_one()
    assert (row.status.value, row.reason) == ("permanent_error", "no\ufffdsuch mailbox")
    assert row.response_excerpt == "raw\ufffdanswer"
    assert counting.calls == 1


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(asyncpg.exceptions.ConnectionDoesNotExistError("closed"), id="dropped"),
        pytest.param(asyncpg.exceptions.InterfaceError("connection is closed"), id="closed"),
        pytest.param(asyncpg.exceptions.TooManyConnectionsError("too many"), id="refused"),
    ],
)
async def test_asyncpgs_own_errors_are_503(
    make_settings: SettingsFactory, error: Exception
) -> None:
    """The hot statements run on asyncpg's connection (decision 0107) raise its errors as they
    are, not wrapped in SQLAlchemy's: the same 503 as for a ``DBAPIError``."""

    async def failing() -> None:
        raise error

    async with running(make_settings()) as application:
        application.add_api_route("/test-asyncpg-error", failing)
        async with lenient(application) as api:
            r = await api.get("/test-asyncpg-error")
    problem = problem_of(r, 503)
    assert problem["detail"] == OUTAGE
