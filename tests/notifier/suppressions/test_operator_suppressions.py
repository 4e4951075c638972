"""The operator's suppression routes: list, add, and lift (here and at the REAL gateway, served
over TCP: the notifier's own gateway client calls it, decision 0108)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from gateway.models import Suppression as GatewaySuppression
from gateway.suppressions import repository as gateway_repository
from gateway.tokens import create_token
from notifier.api.app import create_app
from notifier.models import (
    LetterStatus,
    Suppression,
    SuppressionReason,
    SuppressionSource,
)
from notifier.settings import NotifierSettings
from notifier.suppressions import repository
from sqlalchemy import delete, event, insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import ORMExecuteState
from sqlalchemy.util import await_only

from tests.conftest import TokenFactory
from tests.notifier.letters.conftest import Engine
from tests.notifier.operator.conftest import bearer, reader, writer
from tests.notifier.suppressions.gateway_server import (
    NOTIFIER_SCOPES,
    refusing_url,
    serving_gateway,
)
from tests.notifier.suppressions.test_send_time_skip import DUE, schedule

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
ANN = "ann@example.com"

Sessionmaker = async_sessionmaker[AsyncSession]
__all__ = ["reader", "writer"]  # the operator API's token fixtures, imported for these tests


async def seed(sm: Sessionmaker, *rows: dict[str, Any]) -> list[int]:
    """Notifier rows, ``created_at`` one minute apart in the order given unless set."""
    values = [
        {
            "scope": "*",
            "reason": SuppressionReason.hard_bounce,
            "source": SuppressionSource.gateway,
            "created_at": T0 + timedelta(minutes=i),
            **row,
        }
        for i, row in enumerate(rows)
    ]
    async with sm() as s, s.begin():
        return list(
            (await s.execute(insert(Suppression).returning(Suppression.id), values)).scalars()
        )


async def seed_gateway(sm: Sessionmaker, *pairs: tuple[str, str]) -> None:
    """Rows of the gateway's own list (``gateway.suppressions``), as its webhooks write them."""
    rows = [
        gateway_repository.NewSuppression(address, scope, "hard_bounce", "log", "550 no such user")
        for address, scope in pairs
    ]
    async with sm() as s, s.begin():
        await gateway_repository.add_many(s, rows)


async def notifier_rows(sm: Sessionmaker) -> list[tuple[str, str, str]]:
    async with sm() as s:
        stmt = select(Suppression.address, Suppression.scope, Suppression.reason)
        return [(a, sc, r.value) for a, sc, r in (await s.execute(stmt.order_by(Suppression.id)))]


async def gateway_rows(sm: Sessionmaker) -> list[tuple[str, str]]:
    async with sm() as s:
        stmt = select(GatewaySuppression.address, GatewaySuppression.scope)
        return [(a, sc) for a, sc in await s.execute(stmt.order_by(GatewaySuppression.id))]


def logged(caplog: pytest.LogCaptureFixture, event: str) -> list[dict[str, Any]]:
    """The structured lines of ``event`` (the app's logging goes through stdlib)."""
    lines = [r.msg for r in caplog.records if isinstance(r.msg, dict)]
    return [
        {k: v for k, v in x.items() if k not in ("timestamp", "logger")}
        for x in lines
        if x.get("event") == event
    ]


def ids(r: httpx.Response) -> list[int]:
    assert r.status_code == 200, r.text
    return [item["id"] for item in r.json()["items"]]


def assert_problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    problem: dict[str, Any] = r.json()
    return problem


