"""The safety net of decision 0094: a value PostgreSQL refuses for a U+0000 in it (SQLSTATE
22021 in text, 22P05 in jsonb) is a 422 problem+json from ``install_error_handlers``; any other
database error is left unhandled as before. Real PostgreSQL, errors raised by the server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from notifier_common.devservices import to_libpq
from notifier_common.errors import install_error_handlers, is_unstorable_text
from notifier_common.text import NoNulModel
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

TEXT = text("SELECT CAST(:v AS text)")
JSONB = text("SELECT CAST(:v AS jsonb)")


class Named(NoNulModel):
    name: str
    tags: list[str] = []


def make_app(engine: AsyncEngine, database_url: str) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/text")
    async def as_text() -> object:
        async with engine.connect() as conn:
            return (await conn.execute(TEXT, {"v": "a\x00b"})).scalar_one()

    @app.get("/jsonb")
    async def as_jsonb() -> object:
        async with engine.connect() as conn:
            return (await conn.execute(JSONB, {"v": '{"k": "a\\u0000b"}'})).scalar_one()

    @app.get("/raw")
    async def raw_asyncpg() -> object:
        conn = await asyncpg.connect(to_libpq(database_url))
        try:
            return await conn.fetchval("SELECT $1::text", "a\x00b")
        finally:
            await conn.close()

    @app.get("/division")
    async def division() -> object:
        async with engine.connect() as conn:
            return (await conn.execute(text("SELECT 1 / 0"))).scalar_one()

    @app.post("/validated")
    async def validated(body: Named) -> object:
        return body.name

    return app


@pytest.fixture
async def app(engine: AsyncEngine, database_url: str) -> FastAPI:
    return make_app(engine, database_url)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://app.test") as c:
        yield c


@pytest.mark.parametrize("path", ["/text", "/jsonb", "/raw"])
async def test_refused_value_is_422_problem(client: httpx.AsyncClient, path: str) -> None:
    r = await client.get(path)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json() == {
        "type": "about:blank",
        "title": "Unprocessable Content",
        "status": 422,
        "detail": "the request holds a character the database cannot store (U+0000, NUL)",
    }


async def test_other_database_errors_stay_unhandled(app: FastAPI) -> None:
    transport = httpx.ASGITransport(app=app)  # raises what the app did not handle
    async with httpx.AsyncClient(transport=transport, base_url="http://app.test") as c:
        with pytest.raises(DBAPIError, match="division by zero"):
            await c.get("/division")


async def test_division_is_still_a_500(client: httpx.AsyncClient) -> None:
    assert (await client.get("/division")).status_code == 500


async def test_validation_names_the_field(client: httpx.AsyncClient) -> None:
    r = await client.post("/validated", json={"name": "a\x00b", "tags": ["ok", "\x00"]})
    assert r.status_code == 422
    nul = {"msg": "U+0000 (NUL) is not allowed in strings", "type": "string_nul"}
    assert r.json()["errors"] == [{"loc": "body.name", **nul}, {"loc": "body.tags", **nul}]
    assert (await client.post("/validated", json={"name": "fine"})).status_code == 200


async def test_is_unstorable_text_reads_the_sqlstate(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        with pytest.raises(DBAPIError) as refused:
            await conn.execute(TEXT, {"v": "\x00"})
    assert is_unstorable_text(refused.value)
    async with engine.connect() as conn:
        with pytest.raises(DBAPIError) as other:
            await conn.execute(text("SELECT 1 / 0"))
    assert not is_unstorable_text(other.value)
    assert not is_unstorable_text(ConnectionRefusedError(111, "Connection refused"))
