from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import respx
from gateway.providers._http import ProviderConfigError
from gateway.providers.base import RESPONSE_EXCERPT_LIMIT, Message, Outcome, Recipient
from gateway.providers.esp import EspProvider

BASE = "https://esp.test"
CONFIG: dict[str, Any] = {"base_url": BASE, "api_key": "k-123", "campaign_id": "camp-default"}


def _message(*user_ids: str, **overrides: Any) -> Message:
    fields: dict[str, Any] = {
        "channel": "esp",
        "to": [
            Recipient(external_id=uid, properties={"user_name": f"name-{uid}"})
            for uid in user_ids or ("u1",)
        ],
        "template_ref": "camp-75",
        "properties": {"enterprise_customer_id": "ec-1", "allocated_license_count": 8},
    }
    fields.update(overrides)
    return Message(**fields)


def _success(dispatch_id: str = "d-1") -> httpx.Response:
    return httpx.Response(200, json={"dispatch_id": dispatch_id, "message": "success"})


@pytest.fixture
def router() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=False) as mock:
        yield mock


@pytest.fixture
async def esp() -> AsyncIterator[EspProvider]:
    provider = EspProvider("esp-test", CONFIG)
    await provider.start()
    yield provider
    await provider.aclose()


def _bodies(route: respx.Route) -> list[dict[str, Any]]:
    return [json.loads(call.request.content) for call in route.calls]


class TestEspConfig:
    def test_missing_api_key_is_a_config_error(self) -> None:
        with pytest.raises(ProviderConfigError, match=r"'esp' \(esp\).*api_key"):
            EspProvider("esp", {"base_url": BASE})

    def test_batch_size_above_braze_limit_is_refused(self) -> None:
        with pytest.raises(ProviderConfigError, match="batch_size"):
            EspProvider("esp", {**CONFIG, "batch_size": 51})


class TestEspTrigger:
    async def test_success_posts_campaign_trigger_and_returns_dispatch_id(
        self, esp: EspProvider, router: respx.MockRouter
    ) -> None:
        route = router.post("/campaigns/trigger/send").mock(return_value=_success("d-42"))

        result = await esp.send(_message("u1", "u2"))

        assert result.outcome is Outcome.accepted
        assert result.provider_message_id == "d-42"
        request = route.calls.last.request
        assert request.headers["Authorization"] == "Bearer k-123"
        assert json.loads(request.content) == {
            "campaign_id": "camp-75",
            "trigger_properties": {"enterprise_customer_id": "ec-1", "allocated_license_count": 8},
            "recipients": [
                {"external_user_id": "u1", "trigger_properties": {"user_name": "name-u1"}},
                {"external_user_id": "u2", "trigger_properties": {"user_name": "name-u2"}},
            ],
        }

    async def test_configured_campaign_is_used_without_template_ref(
        self, esp: EspProvider, router: respx.MockRouter
    ) -> None:
        route = router.post("/campaigns/trigger/send").mock(return_value=_success())

        await esp.send(_message(template_ref=None))

        assert _bodies(route)[0]["campaign_id"] == "camp-default"

    async def test_success_with_minor_errors_keeps_them_in_details(
        self, esp: EspProvider, router: respx.MockRouter
    ) -> None:
        router.post("/campaigns/trigger/send").respond(
            201, json={"dispatch_id": "d", "message": "success", "errors": ["minor"]}
        )

        result = await esp.send(_message())

        assert result.outcome is Outcome.accepted
        assert result.details == {"errors": ["minor"]}

    async def test_recipient_without_external_id_is_refused_without_a_call(
        self, esp: EspProvider, router: respx.MockRouter
    ) -> None:
        route = router.post("/campaigns/trigger/send").mock(return_value=_success())

        result = await esp.send(_message(to=[Recipient(address="a@example.com")]))

        assert (result.outcome, result.code) == (Outcome.permanent_error, "invalid_recipient")
        assert not route.called

    async def test_message_without_any_campaign_is_refused(self, router: respx.MockRouter) -> None:
        provider = EspProvider("esp", {"base_url": BASE, "api_key": "k"})
        await provider.start()
        try:
            result = await provider.send(_message(template_ref=None))
        finally:
            await provider.aclose()

        assert (result.outcome, result.code) == (Outcome.permanent_error, "invalid_message")


