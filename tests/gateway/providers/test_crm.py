from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import respx
from gateway.providers._http import ProviderConfigError
from gateway.providers.base import RESPONSE_EXCERPT_LIMIT, Message, Outcome, Recipient
from gateway.providers.crm import CrmProvider

BASE = "https://crm.test/api"
CONFIG: dict[str, Any] = {"base_url": BASE, "token": "crm-token"}


def _message(action: str, **recipient: Any) -> Message:
    fields = {"address": "alice@example.com", "name": "Alice", "external_id": "crm-1"}
    fields.update(recipient)
    return Message(
        channel="crm",
        action=action,
        to=[Recipient(**fields)],
        lists=["weekly", "announcements"],
        properties={"lang": "he"},
    )


@pytest.fixture
def router() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=False) as mock:
        yield mock


async def _started(config: dict[str, Any]) -> CrmProvider:
    provider = CrmProvider("crm", config)
    await provider.start()
    return provider


@pytest.fixture
async def crm() -> AsyncIterator[CrmProvider]:
    provider = await _started(CONFIG)
    yield provider
    await provider.aclose()


class TestCrmConfig:
    def test_missing_token_is_a_config_error(self) -> None:
        with pytest.raises(ProviderConfigError, match=r"'crm' \(crm\).*token"):
            CrmProvider("crm", {"base_url": BASE})

    def test_unknown_upsert_method_is_refused(self) -> None:
        with pytest.raises(ProviderConfigError, match="upsert_method"):
            CrmProvider("crm", {**CONFIG, "upsert_method": "PATCH"})


class TestUpsertContact:
    async def test_ok_returns_the_crm_id(self, crm: CrmProvider, router: respx.MockRouter) -> None:
        route = router.put("/contacts").respond(200, json={"id": "003XYZ"})

        result = await crm.send(_message("upsert_contact", external_id="app-user-7"))

        assert result.outcome is Outcome.accepted
        assert result.provider_message_id == "003XYZ"
        assert result.details == {"crm_outcome": "ok", "action": "upsert_contact"}
        request = route.calls.last.request
        assert request.headers["Authorization"] == "Bearer crm-token"
        assert json.loads(request.content) == {
            "email": "alice@example.com",
            "name": "Alice",
            "external_id": "app-user-7",
            "mailing_lists": ["weekly", "announcements"],
            "properties": {"lang": "he"},
        }

    async def test_post_can_be_configured(self, router: respx.MockRouter) -> None:
        route = router.post("/contacts").respond(201, json={"id": 42})
        provider = await _started({**CONFIG, "upsert_method": "POST"})
        try:
            result = await provider.send(_message("upsert_contact"))
        finally:
            await provider.aclose()

        assert route.called
        assert result.provider_message_id == "42"

    async def test_answer_without_id_is_unexpected_response_kept_verbatim(
        self, crm: CrmProvider, router: respx.MockRouter
    ) -> None:
        router.put("/contacts").respond(200, json={"success": True})

        result = await crm.send(_message("upsert_contact"))

        assert (result.outcome, result.code) == (Outcome.permanent_error, "unexpected_response")
        assert result.details["crm_outcome"] == "unexpected_response"
        assert result.response_excerpt == '{"success":true}'

    async def test_long_unexpected_answer_is_truncated(
        self, crm: CrmProvider, router: respx.MockRouter
    ) -> None:
        router.put("/contacts").respond(200, text="E" * 10_000)

        result = await crm.send(_message("upsert_contact"))

        assert result.details["crm_outcome"] == "unexpected_response"
        assert result.response_excerpt == "E" * RESPONSE_EXCERPT_LIMIT

    async def test_rejected_upsert_is_permanent_unexpected_response(
        self, crm: CrmProvider, router: respx.MockRouter
    ) -> None:
        router.put("/contacts").respond(400, json=[{"errorCode": "INVALID_EMAIL_ADDRESS"}])

        result = await crm.send(_message("upsert_contact"))

        assert (result.outcome, result.code, result.status_code) == (
            Outcome.permanent_error,
            "http_4xx",
            400,
        )
        assert result.details["crm_outcome"] == "unexpected_response"
        assert "INVALID_EMAIL_ADDRESS" in (result.response_excerpt or "")

    async def test_server_error_is_transient(
        self, crm: CrmProvider, router: respx.MockRouter
    ) -> None:
        router.put("/contacts").respond(503, headers={"Retry-After": "5"})

        result = await crm.send(_message("upsert_contact"))

        assert (result.outcome, result.code, result.retry_after) == (
            Outcome.transient_error,
            "http_5xx",
            5.0,
        )

    async def test_upsert_without_email_is_invalid_recipient(self, crm: CrmProvider) -> None:
        result = await crm.send(_message("upsert_contact", address=None))

        assert (result.outcome, result.code) == (Outcome.permanent_error, "invalid_recipient")


