from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
import respx
from gateway.providers._http import ProviderConfigError
from gateway.providers.base import Message, Outcome, Recipient
from gateway.providers.newsletter import NewsletterProvider

BASE = "https://basket.test"
LOOKUP = "/news/lookup-user/"
SUBSCRIBE = "/news/subscribe/"
TOKEN = "7d1c0a4e-token"
UNSUBSCRIBE = f"/news/unsubscribe/{TOKEN}/"
OK = httpx.Response(200, json={"status": "ok"})
UNKNOWN = httpx.Response(
    404, json={"status": "error", "desc": "No such user", "code": "unknown email"}
)


def _user(*newsletters: str) -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "status": "ok",
            "email": "alice@example.com",
            "token": TOKEN,
            "newsletters": list(newsletters),
        },
    )


def _message(action: str, **overrides: Any) -> Message:
    fields: dict[str, Any] = {
        "channel": "newsletter",
        "action": action,
        "to": [Recipient(address="alice@example.com")],
        "lists": ["mozilla-phone"],
    }
    fields.update(overrides)
    return Message(**fields)


def _form(route: respx.Route, index: int = -1) -> dict[str, list[str]]:
    return parse_qs(route.calls[index].request.content.decode())


@pytest.fixture
def router() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=False) as mock:
        yield mock


@pytest.fixture
async def basket() -> AsyncIterator[NewsletterProvider]:
    provider = NewsletterProvider("basket", {"base_url": BASE, "api_key": "key-1"})
    await provider.start()
    yield provider
    await provider.aclose()


class TestNewsletterConfig:
    def test_missing_base_url_is_a_config_error(self) -> None:
        with pytest.raises(ProviderConfigError, match=r"\(newsletter\).*base_url"):
            NewsletterProvider("basket", {"api_key": "k"})


class TestSubscribe:
    async def test_known_user_is_subscribed_after_lookup(
        self, basket: NewsletterProvider, router: respx.MockRouter
    ) -> None:
        lookup = router.get(LOOKUP).mock(return_value=_user("other"))
        subscribe = router.post(SUBSCRIBE).mock(return_value=OK)

        result = await basket.send(_message("subscribe", lists=["mozilla-phone", "nda"]))

        assert result.outcome is Outcome.accepted
        assert lookup.calls.last.request.url.params["email"] == "alice@example.com"
        assert lookup.calls.last.request.headers["X-API-Key"] == "key-1"
        assert _form(subscribe) == {
            "email": ["alice@example.com"],
            "newsletters": ["mozilla-phone,nda"],
        }
        assert [s["step"] for s in result.details["steps"]] == ["lookup", "subscribe"]

    async def test_unknown_user_is_still_subscribed(
        self, basket: NewsletterProvider, router: respx.MockRouter
    ) -> None:
        router.get(LOOKUP).mock(return_value=UNKNOWN)
        subscribe = router.post(SUBSCRIBE).mock(return_value=OK)

        result = await basket.send(_message("subscribe"))

        assert result.outcome is Outcome.accepted
        assert subscribe.called
        assert result.details["steps"][0]["outcome"] == "not_found"

    async def test_already_subscribed_user_needs_no_call(
        self, basket: NewsletterProvider, router: respx.MockRouter
    ) -> None:
        router.get(LOOKUP).mock(return_value=_user("mozilla-phone"))
        subscribe = router.post(SUBSCRIBE).mock(return_value=OK)

        result = await basket.send(_message("subscribe"))

        assert result.outcome is Outcome.accepted
        assert result.details["already_subscribed"] == ["mozilla-phone"]
        assert not subscribe.called

    async def test_failed_lookup_stops_the_chain(
        self, basket: NewsletterProvider, router: respx.MockRouter
    ) -> None:
        router.get(LOOKUP).mock(return_value=httpx.Response(503))
        subscribe = router.post(SUBSCRIBE).mock(return_value=OK)

        result = await basket.send(_message("subscribe"))

        assert (result.outcome, result.code) == (Outcome.transient_error, "http_5xx")
        assert not subscribe.called

    async def test_invalid_email_answer_is_invalid_recipient(
        self, basket: NewsletterProvider, router: respx.MockRouter
    ) -> None:
        router.get(LOOKUP).mock(return_value=UNKNOWN)
        router.post(SUBSCRIBE).respond(
            400, json={"status": "error", "desc": "Invalid email address", "code": 2}
        )

        result = await basket.send(_message("subscribe"))

        assert (result.outcome, result.code) == (Outcome.permanent_error, "invalid_recipient")
        assert "Invalid email address" in (result.reason or "")

    async def test_subscribe_answer_that_is_not_ok_is_unexpected_response(
        self, basket: NewsletterProvider, router: respx.MockRouter
    ) -> None:
        router.get(LOOKUP).mock(return_value=UNKNOWN)
        router.post(SUBSCRIBE).respond(200, text="<html>maintenance</html>")

        result = await basket.send(_message("subscribe"))

        assert (result.outcome, result.code) == (Outcome.permanent_error, "unexpected_response")
        assert result.response_excerpt == "<html>maintenance</html>"

    async def test_subscribe_timeout_is_transient(
        self, basket: NewsletterProvider, router: respx.MockRouter
    ) -> None:
        router.get(LOOKUP).mock(return_value=UNKNOWN)
        router.post(SUBSCRIBE).mock(side_effect=httpx.ReadTimeout("slow"))

        result = await basket.send(_message("subscribe"))

        assert (result.outcome, result.code) == (Outcome.transient_error, "timeout")

    async def test_rate_limited_lookup_is_transient_with_retry_after(
        self, basket: NewsletterProvider, router: respx.MockRouter
    ) -> None:
        router.get(LOOKUP).respond(429, headers={"Retry-After": "12"})

        result = await basket.send(_message("subscribe"))

        assert (result.code, result.retry_after) == ("http_429", 12.0)


