"""The integration letters (seeds 000-002) against the REAL gateway app with real ``crm``,
``newsletter`` and ``esp`` providers whose HTTP APIs are mocked with respx: what each provider's
API actually received, and what the letter recorded from its answer.

respx patches the HTTP pools only (httpcore's and ``Http1Pool``): the gateway and the upstream
stub are mounted as ASGI transports (which go through neither), so they are real; only the
providers' calls are mocked."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
import respx
from gateway.app import create_app
from gateway.tokens import create_token
from notifier.models import AttemptOutcome, LetterStatus
from notifier.settings import NotifierSettings
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from deploy.upstream_stub import app as upstream_app
from deploy.upstream_stub import client_profile
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

CRM = "https://crm.test/api"
BASKET = "https://basket.test"
ESP = "https://esp.test"

USER = "user-7"
OLD = "ann@example.com"
NEW = "ann@new.example"
#: a client of the upstream stub with two addresses (its admins)
ENTERPRISE = "enterprise-3"


# ---- the providers' APIs ---------------------------------------------------------------------


@dataclass
class Basket:
    """A Basket-style newsletter service with state: who is subscribed to what."""

    subscribers: dict[str, list[str]] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)

    def token(self, email: str) -> str:
        return self.tokens.setdefault(email, f"token-{len(self.tokens) + 1}")

    def lookup(self, request: httpx.Request) -> httpx.Response:
        assert request.headers["X-API-Key"] == "basket-key"
        email = request.url.params["email"]
        if email not in self.subscribers:
            return httpx.Response(
                404, json={"status": "error", "desc": "No such user", "code": "unknown email"}
            )
        body = {
            "status": "ok",
            "email": email,
            "token": self.token(email),
            "newsletters": self.subscribers[email],
        }
        return httpx.Response(200, json=body)

    def subscribe(self, request: httpx.Request) -> httpx.Response:
        form = form_of(request)
        mine = self.subscribers.setdefault(form["email"], [])
        mine.extend(n for n in form["newsletters"].split(",") if n not in mine)
        self.token(form["email"])
        return httpx.Response(200, json={"status": "ok"})

    def unsubscribe(self, request: httpx.Request, token: str) -> httpx.Response:
        form = form_of(request)
        assert self.tokens[form["email"]] == token
        gone = form["newsletters"].split(",")
        self.subscribers[form["email"]] = [
            n for n in self.subscribers[form["email"]] if n not in gone
        ]
        return httpx.Response(200, json={"status": "ok"})


@dataclass
class Crm:
    """A CRM answering ``crm-42`` to upserts; ``down`` answers 503 to everything."""

    down: bool = False

    def upsert(self, request: httpx.Request) -> httpx.Response:
        assert request.headers["Authorization"] == "Bearer crm-token"
        if self.down:
            return httpx.Response(503, json={"error": "maintenance"})
        return httpx.Response(200, json={"id": "crm-42"})

    def update(self, request: httpx.Request, contact: str) -> httpx.Response:
        assert request.headers["Authorization"] == "Bearer crm-token"
        if self.down:
            return httpx.Response(503, json={"error": "maintenance"})
        return httpx.Response(200, json={"id": contact})


@dataclass
class Providers:
    router: respx.MockRouter
    crm: Crm
    basket: Basket
    crm_upsert: respx.Route
    crm_update: respx.Route
    lookup: respx.Route
    subscribe: respx.Route
    unsubscribe: respx.Route
    esp: respx.Route

    def calls(self) -> list[tuple[str, str]]:
        """Every provider call, in order, as (method, path)."""
        return [(c.request.method, c.request.url.path) for c in self.router.calls]


def form_of(request: httpx.Request) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(request.content.decode()).items()}


def json_of(route: respx.Route, index: int = -1) -> Any:
    return json.loads(route.calls[index].request.content)


@pytest.fixture
def providers() -> Iterator[Providers]:
    crm, basket = Crm(), Basket()
    with respx.mock(assert_all_called=False) as router:
        found = Providers(
            router=router,
            crm=crm,
            basket=basket,
            crm_upsert=router.put(f"{CRM}/contacts").mock(side_effect=crm.upsert),
            crm_update=router.put(url__regex=rf"^{CRM}/contacts/(?P<contact>[^/]+)$").mock(
                side_effect=crm.update
            ),
            lookup=router.get(f"{BASKET}/news/lookup-user/").mock(side_effect=basket.lookup),
            subscribe=router.post(f"{BASKET}/news/subscribe/").mock(side_effect=basket.subscribe),
            unsubscribe=router.post(
                url__regex=rf"^{BASKET}/news/unsubscribe/(?P<token>[^/]+)/$"
            ).mock(side_effect=basket.unsubscribe),
            esp=router.post(f"{ESP}/campaigns/trigger/send").respond(
                200, json={"dispatch_id": "dispatch-1", "message": "success"}
            ),
        )
        yield found


@pytest.fixture
async def engine_with_providers(
    settings: NotifierSettings,
    database_url: str,
    redis_url: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    clock: FakeClock,
    providers: Providers,
) -> AsyncIterator[Engine]:
    gateway_settings = log_gateway_settings(
        database_url,
        redis_url,
        db_pool_size=5,
        providers={
            "log": {"kind": "log"},
            "crm-main": {"kind": "crm", "base_url": CRM, "token": "crm-token"},
            "basket": {"kind": "newsletter", "base_url": BASKET, "api_key": "basket-key"},
            "braze": {"kind": "esp", "base_url": ESP, "api_key": "braze-key"},
        },
        channel_defaults={"crm": "crm-main", "newsletter": "basket", "esp": "braze"},
    )
    gateway_app = create_app(gateway_settings)
    token = await create_token(database_url, name="notifier", scopes=["messages:write"])
    async with gateway_app.router.lifespan_context(gateway_app):
        mounts = {
            GATEWAY: httpx.ASGITransport(app=gateway_app),
            UPSTREAM: httpx.ASGITransport(app=upstream_app),
        }
        async with httpx.AsyncClient(mounts=mounts, timeout=10.0) as http:
            yield build_engine(
                settings.model_copy(update={"gateway_token": token}), sessionmaker, clock, http
            )


# ---- events ----------------------------------------------------------------------------------


def signed_up() -> dict[str, Any]:
    payload = {"email": OLD, "name": "Ann", "language": "ru", "mailing_lists": ["weekly"]}
    return event_body("user.signed_up", client_id=USER, payload=payload, occurred_at=START)


def email_changed() -> dict[str, Any]:
    payload = {"old_email": OLD, "new_email": NEW}
    return event_body("user.email_changed", client_id=USER, payload=payload, occurred_at=START)


def group(kind: str, name: str) -> dict[str, Any]:
    payload = {"email": OLD, "group": name}
    return event_body(f"user.group_{kind}", client_id=USER, payload=payload, occurred_at=START)


def license_changed(allocated: int, total: int = 10) -> dict[str, Any]:
    payload = {"subscription_plan_id": "plan-1", "allocated": allocated, "total": total}
    return event_body(
        "license.allocation_changed", client_id=ENTERPRISE, payload=payload, occurred_at=START
    )


# ---- scenarios -------------------------------------------------------------------------------


class TestCrmAndNewsletterThroughTheRealGateway:
    async def test_sign_up_upserts_the_contact_and_an_email_change_moves_contact_and_lists(
        self, engine_with_providers: Engine, providers: Providers
    ) -> None:
        engine = engine_with_providers
        assert await engine.handle(signed_up()) == "processed"

        assert providers.crm_upsert.call_count == 1
        assert json_of(providers.crm_upsert) == {
            "email": OLD,
            "name": "Ann",
            "external_id": USER,  # the app's user id
            "mailing_lists": ["weekly"],
            "properties": {"language": "ru"},
        }
        [sync] = await engine.letters(letter="CrmContactSync")
        assert (sync.status, sync.channel, sync.recipient) == (LetterStatus.sent, "crm", OLD)
        assert sync.provider_message_id == "crm-42"  # the CRM's contact id

        # Ann reads two newsletters at the old address, one of them ours
        providers.basket.subscribers[OLD] = ["mozillians-nda", "firefox-news"]
        before = len(providers.router.calls)
        assert await engine.handle(email_changed()) == "processed"

        # the CRM contact is addressed by the id the upsert answered
        assert providers.crm_update.call_count == 1
        update = providers.crm_update.calls.last.request
        assert update.url.path == "/api/contacts/crm-42"
        assert json.loads(update.content) == {"email": NEW}
        [crm_change] = await engine.letters(letter="CrmEmailChange")
        assert crm_change.status == LetterStatus.sent
        assert crm_change.provider_message_id == "crm-42"
        assert crm_change.context["message"]["to"] == [{"address": NEW}]  # id added at send

        # Basket: look the old address up, subscribe the new one, unsubscribe the old one
        basket_calls = [c for c in providers.calls()[before:] if not c[1].startswith("/api/")]
        old_token = providers.basket.tokens[OLD]
        assert basket_calls == [
            ("GET", "/news/lookup-user/"),
            ("POST", "/news/subscribe/"),
            ("POST", f"/news/unsubscribe/{old_token}/"),
        ]
        assert providers.lookup.calls.last.request.url.params["email"] == OLD
        assert form_of(providers.subscribe.calls.last.request) == {
            "email": NEW,
            "newsletters": "mozillians-nda",  # only ours that she reads
        }
        assert form_of(providers.unsubscribe.calls.last.request) == {
            "email": OLD,
            "newsletters": "mozillians-nda",
        }
        assert providers.basket.subscribers == {
            OLD: ["firefox-news"],
            NEW: ["mozillians-nda"],
        }
        [news_change] = await engine.letters(letter="NewsletterEmailChange")
        assert (news_change.status, news_change.channel) == (LetterStatus.sent, "newsletter")
        assert news_change.context["message"]["previous_address"] == OLD
        assert providers.esp.call_count == 0

    async def test_joining_a_group_subscribes_and_leaving_it_unsubscribes(
        self, engine_with_providers: Engine, providers: Providers
    ) -> None:
        engine = engine_with_providers
        assert await engine.handle(group("joined", "nda")) == "processed"

        assert providers.calls() == [
            ("GET", "/news/lookup-user/"),  # unknown yet: 404, subscribed all the same
            ("POST", "/news/subscribe/"),
        ]
        assert providers.lookup.calls.last.request.url.params["email"] == OLD
        assert form_of(providers.subscribe.calls.last.request) == {
            "email": OLD,
            "newsletters": "mozillians-nda",
        }
        assert providers.basket.subscribers == {OLD: ["mozillians-nda"]}
        [joined] = await engine.letters(letter="NewsletterGroupSubscribe")
        assert (joined.status, joined.channel, joined.recipient) == (
            LetterStatus.sent,
            "newsletter",
            OLD,
        )

        assert await engine.handle(group("left", "nda")) == "processed"

        token = providers.basket.tokens[OLD]
        assert providers.calls()[2:] == [
            ("GET", "/news/lookup-user/"),
            ("POST", f"/news/unsubscribe/{token}/"),
        ]
        assert form_of(providers.unsubscribe.calls.last.request) == {
            "email": OLD,
            "newsletters": "mozillians-nda",
        }
        assert providers.basket.subscribers == {OLD: []}
        [left] = await engine.letters(letter="NewsletterGroupUnsubscribe")
        assert left.status == LetterStatus.sent
        assert providers.crm_upsert.call_count == 0

    async def test_a_crm_outage_retries_the_upsert_and_it_is_sent_once(
        self, engine_with_providers: Engine, providers: Providers
    ) -> None:
        engine = engine_with_providers
        providers.crm.down = True
        assert await engine.handle(signed_up()) == "processed"

        assert providers.crm_upsert.call_count == 1
        [sync] = await engine.letters(letter="CrmContactSync")
        assert sync.status == LetterStatus.scheduled
        assert sync.send_at > START  # backed off
        assert sync.provider_message_id is None
        assert (sync.last_error or "").startswith("http_5xx")
        [attempt] = await engine.attempts(sync.id)
        assert (attempt.outcome, attempt.code, attempt.status_code) == (
            AttemptOutcome.transient,
            "http_5xx",
            503,
        )

        providers.crm.down = False
        engine.clock.set(sync.send_at)
        await engine.sender.drain(now=engine.clock())

        [sync] = await engine.letters(letter="CrmContactSync")
        assert sync.status == LetterStatus.sent
        assert sync.provider_message_id == "crm-42"
        assert [a.outcome for a in await engine.attempts(sync.id)] == [
            AttemptOutcome.transient,
            AttemptOutcome.ok,
        ]
        assert providers.crm_upsert.call_count == 2  # the failure, then one success

        # nothing is left to send: a later drain calls the CRM no more
        engine.clock.advance(sync.send_at - START)
        await engine.sender.drain(now=engine.clock())
        assert providers.crm_upsert.call_count == 2
        assert json_of(providers.crm_upsert, 0) == json_of(providers.crm_upsert, 1)


class TestLicenseUsageThroughTheRealGateway:
    async def test_80_percent_triggers_one_campaign_call_for_both_admins(
        self, engine_with_providers: Engine, providers: Providers
    ) -> None:
        engine = engine_with_providers
        profile = client_profile(ENTERPRISE)
        admins = sorted(profile["emails"])
        assert len(admins) == 2  # the stub's client has two addresses

        assert await engine.handle(license_changed(7)) == "processed"  # 70 %: nothing
        assert providers.esp.call_count == 0
        assert await engine.handle(license_changed(8)) == "processed"

        assert providers.esp.call_count == 1  # both admins packed into one trigger call
        request = providers.esp.calls.last.request
        assert request.headers["Authorization"] == "Bearer braze-key"
        body = json.loads(request.content)
        assert body["campaign_id"] == "license-usage-75"
        assert body["trigger_properties"] == {
            "enterprise_customer_id": ENTERPRISE,
            "enterprise_name": profile["name"],
            "subscription_plan_uuid": "plan-1",
            "allocated_license_count": 8,
            "total_license_count": 10,
            "threshold_percent": 75,
        }
        recipients = sorted(body["recipients"], key=lambda r: r["external_user_id"])
        assert recipients == [
            {"external_user_id": admin, "trigger_properties": {"user_email": admin}}
            for admin in admins
        ]

        letters = await engine.letters(letter="LicenseUsageNotice")
        assert sorted(x.recipient for x in letters) == admins
        assert {(x.status, x.channel, x.provider_message_id) for x in letters} == {
            (LetterStatus.sent, "esp", "dispatch-1")
        }
        assert await engine.letters(letter="LicenseFullNotice") == []  # 80 % is not 100 %

        assert await engine.handle(license_changed(9)) == "processed"  # once per plan
        assert providers.esp.call_count == 1
        assert {c[1] for c in providers.calls()} == {"/campaigns/trigger/send"}
