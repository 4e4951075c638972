"""Pull sync against the REAL gateway app: provider webhooks -> gateway suppressions and message
statuses -> the notifier's suppressions and letters.delivery_status -> the next letter skipped."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
from gateway.app import create_app
from gateway.models.logged_message import LoggedMessage
from gateway.tokens import create_token
from notifier.models import (
    Letter,
    LetterStatus,
    Suppression,
    SuppressionReason,
    SuppressionSource,
    SyncWatermark,
)
from notifier.settings import NotifierSettings
from notifier.suppressions import repository, tasks
from notifier.suppressions.feed import GatewayFeeds, RemoteStatusChange
from notifier.suppressions.repository import NewSuppression
from notifier.suppressions.tasks import SyncConfig
from notifier.worker import sync_suppressions
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from deploy.upstream_stub import app as upstream_app
from tests.conftest import TokenFactory
from tests.factories import event_body
from tests.gateway.conftest import log_gateway_settings
from tests.notifier.letters.conftest import (
    GATEWAY,
    START,
    UPSTREAM,
    Engine,
    FakeClock,
    build_engine,
)

CLIENT = "demo-prepaid-ru"
SECRET = "whsec-sync"


@dataclass
class World:
    engine: Engine
    feeds: GatewayFeeds
    http: httpx.AsyncClient
    settings: NotifierSettings

    async def hook(self, *events: dict[str, Any]) -> dict[str, Any]:
        r = await self.http.post(
            f"{GATEWAY}/v1/providers/log/webhooks",
            json={"events": list(events)},
            headers={"X-Webhook-Secret": SECRET},
        )
        assert r.status_code == 200, r.text
        return dict(r.json())

    async def sync(self, config: SyncConfig | None = None) -> tuple[int, int]:
        config = config or SyncConfig()
        sm = self.engine.sessionmaker
        added = await tasks.sync_suppressions(sm, self.feeds, config)
        moved = await tasks.sync_delivery_statuses(sm, self.feeds, config)
        return added.applied, moved.applied

    async def welcome(self) -> list[Letter]:
        activated = event_body(
            "client.activated",
            client_id=CLIENT,
            payload={"payment_type": "prepaid"},
            occurred_at=START,
        )
        created = event_body(
            "contract.created",
            client_id=CLIENT,
            payload={"contract_id": f"contract-{CLIENT}", "payment_type": "prepaid"},
            occurred_at=START,
        )
        assert await self.engine.handle(created) == "processed"
        assert await self.engine.handle(activated) == "processed"
        letters = await self.engine.letters(letter="ActivateClientNotice")
        assert letters
        assert {x.status for x in letters} == {LetterStatus.sent}
        return letters


@pytest.fixture
async def world(
    settings: NotifierSettings,
    database_url: str,
    redis_url: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    clock: FakeClock,
) -> AsyncIterator[World]:
    webhook = {"scheme": "shared_secret", "secret": SECRET, "format": "neutral"}
    gateway_settings = log_gateway_settings(
        database_url,
        redis_url,
        providers={"log": {"kind": "log", "webhook": webhook}},
        db_pool_size=5,
    )
    gateway_app = create_app(gateway_settings)
    token = await create_token(
        database_url, name="notifier", scopes=["messages:write", "messages:read"]
    )
    own = settings.model_copy(update={"gateway_token": token, "gateway_url": GATEWAY})
    async with gateway_app.router.lifespan_context(gateway_app):
        mounts = {
            GATEWAY: httpx.ASGITransport(app=gateway_app),
            UPSTREAM: httpx.ASGITransport(app=upstream_app),
        }
        async with httpx.AsyncClient(mounts=mounts, timeout=10.0) as http:
            engine = build_engine(own, sessionmaker, clock, http)
            feeds = GatewayFeeds(http, base_url=GATEWAY, token=token)
            yield World(engine, feeds, http, own)


async def rows(sessionmaker: async_sessionmaker[AsyncSession]) -> list[Suppression]:
    async with sessionmaker() as s:
        return list((await s.execute(select(Suppression).order_by(Suppression.id))).scalars())


class TestSuppressionSync:
    async def test_a_hard_bounce_at_the_gateway_skips_the_next_letter_at_the_notifier(
        self, world: World, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        [bounced, *others] = await world.welcome()
        result = await world.hook(
            {
                "id": "evt-1",
                "type": "bounced",
                "bounce_type": "hard",
                "provider_message_id": bounced.provider_message_id,
                "reason": "550 no such user",
            }
        )
        assert result["suppressions_added"] == 1
        assert await world.sync() == (1, 1)
        [row] = await rows(sessionmaker)
        assert (row.address, row.scope, row.reason, row.source) == (
            bounced.recipient.lower(),
            "*",
            SuppressionReason.hard_bounce,
            SuppressionSource.gateway,
        )
        assert row.detail == "log: hard_bounce: 550 no such user"
        [letter] = await world.engine.letters(id=bounced.id)
        assert letter.delivery_status == "bounced"
        async with sessionmaker() as s:
            before = (await s.execute(select(func.count()).select_from(LoggedMessage))).scalar_one()
        reminders = await world.engine.letters(letter="FirstRemindPrepaidNotice")
        await world.engine.sender.drain(now=max(r.send_at for r in reminders))
        by_recipient = {
            r.recipient: (r.status, r.skip_reason)
            for r in await world.engine.letters(letter="FirstRemindPrepaidNotice")
        }
        assert by_recipient[bounced.recipient] == (
            LetterStatus.skipped,
            "suppressed (hard_bounce)",
        )
        assert {by_recipient[o.recipient][0] for o in others} <= {LetterStatus.sent}
        async with sessionmaker() as s:
            after = (await s.execute(select(func.count()).select_from(LoggedMessage))).scalar_one()
        assert after - before == len(others)  # the suppressed one never reached the gateway

    async def test_a_repeated_sync_changes_nothing_and_keeps_the_first_reason(
        self, world: World, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        async with sessionmaker() as s, s.begin():
            await repository.add_many(
                s,
                [
                    NewSuppression(
                        "bob@example.com",
                        "*",
                        SuppressionReason.unsubscribed,
                        SuppressionSource.link,
                    )
                ],
            )
        await world.hook({"id": "c1", "type": "complained", "address": "Bob@Example.com"})
        await world.hook({"id": "u1", "type": "unsubscribed", "address": "x@example.com"})
        assert (await world.sync())[0] == 1  # bob was already suppressed here
        assert (await world.sync())[0] == 0  # the overlap re-reads, the upsert ignores
        assert [(r.address, r.reason, r.source) for r in await rows(sessionmaker)] == [
            ("bob@example.com", "unsubscribed", "link"),
            ("x@example.com", "unsubscribed", "gateway"),
        ]

    async def test_pages_until_the_feed_ends_and_keeps_the_watermark(
        self, world: World, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        await world.hook(
            *(
                {"id": f"b{n}", "type": "complained", "address": f"u{n}@example.com"}
                for n in range(5)
            )
        )
        report = await tasks.sync_suppressions(
            sessionmaker, world.feeds, SyncConfig(page_size=2, max_pages=10)
        )
        assert (report.pages, report.read, report.applied) == (3, 5, 5)
        async with sessionmaker() as s:
            [mark] = (await s.execute(select(SyncWatermark))).scalars()
        newest = max(r.created_at for r in await rows(sessionmaker))
        assert (mark.feed, mark.watermark) == (tasks.SUPPRESSIONS_FEED, report.watermark)
        assert mark.watermark >= newest - timedelta(seconds=1)


class TestDeliveryStatusSync:
    async def test_delivered_reaches_the_letter_and_a_later_bounce_moves_it(
        self, world: World, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        [letter, *_] = await world.welcome()
        pm = letter.provider_message_id
        await world.hook({"id": "d1", "type": "delivered", "provider_message_id": pm})
        await world.sync()
        [seen] = await world.engine.letters(id=letter.id)
        assert seen.delivery_status == "delivered"
        assert seen.delivery_updated_at is not None
        await world.hook({"id": "b1", "type": "bounced", "provider_message_id": pm})
        await world.sync()
        [seen] = await world.engine.letters(id=letter.id)
        assert seen.delivery_status == "bounced"
        await world.sync()  # the overlap re-reads the delivered event: the bounce stays
        [seen] = await world.engine.letters(id=letter.id)
        assert seen.delivery_status == "bounced"

    async def test_the_operator_sees_the_delivery_status_on_the_timeline(
        self, world: World, client: httpx.AsyncClient, make_token: TokenFactory
    ) -> None:
        [letter, *_] = await world.welcome()
        pm = letter.provider_message_id
        await world.hook({"id": "d1", "type": "delivered", "provider_message_id": pm})
        await world.sync()
        reader = {"Authorization": f"Bearer {await make_token('letters:read')}"}
        body = (await client.get(f"/v1/letters/{letter.id}", headers=reader)).json()
        assert body["delivery_status"] == "delivered"
        last = body["timeline"][-1]
        assert (last["kind"], last["summary"]) == ("provider", "provider reported delivered")


async def admin_headers(database_url: str) -> dict[str, str]:
    token = await create_token(database_url, name="ops", scopes=["admin"])
    return {"Authorization": f"Bearer {token}"}


class TestReplay:
    """An integration switched off at the gateway answers `skipped: disabled`; its replay sends
    the messages, and the status feed brings the letters' new state (decision 0098)."""

    async def _switch(self, world: World, admin: dict[str, str], *, enabled: bool) -> None:
        r = await world.http.put(
            f"{GATEWAY}/v1/providers/log/switch",
            json={"enabled": enabled, "reason": "test"},
            headers=admin,
        )
        assert r.status_code == 200, r.text

    async def test_replayed_letters_become_sent_with_a_replayed_attempt(
        self, world: World, database_url: str
    ) -> None:
        admin = await admin_headers(database_url)
        await self._switch(world, admin, enabled=False)
        activated = event_body(
            "client.activated",
            client_id=CLIENT,
            payload={"payment_type": "prepaid"},
            occurred_at=START,
        )
        assert await world.engine.handle(activated) == "processed"
        letters = await world.engine.letters(letter="ActivateClientNotice")
        assert letters
        assert {(x.status, x.skip_reason) for x in letters} == {(LetterStatus.skipped, "disabled")}
        assert await world.sync() == (0, 0)  # nothing replayed yet

        await self._switch(world, admin, enabled=True)
        r = await world.http.post(f"{GATEWAY}/v1/providers/log:replay", headers=admin)
        assert r.status_code == 200, r.text
        assert await world.sync() == (0, len(letters))
        for letter in letters:
            [seen] = await world.engine.letters(id=letter.id)
            assert seen.status == LetterStatus.sent
            assert seen.skip_reason is None
            assert seen.sent_at is not None
            assert seen.provider_message_id
            attempts = await world.engine.attempts(letter.id)
            assert [(a.outcome.value, a.code) for a in attempts] == [
                ("skipped", "disabled"),
                ("ok", "replayed"),
            ]
            assert attempts[-1].try_number == 2
        assert await world.sync() == (0, 0)  # the overlap re-reads them: nothing moves twice

    async def test_a_letter_resent_meanwhile_is_left_alone(
        self, world: World, database_url: str, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        admin = await admin_headers(database_url)
        await self._switch(world, admin, enabled=False)
        activated = event_body(
            "client.activated",
            client_id=CLIENT,
            payload={"payment_type": "prepaid"},
            occurred_at=START,
        )
        assert await world.engine.handle(activated) == "processed"
        [letter, *_] = await world.engine.letters(letter="ActivateClientNotice")
        async with sessionmaker.begin() as s:  # an operator cancelled the skipped letter's retry
            row = await s.get(Letter, letter.id)
            assert row is not None
            row.skip_reason = "operator"
        await self._switch(world, admin, enabled=True)
        await world.http.post(f"{GATEWAY}/v1/providers/log:replay", headers=admin)
        await world.sync()
        [seen] = await world.engine.letters(id=letter.id)
        assert (seen.status, seen.skip_reason) == (LetterStatus.skipped, "operator")

    @pytest.mark.parametrize(
        ("status", "letter_status", "outcome", "error"),
        [
            ("permanent_error", LetterStatus.failed, "permanent", "http_4xx: rejected"),
            ("transient_error", LetterStatus.scheduled, "transient", "http_4xx: rejected"),
            ("skipped", LetterStatus.skipped, "skipped", None),
        ],
    )
    async def test_a_replay_that_did_not_send_is_recorded_as_such(
        self,
        world: World,
        database_url: str,
        sessionmaker: async_sessionmaker[AsyncSession],
        status: str,
        letter_status: LetterStatus,
        outcome: str,
        error: str | None,
    ) -> None:
        admin = await admin_headers(database_url)
        await self._switch(world, admin, enabled=False)
        activated = event_body(
            "client.activated",
            client_id=CLIENT,
            payload={"payment_type": "prepaid"},
            occurred_at=START,
        )
        assert await world.engine.handle(activated) == "processed"
        [letter, *_] = await world.engine.letters(letter="ActivateClientNotice")
        item = RemoteStatusChange(
            received_at=START,
            idempotency_key=f"letter-{letter.id}",
            status=status,
            event="replayed",
            provider="log",
            code="http_4xx" if status != "skipped" else "suppressed",
            reason="rejected",
        )
        async with sessionmaker.begin() as s:
            assert await tasks.apply_status_changes(s, [item]) == 1
        async with sessionmaker.begin() as s:  # applied twice: nothing moves again
            assert await tasks.apply_status_changes(s, [item]) == 0
        [seen] = await world.engine.letters(id=letter.id)
        assert seen.status == letter_status
        assert seen.last_error == error
        if letter_status == LetterStatus.skipped:
            assert seen.skip_reason == "suppressed"
        attempts = await world.engine.attempts(letter.id)
        assert (attempts[-1].outcome.value, attempts[-1].try_number) == (outcome, 2)
        assert attempts[-1].code == f"replayed: {item.code}"


class TestCron:
    async def test_the_cron_syncs_both_feeds_and_survives_an_unreachable_gateway(
        self, world: World, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        await world.hook({"id": "c1", "type": "complained", "address": "a@example.com"})
        ctx: dict[str, Any] = {
            "settings": world.settings,
            "sessionmaker": sessionmaker,
            "gateway_feeds": world.feeds,
        }
        assert await sync_suppressions(ctx) == {"suppressions": 1, "statuses": 0}
        down = GatewayFeeds(world.http, base_url="http://127.0.0.1:9", token="x")
        assert await sync_suppressions({**ctx, "gateway_feeds": down}) == {
            "suppressions_failed": 1,
            "statuses_failed": 1,
        }
        assert len(await rows(sessionmaker)) == 1