class TestUnsubscribe:
    async def test_known_user_is_unsubscribed_with_their_token(
        self, basket: NewsletterProvider, router: respx.MockRouter
    ) -> None:
        router.get(LOOKUP).mock(return_value=_user("mozilla-phone", "nda"))
        unsubscribe = router.post(UNSUBSCRIBE).mock(return_value=OK)

        result = await basket.send(_message("unsubscribe", lists=["nda"]))

        assert result.outcome is Outcome.accepted
        assert _form(unsubscribe) == {"email": ["alice@example.com"], "newsletters": ["nda"]}

    async def test_unknown_user_is_permanent_not_found(
        self, basket: NewsletterProvider, router: respx.MockRouter
    ) -> None:
        router.get(LOOKUP).mock(return_value=UNKNOWN)

        result = await basket.send(_message("unsubscribe"))

        assert (result.outcome, result.code, result.status_code) == (
            Outcome.permanent_error,
            "not_found",
            404,
        )

    async def test_unknown_email_code_in_a_200_is_not_found_too(
        self, basket: NewsletterProvider, router: respx.MockRouter
    ) -> None:
        router.get(LOOKUP).respond(200, json={"status": "error", "desc": "x", "code": 3})

        result = await basket.send(_message("unsubscribe"))

        assert (result.outcome, result.code) == (Outcome.permanent_error, "not_found")

    async def test_lookup_without_token_is_unexpected_response_not_not_found(
        self, basket: NewsletterProvider, router: respx.MockRouter
    ) -> None:
        router.get(LOOKUP).respond(200, json={"status": "ok", "email": "alice@example.com"})

        result = await basket.send(_message("unsubscribe"))

        assert (result.outcome, result.code) == (Outcome.permanent_error, "unexpected_response")

    async def test_malformed_lookup_is_unexpected_response(
        self, basket: NewsletterProvider, router: respx.MockRouter
    ) -> None:
        router.get(LOOKUP).respond(200, text="not json")

        result = await basket.send(_message("unsubscribe"))

        assert (result.code, result.response_excerpt) == ("unexpected_response", "not json")

    async def test_user_not_on_the_lists_needs_no_call(
        self, basket: NewsletterProvider, router: respx.MockRouter
    ) -> None:
        router.get(LOOKUP).mock(return_value=_user("other"))
        unsubscribe = router.post(UNSUBSCRIBE).mock(return_value=OK)

        result = await basket.send(_message("unsubscribe"))

        assert result.outcome is Outcome.accepted
        assert not unsubscribe.called

    async def test_unsubscribe_server_error_is_transient(
        self, basket: NewsletterProvider, router: respx.MockRouter
    ) -> None:
        router.get(LOOKUP).mock(return_value=_user("mozilla-phone"))
        router.post(UNSUBSCRIBE).respond(500)

        result = await basket.send(_message("unsubscribe"))

        assert (result.outcome, result.code) == (Outcome.transient_error, "http_5xx")
        assert [s["step"] for s in result.details["steps"]] == ["lookup", "unsubscribe"]