class TestEspFailures:
    async def test_400_is_permanent_with_the_response_kept(
        self, esp: EspProvider, router: respx.MockRouter
    ) -> None:
        router.post("/campaigns/trigger/send").respond(
            400, json={"message": "Valid campaign_id required"}
        )

        result = await esp.send(_message())

        assert (result.outcome, result.code, result.status_code) == (
            Outcome.permanent_error,
            "http_4xx",
            400,
        )
        assert "Valid campaign_id required" in (result.response_excerpt or "")

    async def test_404_is_not_found(self, esp: EspProvider, router: respx.MockRouter) -> None:
        router.post("/campaigns/trigger/send").respond(404, text="no such endpoint")

        result = await esp.send(_message())

        assert (result.outcome, result.code) == (Outcome.permanent_error, "not_found")

    async def test_500_is_transient(self, esp: EspProvider, router: respx.MockRouter) -> None:
        router.post("/campaigns/trigger/send").respond(500, text="boom")

        result = await esp.send(_message())

        assert (result.outcome, result.code, result.status_code) == (
            Outcome.transient_error,
            "http_5xx",
            500,
        )

    async def test_429_is_transient_with_retry_after(
        self, esp: EspProvider, router: respx.MockRouter
    ) -> None:
        router.post("/campaigns/trigger/send").respond(
            429, headers={"Retry-After": "30"}, json={"message": "rate limited"}
        )

        result = await esp.send(_message())

        assert (result.outcome, result.code) == (Outcome.transient_error, "http_429")
        assert result.retry_after == 30.0

    async def test_timeout_is_transient(self, esp: EspProvider, router: respx.MockRouter) -> None:
        router.post("/campaigns/trigger/send").mock(side_effect=httpx.ReadTimeout("slow"))

        result = await esp.send(_message())

        assert (result.outcome, result.code) == (Outcome.transient_error, "timeout")

    async def test_connection_error_is_transient_transport(
        self, esp: EspProvider, router: respx.MockRouter
    ) -> None:
        router.post("/campaigns/trigger/send").mock(side_effect=httpx.ConnectError("refused"))

        result = await esp.send(_message())

        assert (result.outcome, result.code) == (Outcome.transient_error, "transport")

    async def test_malformed_json_is_unexpected_response_truncated(
        self, esp: EspProvider, router: respx.MockRouter
    ) -> None:
        router.post("/campaigns/trigger/send").respond(200, text="<html>" + "x" * 5000)

        result = await esp.send(_message())

        assert (result.outcome, result.code) == (Outcome.permanent_error, "unexpected_response")
        assert result.response_excerpt is not None
        assert result.response_excerpt.startswith("<html>")
        assert len(result.response_excerpt) == RESPONSE_EXCERPT_LIMIT

    async def test_json_without_success_is_unexpected_response(
        self, esp: EspProvider, router: respx.MockRouter
    ) -> None:
        router.post("/campaigns/trigger/send").respond(200, json={"message": "queued"})

        result = await esp.send(_message())

        assert (result.outcome, result.code) == (Outcome.permanent_error, "unexpected_response")
        assert "queued" in (result.reason or "")


