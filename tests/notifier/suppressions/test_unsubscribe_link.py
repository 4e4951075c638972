"""The signed unsubscribe link: page, RFC 8058 one-click, forged links, throttle."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from notifier import unsubscribe
from notifier.letters.drain import unsubscribe_url
from notifier.models import Letter, LetterOrigin, LetterStatus, Suppression
from notifier.settings import NotifierSettings
from notifier.suppressions import throttle
from notifier.worker import delivery_config
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.factories import event_body
from tests.notifier.letters.conftest import START, Engine

ONE_CLICK = {"content": b"List-Unsubscribe=One-Click"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


async def add_letter(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    recipient: str = "Boss@Client-1.example",
    locale: str = "en",
) -> Letter:
    letter = Letter(
        letter="LowBalanceNotice",
        client_id="client-1",
        channel="email",
        recipient=recipient,
        locale=locale,
        context={},
        status=LetterStatus.sent,
        triggered_at=START,
        send_at=START,
        origin=LetterOrigin.event,
    )
    async with sessionmaker() as s, s.begin():
        s.add(letter)
    return letter


def path(settings: NotifierSettings, letter: Letter) -> str:
    url = unsubscribe_url(delivery_config(settings), letter.id, letter.recipient)
    return httpx.URL(url).path


async def suppressions(sessionmaker: async_sessionmaker[AsyncSession]) -> list[Suppression]:
    async with sessionmaker() as s:
        return list((await s.execute(select(Suppression).order_by(Suppression.id))).scalars())


class TestSigner:
    def test_the_letter_link_is_the_signed_token(self, settings: NotifierSettings) -> None:
        url = unsubscribe_url(delivery_config(settings), 42, "a@b.example")
        token = url.rsplit("/", 1)[1]
        assert url == f"{settings.public_url}/v1/unsubscribe/{token}"
        letter_id, sig = unsubscribe.parse(token) or (0, "")
        assert letter_id == 42
        assert unsubscribe.verify(settings.secret_key, 42, "a@b.example", sig)
        assert not unsubscribe.verify(settings.secret_key, 42, "c@b.example", sig)

    @pytest.mark.parametrize(
        "token", ["", "42", "42.", "x.abc", "-1." + "0" * 32, "4²." + "0" * 32]
    )
    def test_malformed_tokens_do_not_parse(self, token: str) -> None:
        assert unsubscribe.parse(token) is None


class TestUnsubscribeLink:
    async def test_the_page_asks_first_in_the_letters_language(
        self,
        client: httpx.AsyncClient,
        settings: NotifierSettings,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        letter = await add_letter(sessionmaker, locale="ru")
        r = await client.get(path(settings, letter))
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("text/html")
        assert r.headers["cache-control"] == "no-store"
        assert "Отписаться" in r.text
        assert f'action="{path(settings, letter)}"' in r.text
        assert "B***@Client-1.example" in r.text
        assert await suppressions(sessionmaker) == []  # a GET (link scanners) changes nothing

    async def test_one_click_suppresses_the_recipient_once(
        self,
        client: httpx.AsyncClient,
        settings: NotifierSettings,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        letter = await add_letter(sessionmaker)
        for _ in range(2):
            r = await client.post(path(settings, letter), headers=FORM, **ONE_CLICK)
            assert r.status_code == 200, r.text
            assert "no more e-mails" in r.text
        [row] = await suppressions(sessionmaker)
        assert (row.address, row.scope, row.reason, row.source) == (
            "boss@client-1.example",
            "*",
            "unsubscribed",
            "link",
        )
        assert row.detail == f"letter {letter.id} (LowBalanceNotice)"

    async def test_the_page_form_posts_without_a_body_too(
        self,
        client: httpx.AsyncClient,
        settings: NotifierSettings,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        letter = await add_letter(sessionmaker)
        r = await client.post(path(settings, letter))
        assert r.status_code == 200
        assert len(await suppressions(sessionmaker)) == 1

    @pytest.mark.parametrize("how", ["altered", "other_letter", "unknown_letter", "malformed"])
    async def test_a_forged_link_is_404_and_changes_nothing(
        self,
        how: str,
        client: httpx.AsyncClient,
        settings: NotifierSettings,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        letter = await add_letter(sessionmaker)
        other = await add_letter(sessionmaker, recipient="someone@else.example")
        good = unsubscribe.token(settings.secret_key, letter.id, letter.recipient)
        token = {
            "altered": good[:-1] + ("0" if good[-1] != "0" else "1"),
            "other_letter": f"{other.id}.{good.split('.')[1]}",
            "unknown_letter": f"{other.id + 100}.{good.split('.')[1]}",
            "malformed": "not-a-token",
        }[how]
        for method in ("GET", "POST"):
            r = await client.request(method, f"/v1/unsubscribe/{token}", headers=FORM, **ONE_CLICK)
            assert r.status_code == 404
            assert r.headers["content-type"] == "application/problem+json"
            assert r.json()["detail"] == "unsubscribe link not found"
        assert await suppressions(sessionmaker) == []


class TestThrottle:
    @pytest.fixture
    async def strict_client(
        self, settings: NotifierSettings, monkeypatch: pytest.MonkeyPatch
    ) -> AsyncIterator[httpx.AsyncClient]:
        from notifier.api.app import create_app

        monkeypatch.setattr(throttle.time, "time", lambda: 1_800_000_010.0)  # 50 s to the minute
        app = create_app(settings.model_copy(update={"unsubscribe_per_minute": 3}))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://n.test") as c:
                yield c

    async def test_too_many_requests_from_one_ip_are_429_with_retry_after(
        self,
        strict_client: httpx.AsyncClient,
        settings: NotifierSettings,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        letter = await add_letter(sessionmaker)
        codes = [(await strict_client.get(path(settings, letter))).status_code for _ in range(3)]
        assert codes == [200, 200, 200]
        r = await strict_client.post(path(settings, letter))
        assert r.status_code == 429
        assert r.headers["retry-after"] == "50"
        assert r.headers["content-type"] == "application/problem+json"
        assert await suppressions(sessionmaker) == []
        forged = await strict_client.get("/v1/unsubscribe/1.x")  # forged ones count too
        assert forged.status_code == 429


class TestSuppressedAfterUnsubscribing:
    async def test_the_recipients_next_letter_is_skipped_at_the_drain(
        self,
        letter_engine: Engine,
        client: httpx.AsyncClient,
        settings: NotifierSettings,
    ) -> None:
        sessionmaker = letter_engine.sessionmaker
        earlier = await add_letter(sessionmaker, recipient="boss@client-1.example")
        await letter_engine.handle(event_body("client.created_by_offer", occurred_at=START))
        [reminder] = await letter_engine.letters(status=LetterStatus.scheduled)
        assert reminder.recipient == earlier.recipient
        r = await client.post(path(settings, earlier), headers=FORM, **ONE_CLICK)
        assert r.status_code == 200
        await letter_engine.sender.drain(now=START + timedelta(days=7))
        [reminder] = await letter_engine.letters(id=reminder.id)
        assert (reminder.status, reminder.skip_reason) == (
            LetterStatus.skipped,
            "suppressed (unsubscribed)",
        )
