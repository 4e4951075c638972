"""A U+0000 (NUL) in a request is a 422 problem+json naming the field, not a 500 from PostgreSQL,
which cannot store it (decision 0094). The upstream knows the NUL clients, so without the
validation each request reaches the database (as it did under ``make run``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import respx
from fastapi import FastAPI
from notifier.models import Letter, LetterStatus
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.factories import event_body
from tests.notifier.letters.conftest import Upstream
from tests.notifier.operator.conftest import InsertLetters, letter_row
from tests.notifier.operator.test_config_api import GATEWAY, PROVIDER

NUL_ERROR = {"msg": "U+0000 (NUL) is not allowed in strings", "type": "string_nul"}


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    """Clients ``a\\0b`` and ``demo\\0cargo`` exist upstream (keys as they appear in the URL)."""
    data = Upstream()
    for quoted in ("a%00b", "demo%00cargo"):
        data.add_client(quoted, id=quoted.replace("%00", "\x00"), locale="ru")
        data.add_contract("ct-1", quoted)
    with respx.mock(assert_all_called=False) as router:
        data.install(router)
        yield data


@pytest.fixture
async def api(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The app's answers as a caller sees them: an unhandled error is a plain-text 500 here,
    not an exception raised into the test."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://notifier.test") as c:
        yield c


def assert_nul_problem(r: httpx.Response, loc: str) -> None:
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    problem: dict[str, Any] = r.json()
    assert problem["status"] == 422
    assert problem["title"] == "Unprocessable Content"
    assert {"loc": loc, **NUL_ERROR} in problem["errors"], problem


async def count_letters(sm: async_sessionmaker[AsyncSession]) -> int:
    async with sm() as s:
        return int((await s.execute(select(func.count()).select_from(Letter))).scalar_one())


class TestNulIsRefused:
    async def test_cancel_reason(
        self,
        api: httpx.AsyncClient,
        writer: dict[str, str],
        insert_letters: InsertLetters,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        [letter_id] = await insert_letters(letter_row(0, status=LetterStatus.scheduled))
        r = await api.post(
            f"/v1/letters/{letter_id}:cancel", json={"reason": "a\x00b"}, headers=writer
        )
        assert_nul_problem(r, "body.reason")
        async with sessionmaker() as s:
            letter = await s.get(Letter, letter_id)
        assert letter is not None
        assert letter.status is LetterStatus.scheduled

    async def test_manual_send_client_id(
        self,
        api: httpx.AsyncClient,
        writer: dict[str, str],
        upstream: Upstream,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        body = {"letter": "LowBalanceNotice", "client_id": "a\x00b", "bypass_conditions": True}
        r = await api.post("/v1/letters:send", json=body, headers=writer)
        assert_nul_problem(r, "body.client_id")
        assert upstream.calls == 0
        assert await count_letters(sessionmaker) == 0

    async def test_manual_send_context_overrides_name_the_field(
        self, api: httpx.AsyncClient, writer: dict[str, str], upstream: Upstream
    ) -> None:
        body = {
            "letter": "LowBalanceNotice",
            "client_id": "client-1",
            "context_overrides": {"client": {"name": "x\x00"}},
        }
        r = await api.post("/v1/letters:send", json=body, headers=writer)
        assert_nul_problem(r, "body.context_overrides")

    async def test_dry_run_event_client_id(
        self, api: httpx.AsyncClient, reader: dict[str, str], upstream: Upstream
    ) -> None:
        event = event_body("client.balance_changed", client_id="demo\x00cargo")
        r = await api.post("/v1/events:dry-run", json=event, headers=reader)
        assert r.status_code == 422, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["errors"] == [{"loc": "client_id", **NUL_ERROR}]  # as POST /v1/events
        assert upstream.calls == 0

    async def test_bulk_retry_filter_client_id(
        self, api: httpx.AsyncClient, writer: dict[str, str], insert_letters: InsertLetters
    ) -> None:
        await insert_letters(letter_row(0, status=LetterStatus.failed))
        body = {"filter": {"status": ["failed"], "client_id": "a\x00b"}, "dry_run": True}
        r = await api.post("/v1/letters:retry", json=body, headers=writer)
        assert_nul_problem(r, "body.filter.client_id")

    @pytest.mark.parametrize("param", ["client_id", "type"])
    async def test_event_list_query(
        self, api: httpx.AsyncClient, reader: dict[str, str], param: str
    ) -> None:
        r = await api.get(f"/v1/events?{param}=a%00b", headers=reader)
        assert_nul_problem(r, f"query.{param}")

    @respx.mock
    async def test_integration_switch_reason_is_not_forwarded(
        self, api: httpx.AsyncClient, configurer: dict[str, str]
    ) -> None:
        """The reason would reach the gateway's database; refused here, naming the field."""
        route = respx.put(f"{GATEWAY}/v1/providers/smtp/switch").respond(200, json=PROVIDER)
        r = await api.put(
            "/v1/config/integrations/smtp/switch",
            json={"enabled": False, "reason": "ESP\x00outage"},
            headers=configurer,
        )
        assert_nul_problem(r, "body.reason")
        assert not route.called

    async def test_length_errors_keep_their_wording(
        self, api: httpx.AsyncClient, writer: dict[str, str]
    ) -> None:
        """The NUL check runs after the field's own constraints, which still speak of
        characters."""
        body = {"filter": {"client_id": "x" * 101}, "dry_run": True}
        r = await api.post("/v1/letters:retry", json=body, headers=writer)
        assert r.status_code == 422
        [error] = r.json()["errors"]
        assert error["type"] == "string_too_long"
        assert error["msg"] == "String should have at most 100 characters"

    async def test_clean_values_still_pass(
        self, api: httpx.AsyncClient, writer: dict[str, str], insert_letters: InsertLetters
    ) -> None:
        await insert_letters(letter_row(0, status=LetterStatus.failed, client_id="client-0"))
        body = {"filter": {"status": ["failed"], "client_id": "client-0"}, "dry_run": True}
        r = await api.post("/v1/letters:retry", json=body, headers=writer)
        assert r.status_code == 200, r.text
        assert r.json()["matched"] == 1