class TestEspBatching:
    async def test_120_single_recipient_messages_go_out_in_3_calls(
        self, esp: EspProvider, router: respx.MockRouter
    ) -> None:
        dispatch = iter(["d-a", "d-b", "d-c"])
        route = router.post("/campaigns/trigger/send").mock(
            side_effect=lambda request: _success(next(dispatch))
        )
        messages = [_message(f"u{i}") for i in range(120)]

        results = await esp.send_many(messages)

        sizes = sorted(len(body["recipients"]) for body in _bodies(route))
        assert sizes == [20, 50, 50]
        by_user = {
            r["external_user_id"]: n
            for n, body in enumerate(_bodies(route))
            for r in body["recipients"]
        }
        ids_by_call = ["d-a", "d-b", "d-c"]
        for i, result in enumerate(results):
            assert result.outcome is Outcome.accepted
            assert result.provider_message_id == ids_by_call[by_user[f"u{i}"]]

    async def test_one_message_with_120_recipients_is_split_into_3_calls(
        self, esp: EspProvider, router: respx.MockRouter
    ) -> None:
        dispatch = iter(["d-a", "d-b", "d-c"])
        route = router.post("/campaigns/trigger/send").mock(
            side_effect=lambda request: _success(next(dispatch))
        )

        result = await esp.send(_message(*(f"u{i}" for i in range(120))))

        assert route.call_count == 3
        sent = [r["external_user_id"] for body in _bodies(route) for r in body["recipients"]]
        assert sorted(sent) == sorted(f"u{i}" for i in range(120))
        assert result.outcome is Outcome.accepted
        assert sorted(result.details["dispatch_ids"]) == ["d-a", "d-b", "d-c"]

    async def test_different_trigger_properties_are_separate_calls(
        self, esp: EspProvider, router: respx.MockRouter
    ) -> None:
        route = router.post("/campaigns/trigger/send").mock(return_value=_success())
        messages = [
            _message("u1", properties={"pct": 75}),
            _message("u2", properties={"pct": 100}),
            _message("u3", properties={"pct": 75}),
            _message("u4", properties={"pct": 75}, template_ref="weekly"),
        ]

        await esp.send_many(messages)

        calls = sorted(
            (b["campaign_id"], b["trigger_properties"]["pct"], len(b["recipients"]))
            for b in _bodies(route)
        )
        assert calls == [("camp-75", 75, 2), ("camp-75", 100, 1), ("weekly", 75, 1)]

    async def test_a_failed_call_fails_only_the_messages_it_carried(
        self, esp: EspProvider, router: respx.MockRouter
    ) -> None:
        def reply(request: httpx.Request) -> httpx.Response:
            users = [r["external_user_id"] for r in json.loads(request.content)["recipients"]]
            return httpx.Response(500) if "u0" in users else _success()

        router.post("/campaigns/trigger/send").mock(side_effect=reply)

        results = await esp.send_many([_message(f"u{i}") for i in range(60)])

        outcomes = [r.outcome for r in results]
        assert outcomes[:50] == [Outcome.transient_error] * 50
        assert outcomes[50:] == [Outcome.accepted] * 10

    async def test_split_message_with_one_failed_call_is_a_permanent_partial_failure(
        self, esp: EspProvider, router: respx.MockRouter
    ) -> None:
        def reply(request: httpx.Request) -> httpx.Response:
            users = [r["external_user_id"] for r in json.loads(request.content)["recipients"]]
            return httpx.Response(503) if "u0" in users else _success("d-ok")

        router.post("/campaigns/trigger/send").mock(side_effect=reply)

        result = await esp.send(_message(*(f"u{i}" for i in range(70))))

        assert (result.outcome, result.code) == (Outcome.permanent_error, "partial_failure")
        assert result.details["dispatch_ids"] == ["d-ok"]
        assert result.details["failed_codes"] == ["http_5xx"]

    async def test_invalid_messages_in_a_batch_do_not_stop_the_others(
        self, esp: EspProvider, router: respx.MockRouter
    ) -> None:
        route = router.post("/campaigns/trigger/send").mock(return_value=_success())
        messages = [_message("u1"), _message(to=[Recipient(address="x@y.z")]), _message("u2")]

        results = await esp.send_many(messages)

        assert [r.outcome for r in results] == [
            Outcome.accepted,
            Outcome.permanent_error,
            Outcome.accepted,
        ]
        assert route.call_count == 1


class TestEspParallelCalls:
    async def test_calls_in_flight_never_exceed_parallel_calls(
        self, router: respx.MockRouter
    ) -> None:
        in_flight, peak = 0, 0

        async def reply(request: httpx.Request) -> httpx.Response:
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            await asyncio.sleep(0.01)
            in_flight -= 1
            return _success()

        router.post("/campaigns/trigger/send").mock(side_effect=reply)
        provider = EspProvider("esp", {**CONFIG, "parallel_calls": 2, "batch_size": 1})
        await provider.start()
        try:
            results = await provider.send_many([_message(f"u{i}") for i in range(6)])
        finally:
            await provider.aclose()

        assert [r.outcome for r in results] == [Outcome.accepted] * 6
        assert peak == 2