class TestChangeEmail:
    def _change(self, **overrides: Any) -> Message:
        fields: dict[str, Any] = {
            "to": [Recipient(address="alice@new.example")],
            "previous_address": "alice@example.com",
            "lists": ["mozilla-phone", "nda"],
        }
        return _message("change_email", **{**fields, **overrides})

    async def test_lists_of_the_old_address_move_to_the_new_one(
        self, basket: NewsletterProvider, router: respx.MockRouter
    ) -> None:
        lookup = router.get(LOOKUP).mock(return_value=_user("mozilla-phone", "unrelated"))
        subscribe = router.post(SUBSCRIBE).mock(return_value=OK)
        unsubscribe = router.post(UNSUBSCRIBE).mock(return_value=OK)

        result = await basket.send(self._change())

        assert result.outcome is Outcome.accepted
        assert result.details["moved"] == ["mozilla-phone"]
        assert lookup.calls.last.request.url.params["email"] == "alice@example.com"
        assert _form(subscribe) == {
            "email": ["alice@new.example"],
            "newsletters": ["mozilla-phone"],
        }
        assert _form(unsubscribe) == {
            "email": ["alice@example.com"],
            "newsletters": ["mozilla-phone"],
        }
        assert [s["step"] for s in result.details["steps"]] == [
            "lookup",
            "subscribe",
            "unsubscribe",
        ]

    async def test_unknown_old_address_moves_nothing(
        self, basket: NewsletterProvider, router: respx.MockRouter
    ) -> None:
        router.get(LOOKUP).mock(return_value=UNKNOWN)
        subscribe = router.post(SUBSCRIBE).mock(return_value=OK)

        result = await basket.send(self._change())

        assert result.outcome is Outcome.accepted
        assert result.details["moved"] == []
        assert not subscribe.called

    async def test_failed_subscribe_keeps_the_old_address_subscribed(
        self, basket: NewsletterProvider, router: respx.MockRouter
    ) -> None:
        router.get(LOOKUP).mock(return_value=_user("nda"))
        router.post(SUBSCRIBE).respond(502)
        unsubscribe = router.post(UNSUBSCRIBE).mock(return_value=OK)

        result = await basket.send(self._change())

        assert (result.outcome, result.code) == (Outcome.transient_error, "http_5xx")
        assert not unsubscribe.called

    async def test_missing_previous_address_is_refused(self, basket: NewsletterProvider) -> None:
        result = await basket.send(self._change(previous_address=None))

        assert (result.outcome, result.code) == (Outcome.permanent_error, "invalid_message")


class TestNewsletterValidation:
    async def test_no_lists_is_invalid_message(self, basket: NewsletterProvider) -> None:
        result = await basket.send(_message("subscribe", lists=[]))

        assert result.code == "invalid_message"

    async def test_send_action_is_unsupported(self, basket: NewsletterProvider) -> None:
        result = await basket.send(_message("send"))

        assert (result.outcome, result.code) == (Outcome.permanent_error, "unsupported_action")

    async def test_recipient_without_email_is_invalid(self, basket: NewsletterProvider) -> None:
        result = await basket.send(_message("subscribe", to=[Recipient(external_id="u1")]))

        assert result.code == "invalid_recipient"