class TestList:
    async def test_newest_first_with_every_filter(
        self, client: httpx.AsyncClient, reader: dict[str, str], sessionmaker: Sessionmaker
    ) -> None:
        link = {"reason": SuppressionReason.unsubscribed, "source": SuppressionSource.link}
        a, b, c, d = await seed(
            sessionmaker,
            {"address": ANN, "detail": "log: hard_bounce"},
            {"address": ANN, "scope": "LowBalanceNotice", **link},
            {"address": "bob@example.com", "reason": SuppressionReason.complaint},
            {"address": "bob@example.com", "scope": "email", **link},
        )
        assert ids(await client.get("/v1/suppressions", headers=reader)) == [d, c, b, a]
        url = "/v1/suppressions?address=%20Ann@Example.COM%20"
        r = await client.get(url, headers=reader)
        assert ids(r) == [b, a]
        first = r.json()["items"][1]
        assert {k: first[k] for k in ("address", "scope", "reason", "source", "detail")} == {
            "address": ANN,
            "scope": "*",
            "reason": "hard_bounce",
            "source": "gateway",
            "detail": "log: hard_bounce",
        }
        assert first["created_at"] == "2026-11-20T12:00:00Z"
        assert ids(await client.get("/v1/suppressions?scope=*", headers=reader)) == [c, a]
        both = "/v1/suppressions?reason=complaint&reason=unsubscribed"
        assert ids(await client.get(both, headers=reader)) == [d, c, b]
        assert ids(await client.get("/v1/suppressions?source=link", headers=reader)) == [d, b]
        r = await client.get("/v1/suppressions?source=link&address=bob@example.com", headers=reader)
        assert ids(r) == [d]
        assert ids(await client.get("/v1/suppressions?address=nobody@x.org", headers=reader)) == []

    async def test_keyset_pages_follow_next_cursor(
        self, client: httpx.AsyncClient, reader: dict[str, str], sessionmaker: Sessionmaker
    ) -> None:
        same_time = {"created_at": T0}  # ties on created_at are broken by id
        seeded = await seed(
            sessionmaker,
            *({"address": f"u{i}@example.com", **(same_time if i < 3 else {})} for i in range(5)),
        )
        seen: list[int] = []
        cursor: str | None = None
        for _ in range(5):
            params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            r = await client.get("/v1/suppressions", params=params, headers=reader)
            seen += ids(r)
            cursor = r.json()["next_cursor"]
            if cursor is None:
                break
        expected = [seeded[4], seeded[3], seeded[2], seeded[1], seeded[0]]
        assert seen == expected

    @pytest.mark.parametrize(
        "query",
        [
            "cursor=not-a-cursor",
            "cursor=WyJ4IiwiMSJd",  # ["x","1"]: not a time
            "cursor=a%00b",
            "address=a%00b@example.com",
            "scope=%2A%00",
            "reason=bored",
            "source=pigeon",
            "limit=0",
            "limit=501",
        ],
    )
    async def test_invalid_input_is_a_422_problem(
        self, client: httpx.AsyncClient, reader: dict[str, str], query: str
    ) -> None:
        r = await client.get(f"/v1/suppressions?{query}", headers=reader)
        assert assert_problem(r, 422)["status"] == 422

    async def test_a_nul_names_the_parameter(
        self, client: httpx.AsyncClient, reader: dict[str, str]
    ) -> None:
        r = await client.get("/v1/suppressions?address=a%00b", headers=reader)
        errors = assert_problem(r, 422)["errors"]
        assert {"loc": "query.address", "type": "string_nul"}.items() <= errors[0].items()


