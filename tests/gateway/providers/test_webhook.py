from __future__ import annotations

import json
import socket
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import respx
from gateway.providers._http import ProviderConfigError
from gateway.providers.base import Message, Outcome, Recipient
from gateway.providers.webhook import WebhookProvider, sign, verify_signature

SECRET = "whsec-0123456789abcdef"
PUBLIC_IP = "93.184.216.34"
DNS = {
    "hooks.example.com": [PUBLIC_IP],
    "intranet.example.com": ["10.0.0.5"],
    "mixed.example.com": [PUBLIC_IP, "127.0.0.1"],
    "metadata.example.com": ["169.254.169.254"],
}


async def fake_resolver(host: str, port: int) -> list[str]:
    if host not in DNS:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    return DNS[host]


def _message(url: str | None = "https://hooks.example.com/hook", **overrides: Any) -> Message:
    fields: dict[str, Any] = {
        "channel": "webhook",
        "to": [Recipient(address=url)],
        "subject": "Balance low",
        "text": "Top up, please",
        "html": "<p>Top up</p>",
        "properties": {"balance": 10},
        "metadata": {"letter_id": "L-1", "client_id": "c-9"},
    }
    fields.update(overrides)
    return Message(**fields)


async def _started(config: dict[str, Any], *, real_dns: bool = False) -> WebhookProvider:
    provider = WebhookProvider(
        "hook", {"secret": SECRET, **config}, resolver=None if real_dns else fake_resolver
    )
    await provider.start()
    return provider


@pytest.fixture
async def webhook() -> AsyncIterator[WebhookProvider]:
    provider = await _started({})
    yield provider
    await provider.aclose()


@pytest.fixture
def router() -> Iterator[respx.MockRouter]:
    """Every unmocked request fails the test: a refused target must never be called."""
    with respx.mock(assert_all_called=False) as mock:
        yield mock


class TestSignature:
    def test_own_signature_verifies(self) -> None:
        header = sign(SECRET, b'{"a":1}', timestamp=int(time.time()))

        assert verify_signature(SECRET, header, b'{"a":1}')
        assert verify_signature(SECRET, header, '{"a":1}')

    def test_tampered_body_fails(self) -> None:
        header = sign(SECRET, b'{"a":1}', timestamp=int(time.time()))

        assert not verify_signature(SECRET, header, b'{"a":2}')

    def test_wrong_secret_fails(self) -> None:
        header = sign(SECRET, b"x", timestamp=int(time.time()))

        assert not verify_signature("another-secret-value", header, b"x")

    def test_timestamp_outside_tolerance_fails(self) -> None:
        header = sign(SECRET, b"x", timestamp=1_000_000)

        assert verify_signature(SECRET, header, b"x", now=1_000_300)
        assert not verify_signature(SECRET, header, b"x", now=1_000_301)
        assert not verify_signature(SECRET, header, b"x", tolerance_s=10, now=1_000_011)

    def test_any_of_several_v1_values_may_match(self) -> None:
        header = sign(SECRET, b"x", timestamp=1_000_000)

        assert verify_signature(SECRET, f"{header},v1=00ff", b"x", now=1_000_000)

    @pytest.mark.parametrize("header", ["", "garbage", "t=abc,v1=00", "v1=00", "t=1,t=2,v1=00"])
    def test_malformed_header_fails(self, header: str) -> None:
        assert not verify_signature(SECRET, header, b"x", now=1)


class TestWebhookConfig:
    def test_missing_secret_is_a_config_error(self) -> None:
        with pytest.raises(ProviderConfigError, match=r"'hook' \(webhook\).*secret"):
            WebhookProvider("hook", {"url": "https://hooks.example.com/"})

    def test_short_secret_is_refused(self) -> None:
        with pytest.raises(ProviderConfigError, match="secret"):
            WebhookProvider("hook", {"secret": "short"})