class TestChangeEmail:
    async def test_ok_puts_the_new_email_on_the_contact(
        self, crm: CrmProvider, router: respx.MockRouter
    ) -> None:
        route = router.put("/contacts/crm-1").respond(204)

        result = await crm.send(_message("change_email", address="alice@new.example"))

        assert result.outcome is Outcome.accepted
        assert result.provider_message_id == "crm-1"
        assert result.details["crm_outcome"] == "ok"
        assert json.loads(route.calls.last.request.content) == {"email": "alice@new.example"}

    async def test_unknown_contact_is_not_found(
        self, crm: CrmProvider, router: respx.MockRouter
    ) -> None:
        router.put("/contacts/crm-1").respond(404, json={"error": "NOT_FOUND"})

        result = await crm.send(_message("change_email"))

        assert (result.outcome, result.code) == (Outcome.permanent_error, "not_found")
        assert result.details["crm_outcome"] == "not_found"

    async def test_timeout_is_a_transient_transport_failure(
        self, crm: CrmProvider, router: respx.MockRouter
    ) -> None:
        router.put("/contacts/crm-1").mock(side_effect=httpx.ReadTimeout("slow"))

        result = await crm.send(_message("change_email"))

        assert (result.outcome, result.code) == (Outcome.transient_error, "timeout")
        assert result.details["crm_outcome"] == "transport_failure"

    async def test_contact_id_is_escaped_in_the_path(
        self, crm: CrmProvider, router: respx.MockRouter
    ) -> None:
        route = router.put("/contacts/a%2F..%2Fadmin").respond(200, json={})

        result = await crm.send(_message("change_email", external_id="a/../admin"))

        assert route.called
        assert result.outcome is Outcome.accepted

    async def test_change_email_without_contact_id_is_invalid_recipient(
        self, crm: CrmProvider
    ) -> None:
        result = await crm.send(_message("change_email", external_id=None))

        assert result.code == "invalid_recipient"


class TestMarkSpam:
    async def test_ok_posts_to_the_spam_endpoint(
        self, crm: CrmProvider, router: respx.MockRouter
    ) -> None:
        route = router.post("/contacts/crm-1/spam").respond(200, json={"status": "spam"})

        result = await crm.send(_message("mark_spam"))

        assert result.outcome is Outcome.accepted
        assert result.details == {"crm_outcome": "ok", "action": "mark_spam"}
        assert json.loads(route.calls.last.request.content) == {"lang": "he"}

    async def test_connection_error_is_a_transient_transport_failure(
        self, crm: CrmProvider, router: respx.MockRouter
    ) -> None:
        router.post("/contacts/crm-1/spam").mock(side_effect=httpx.ConnectError("refused"))

        result = await crm.send(_message("mark_spam"))

        assert (result.outcome, result.code) == (Outcome.transient_error, "transport")
        assert result.details["crm_outcome"] == "transport_failure"

    async def test_non_json_answer_is_unexpected_response(
        self, crm: CrmProvider, router: respx.MockRouter
    ) -> None:
        router.post("/contacts/crm-1/spam").respond(200, text="<html>login</html>")

        result = await crm.send(_message("mark_spam"))

        assert (result.code, result.details["crm_outcome"]) == (
            "unexpected_response",
            "unexpected_response",
        )
        assert result.response_excerpt == "<html>login</html>"

    async def test_unknown_contact_is_not_found(
        self, crm: CrmProvider, router: respx.MockRouter
    ) -> None:
        router.post("/contacts/crm-1/spam").respond(404)

        result = await crm.send(_message("mark_spam"))

        assert result.details["crm_outcome"] == "not_found"


class TestUnsupported:
    @pytest.mark.parametrize("action", ["send", "subscribe", "unsubscribe"])
    async def test_other_actions_are_permanently_unsupported(
        self, crm: CrmProvider, router: respx.MockRouter, action: str
    ) -> None:
        result = await crm.send(_message(action))

        assert (result.outcome, result.code) == (Outcome.permanent_error, "unsupported_action")
        assert not router.calls

    async def test_several_recipients_are_refused(self, crm: CrmProvider) -> None:
        message = _message("mark_spam").model_copy(
            update={"to": [Recipient(external_id="a"), Recipient(external_id="b")]}
        )

        result = await crm.send(message)

        assert result.code == "invalid_recipient"