class TestAdd:
    async def test_a_new_suppression_is_201_manual_by_the_operator(
        self,
        client: httpx.AsyncClient,
        writer: dict[str, str],
        sessionmaker: Sessionmaker,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        body = {"address": "  Ann@Example.COM ", "detail": "asked by phone"}
        r = await client.post("/v1/suppressions", json=body, headers=writer)
        assert r.status_code == 201, r.text
        out = r.json()
        assert {k: out[k] for k in ("address", "scope", "reason", "source", "detail")} == {
            "address": ANN,
            "scope": "*",
            "reason": "manual",
            "source": "operator",
            "detail": "by ops-alice: asked by phone",
        }
        async with sessionmaker() as s:  # what the drain reads at send time
            assert await repository.scopes_of(s, [ANN]) == {ANN: {"*": SuppressionReason.manual}}
        [line] = logged(caplog, "suppressions.added")
        assert (line["address"], line["by"]) == ("a***@example.com", "ops-alice")

    async def test_a_row_lifted_between_the_conflict_and_the_read_is_added_again(
        self, sessionmaker: Sessionmaker
    ) -> None:
        [sid] = await seed(sessionmaker, {"address": ANN})

        async def lift_elsewhere() -> None:
            async with sessionmaker() as other, other.begin():
                await other.execute(delete(Suppression).where(Suppression.id == sid))

        lifted: list[bool] = []

        def between(state: ORMExecuteState) -> None:
            # the INSERT found the row; a concurrent lift commits before the read of it
            if state.is_select and not lifted:
                lifted.append(True)
                await_only(lift_elsewhere())

        manual = repository.NewSuppression(
            ANN, "*", SuppressionReason.manual, SuppressionSource.operator, "by ops-alice"
        )
        async with sessionmaker() as s, s.begin():
            event.listen(s.sync_session, "do_orm_execute", between)
            row, added = await repository.add_or_get(s, manual)
        assert lifted
        assert (added, row.reason, row.detail) == (True, SuppressionReason.manual, "by ops-alice")
        assert await notifier_rows(sessionmaker) == [(ANN, "*", "manual")]

    async def test_a_letter_scope_and_no_detail(
        self, client: httpx.AsyncClient, writer: dict[str, str]
    ) -> None:
        body = {"address": ANN, "scope": "LowBalanceNotice"}
        r = await client.post("/v1/suppressions", json=body, headers=writer)
        assert r.status_code == 201, r.text
        assert (r.json()["scope"], r.json()["detail"]) == ("LowBalanceNotice", "by ops-alice")

    async def test_an_existing_suppression_is_200_and_unchanged(
        self, client: httpx.AsyncClient, writer: dict[str, str], sessionmaker: Sessionmaker
    ) -> None:
        link = {"reason": SuppressionReason.unsubscribed, "source": SuppressionSource.link}
        [sid] = await seed(sessionmaker, {"address": ANN, "detail": "letter 7", **link})
        r = await client.post(
            "/v1/suppressions", json={"address": "ANN@example.com"}, headers=writer
        )
        assert r.status_code == 200, r.text
        assert (r.json()["id"], r.json()["reason"], r.json()["source"]) == (
            sid,
            "unsubscribed",
            "link",
        )
        assert r.json()["detail"] == "letter 7"
        assert await notifier_rows(sessionmaker) == [(ANN, "*", "unsubscribed")]
        again = await client.post("/v1/suppressions", json={"address": ANN}, headers=writer)
        assert again.status_code == 200
        assert again.json() == r.json()

    @pytest.mark.parametrize(
        ("body", "loc"),
        [
            ({"address": "a\x00b@example.com"}, "body.address"),
            ({"address": ANN, "detail": "x\x00"}, "body.detail"),
            ({"address": ANN, "scope": "*\x00"}, "body.scope"),
            ({"address": "   "}, "body.address"),
            ({"address": "a" * 321}, "body.address"),
            ({"address": ANN, "scope": ""}, "body.scope"),
            ({"address": ANN, "detail": "x" * 501}, "body.detail"),
            ({"address": ANN, "scope": "LowBalanceNotise"}, "body.scope"),  # a typo: stops nothing
            ({"address": ANN, "scope": "crm"}, "body.scope"),  # actions are never suppressed
            ({"address": ANN, "reason": "complaint"}, "body.reason"),
            ({}, "body.address"),
        ],
    )
    async def test_invalid_input_is_a_422_naming_the_field_and_nothing_is_stored(
        self,
        client: httpx.AsyncClient,
        writer: dict[str, str],
        sessionmaker: Sessionmaker,
        body: dict[str, Any],
        loc: str,
    ) -> None:
        r = await client.post("/v1/suppressions", json=body, headers=writer)
        assert loc in {e["loc"] for e in assert_problem(r, 422)["errors"]}
        assert await notifier_rows(sessionmaker) == []

    async def test_it_takes_effect_for_the_next_send(
        self,
        client: httpx.AsyncClient,
        writer: dict[str, str],
        letter_engine: Engine,
    ) -> None:
        letter_id = await schedule(letter_engine)
        [letter] = await letter_engine.letters(id=letter_id)
        r = await client.post(
            "/v1/suppressions", json={"address": letter.recipient.upper()}, headers=writer
        )
        assert r.status_code == 201, r.text
        await letter_engine.sender.drain(now=DUE)
        [letter] = await letter_engine.letters(id=letter_id)
        assert (letter.status, letter.skip_reason) == (LetterStatus.skipped, "suppressed (manual)")


class TestScopes:
    @pytest.mark.parametrize(
        ("method", "path", "allowed"),
        [
            ("GET", "/v1/suppressions", "letters:read"),
            ("POST", "/v1/suppressions", "letters:write"),
            ("DELETE", "/v1/suppressions/1", "letters:write"),
        ],
    )
    async def test_401_without_a_token_403_without_the_scope(
        self,
        client: httpx.AsyncClient,
        make_token: TokenFactory,
        method: str,
        path: str,
        allowed: str,
    ) -> None:
        other = "letters:read" if allowed == "letters:write" else "events:write"
        kwargs: dict[str, Any] = {"json": {"address": ANN}} if method == "POST" else {}
        r = await client.request(method, path, **kwargs)
        assert assert_problem(r, 401)["status"] == 401
        r = await client.request(method, path, headers=bearer(await make_token(other)), **kwargs)
        assert assert_problem(r, 403)["status"] == 403
        r = await client.request(method, path, headers=bearer(await make_token(allowed)), **kwargs)
        assert r.status_code not in (401, 403), r.text


@asynccontextmanager
async def notifier_api(settings: NotifierSettings) -> AsyncIterator[httpx.AsyncClient]:
    """The notifier API with these settings (its own gateway client, as in production)."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://notifier.test") as c:
            yield c


@pytest.fixture
def gateway_url(database_url: str, redis_url: str) -> Iterator[str]:
    with serving_gateway(database_url, redis_url) as url:
        yield url


@pytest.fixture
async def lifting(
    settings: NotifierSettings, gateway_url: str, database_url: str
) -> AsyncIterator[httpx.AsyncClient]:
    """The notifier API calling the real gateway with a token like the seed's (admin)."""
    token = await create_token(database_url, name="notifier", scopes=list(NOTIFIER_SCOPES))
    own = settings.model_copy(update={"gateway_url": gateway_url, "gateway_token": token})
    async with notifier_api(own) as api:
        yield api


class TestLift:
    async def test_lifts_the_row_here_and_the_same_address_and_scope_at_the_gateway(
        self,
        lifting: httpx.AsyncClient,
        writer: dict[str, str],
        sessionmaker: Sessionmaker,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        sid, _ = await seed(
            sessionmaker,
            {"address": ANN, "detail": "log: hard_bounce"},
            {"address": ANN, "scope": "LowBalanceNotice"},
        )
        await seed_gateway(
            sessionmaker, (ANN, "*"), (ANN, "email"), ("bob@example.com", "*"), (ANN, "group:7")
        )
        r = await lifting.delete(f"/v1/suppressions/{sid}", headers=writer)
        assert r.status_code == 200, r.text
        assert r.json()["gateway_lifted"] == 1
        lifted = r.json()["suppression"]
        assert (lifted["id"], lifted["address"], lifted["scope"]) == (sid, ANN, "*")
        assert (lifted["reason"], lifted["source"]) == ("hard_bounce", "gateway")
        assert await notifier_rows(sessionmaker) == [(ANN, "LowBalanceNotice", "hard_bounce")]
        assert await gateway_rows(sessionmaker) == [
            (ANN, "email"),
            ("bob@example.com", "*"),
            (ANN, "group:7"),
        ]
        assert logged(caplog, "suppressions.lifted") == [
            {
                "event": "suppressions.lifted",
                "level": "info",
                "suppression_id": sid,
                "address": "a***@example.com",
                "scope": "*",
                "reason": "hard_bounce",
                "source": "gateway",
                "gateway_lifted": 1,
                "by": "ops-alice",
            }
        ]
        r = await lifting.delete(f"/v1/suppressions/{sid}", headers=writer)
        assert "does not exist" in assert_problem(r, 404)["detail"]

    async def test_a_suppression_the_gateway_never_had_is_lifted_here_only(
        self, lifting: httpx.AsyncClient, writer: dict[str, str], sessionmaker: Sessionmaker
    ) -> None:
        link = {"reason": SuppressionReason.unsubscribed, "source": SuppressionSource.link}
        [sid] = await seed(sessionmaker, {"address": ANN, **link})
        await seed_gateway(sessionmaker, (ANN, "email"))
        r = await lifting.delete(f"/v1/suppressions/{sid}", headers=writer)
        assert r.status_code == 200, r.text
        assert r.json()["gateway_lifted"] == 0
        assert await notifier_rows(sessionmaker) == []
        assert await gateway_rows(sessionmaker) == [(ANN, "email")]

    async def test_an_unknown_id_is_404(
        self, lifting: httpx.AsyncClient, writer: dict[str, str]
    ) -> None:
        r = await lifting.delete("/v1/suppressions/424242", headers=writer)
        assert assert_problem(r, 404)["detail"] == "suppression 424242 does not exist"
        r = await lifting.delete("/v1/suppressions/0", headers=writer)
        assert_problem(r, 422)

    async def test_gateway_unreachable_is_503_and_nothing_is_lifted(
        self, settings: NotifierSettings, writer: dict[str, str], sessionmaker: Sessionmaker
    ) -> None:
        [sid] = await seed(sessionmaker, {"address": ANN})
        with refusing_url() as url:
            async with notifier_api(settings.model_copy(update={"gateway_url": url})) as api:
                r = await api.delete(f"/v1/suppressions/{sid}", headers=writer)
        assert "gateway unreachable" in assert_problem(r, 503)["detail"]
        assert await notifier_rows(sessionmaker) == [(ANN, "*", "hard_bounce")]

    async def test_a_gateway_token_without_admin_is_502_and_nothing_is_lifted(
        self,
        settings: NotifierSettings,
        gateway_url: str,
        database_url: str,
        writer: dict[str, str],
        sessionmaker: Sessionmaker,
    ) -> None:
        [sid] = await seed(sessionmaker, {"address": ANN})
        await seed_gateway(sessionmaker, (ANN, "*"))
        token = await create_token(database_url, name="notifier", scopes=["messages:read"])
        own = settings.model_copy(update={"gateway_url": gateway_url, "gateway_token": token})
        async with notifier_api(own) as api:
            r = await api.delete(f"/v1/suppressions/{sid}", headers=writer)
        assert "--scope admin" in assert_problem(r, 502)["detail"]
        assert await notifier_rows(sessionmaker) == [(ANN, "*", "hard_bounce")]
        assert await gateway_rows(sessionmaker) == [(ANN, "*")]