class TestWebhookDelivery:
    async def test_posts_signed_json_to_the_checked_address_with_the_original_host(
        self, webhook: WebhookProvider, router: respx.MockRouter
    ) -> None:
        route = router.post(f"https://{PUBLIC_IP}/hook").respond(204)

        result = await webhook.send(_message())

        assert result.outcome is Outcome.accepted
        request = route.calls.last.request
        assert request.headers["Host"] == "hooks.example.com"
        assert request.extensions["sni_hostname"] == "hooks.example.com"
        assert request.headers["Content-Type"] == "application/json"
        assert json.loads(request.content) == {
            "id": "L-1",
            "subject": "Balance low",
            "text": "Top up, please",
            "html": "<p>Top up</p>",
            "properties": {"balance": 10},
            "metadata": {"letter_id": "L-1", "client_id": "c-9"},
        }
        signature = request.headers["X-Notifier-Signature"]
        assert signature.startswith(f"t={request.headers['X-Notifier-Timestamp']},v1=")
        assert verify_signature(SECRET, signature, request.content)
        assert result.provider_message_id == request.headers["X-Notifier-Delivery-Id"]

    async def test_configured_url_is_used_when_the_recipient_has_none(
        self, router: respx.MockRouter
    ) -> None:
        route = router.post(f"http://{PUBLIC_IP}:8080/in").respond(200)
        provider = await _started({"url": "http://hooks.example.com:8080/in"})
        try:
            result = await provider.send(_message(url=None))
        finally:
            await provider.aclose()

        assert result.outcome is Outcome.accepted
        assert route.calls.last.request.headers["Host"] == "hooks.example.com:8080"

    async def test_no_target_at_all_is_invalid_recipient(self, webhook: WebhookProvider) -> None:
        result = await webhook.send(_message(url=None))

        assert (result.outcome, result.code) == (Outcome.permanent_error, "invalid_recipient")

    @pytest.mark.parametrize(
        ("response", "outcome", "code"),
        [
            (httpx.Response(500), Outcome.transient_error, "http_5xx"),
            (httpx.Response(404), Outcome.permanent_error, "not_found"),
            (httpx.Response(410), Outcome.permanent_error, "http_4xx"),
            (
                httpx.Response(302, headers={"Location": "http://169.254.169.254/"}),
                Outcome.permanent_error,
                "unexpected_response",
            ),
        ],
    )
    async def test_failures_are_classified(
        self,
        webhook: WebhookProvider,
        router: respx.MockRouter,
        response: httpx.Response,
        outcome: Outcome,
        code: str,
    ) -> None:
        router.post(f"https://{PUBLIC_IP}/hook").mock(return_value=response)

        result = await webhook.send(_message())

        assert (result.outcome, result.code) == (outcome, code)

    async def test_429_carries_retry_after(
        self, webhook: WebhookProvider, router: respx.MockRouter
    ) -> None:
        router.post(f"https://{PUBLIC_IP}/hook").respond(429, headers={"Retry-After": "7"})

        result = await webhook.send(_message())

        assert (result.outcome, result.code, result.retry_after) == (
            Outcome.transient_error,
            "http_429",
            7.0,
        )

    async def test_timeout_is_transient(
        self, webhook: WebhookProvider, router: respx.MockRouter
    ) -> None:
        router.post(f"https://{PUBLIC_IP}/hook").mock(side_effect=httpx.ConnectTimeout("slow"))

        result = await webhook.send(_message())

        assert (result.outcome, result.code) == (Outcome.transient_error, "timeout")

    async def test_unresolvable_host_is_transient(
        self, webhook: WebhookProvider, router: respx.MockRouter
    ) -> None:
        result = await webhook.send(_message("https://nowhere.example.com/hook"))

        assert (result.outcome, result.code) == (Outcome.transient_error, "transport")


class TestWebhookSsrf:
    @pytest.mark.parametrize(
        "url",
        [
            "http://127.0.0.1/hook",
            "http://10.1.2.3/hook",
            "http://192.168.0.10/hook",
            "http://169.254.169.254/latest/meta-data/",
            "http://[::1]/hook",
            "http://[::ffff:127.0.0.1]/hook",
            "http://0.0.0.0/hook",
            "http://100.64.0.1/hook",
            "http://224.0.0.1/hook",
            "https://intranet.example.com/hook",
            "https://metadata.example.com/hook",
            "https://mixed.example.com/hook",
        ],
    )
    async def test_non_public_targets_are_refused_without_a_request(
        self, webhook: WebhookProvider, router: respx.MockRouter, url: str
    ) -> None:
        result = await webhook.send(_message(url))

        assert (result.outcome, result.code) == (Outcome.permanent_error, "target_refused")
        assert not router.calls

    @pytest.mark.parametrize("url", ["http://localhost/hook", "http://127.1/hook"])
    async def test_names_resolving_to_loopback_are_refused_with_real_dns(
        self, router: respx.MockRouter, url: str
    ) -> None:
        provider = await _started({}, real_dns=True)
        try:
            result = await provider.send(_message(url))
        finally:
            await provider.aclose()

        assert (result.outcome, result.code) == (Outcome.permanent_error, "target_refused")
        assert not router.calls

    @pytest.mark.parametrize(
        "url", ["ftp://hooks.example.com/x", "file:///etc/passwd", "gopher://hooks.example.com/"]
    )
    async def test_other_schemes_are_refused(
        self, webhook: WebhookProvider, router: respx.MockRouter, url: str
    ) -> None:
        result = await webhook.send(_message(url))

        assert (result.outcome, result.code) == (Outcome.permanent_error, "target_refused")

    async def test_host_outside_allowed_hosts_is_refused(self, router: respx.MockRouter) -> None:
        provider = await _started({"allowed_hosts": ["partner.example.org"]})
        try:
            result = await provider.send(_message())
        finally:
            await provider.aclose()

        assert (result.outcome, result.code) == (Outcome.permanent_error, "target_refused")
        assert "allowed_hosts" in (result.reason or "")

    async def test_wildcard_allowed_host_matches_subdomains(self, router: respx.MockRouter) -> None:
        router.post(f"https://{PUBLIC_IP}/hook").respond(200)
        provider = await _started({"allowed_hosts": ["*.example.com"]})
        try:
            result = await provider.send(_message())
        finally:
            await provider.aclose()

        assert result.outcome is Outcome.accepted

    async def test_allowed_hosts_do_not_lift_the_private_range_check(
        self, router: respx.MockRouter
    ) -> None:
        provider = await _started({"allowed_hosts": ["intranet.example.com"]})
        try:
            result = await provider.send(_message("https://intranet.example.com/hook"))
        finally:
            await provider.aclose()

        assert result.code == "target_refused"

    async def test_allow_private_permits_loopback(self, router: respx.MockRouter) -> None:
        route = router.post("http://127.0.0.1:9000/hook").respond(200)
        provider = await _started({"allow_private": True})
        try:
            result = await provider.send(_message("http://127.0.0.1:9000/hook"))
        finally:
            await provider.aclose()

        assert result.outcome is Outcome.accepted
        assert route.called
