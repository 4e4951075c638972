from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from gateway.providers._http import ProviderConfigError
from gateway.providers.base import Message, Outcome, Recipient
from gateway.providers.smtp import SmtpProvider

from tests.gateway.providers.conftest import Sink

ProviderFactory = Callable[..., Awaitable[SmtpProvider]]


def _message(**overrides: Any) -> Message:
    fields: dict[str, Any] = {
        "channel": "email",
        "to": [Recipient(address="alice@example.com", name="Alice")],
        "subject": "Hello",
        "text": "plain body",
        "html": "<p>html body</p>",
    }
    fields.update(overrides)
    return Message(**fields)


def _config(host: str, port: int, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "host": host,
        "port": port,
        "from_address": "noreply@notifier.test",
        "from_name": "Notifier",
        "message_id_domain": "mail.notifier.test",
        "local_hostname": "client.notifier.test",
        "start_tls": False,
        "timeout": 5,
    }
    config.update(overrides)
    return config


@pytest.fixture
async def make_provider() -> AsyncIterator[ProviderFactory]:
    started: list[SmtpProvider] = []

    async def factory(host: str, port: int, **overrides: Any) -> SmtpProvider:
        provider = SmtpProvider("smtp-test", _config(host, port, **overrides))
        await provider.start()
        started.append(provider)
        return provider

    yield factory
    for provider in started:
        await provider.aclose()


@pytest.fixture
async def smtp(smtp_sink: Sink, make_provider: ProviderFactory) -> SmtpProvider:
    return await make_provider(smtp_sink.host, smtp_sink.port)


class TestSmtpConfig:
    def test_missing_from_address_is_a_config_error_naming_the_instance(self) -> None:
        with pytest.raises(ProviderConfigError, match=r"'mail' \(smtp\).*from_address"):
            SmtpProvider("mail", {"host": "localhost"})

    def test_implicit_tls_with_forced_starttls_is_refused(self) -> None:
        with pytest.raises(ProviderConfigError, match="mutually exclusive"):
            SmtpProvider("mail", {"from_address": "a@b.c", "use_tls": True, "start_tls": True})

    def test_unknown_key_is_refused(self) -> None:
        with pytest.raises(ProviderConfigError, match="pool"):
            SmtpProvider("mail", {"from_address": "a@b.c", "pool": 3})

    def test_defaults(self) -> None:
        provider = SmtpProvider("mail", {"from_address": "a@b.c"})
        assert provider.settings.pool_size == 4
        assert provider.settings.start_tls == "auto"


class TestSmtpMime:
    async def test_text_and_html_arrive_as_multipart_alternative(
        self, smtp: SmtpProvider, smtp_sink: Sink
    ) -> None:
        result = await smtp.send(_message())

        assert result.outcome is Outcome.accepted
        [received] = smtp_sink.handler.received
        assert received.mail_from == "noreply@notifier.test"
        assert received.rcpt_tos == ["alice@example.com"]
        email = received.email
        assert email.get_content_type() == "multipart/alternative"
        parts = [(p.get_content_type(), p.get_content().strip()) for p in email.iter_parts()]
        assert parts == [("text/plain", "plain body"), ("text/html", "<p>html body</p>")]
        assert email["From"] == "Notifier <noreply@notifier.test>"
        assert email["To"] == "Alice <alice@example.com>"

    async def test_russian_subject_and_body_round_trip_as_utf8(
        self, smtp: SmtpProvider, smtp_sink: Sink
    ) -> None:
        subject = "Ваш баланс пополнен — 100 ₽"
        await smtp.send(_message(subject=subject, text="Привет, Аня!", html=None))

        [received] = smtp_sink.handler.received
        raw_headers = received.content.split(b"\r\n\r\n", 1)[0]
        assert raw_headers.isascii()  # RFC 2047 encoded words, not raw UTF-8
        assert b"=?utf-8?" in raw_headers
        assert received.email["Subject"] == subject
        assert received.email.get_content_type() == "text/plain"
        assert received.email.get_content().strip() == "Привет, Аня!"

    async def test_message_id_uses_configured_domain_and_is_the_provider_id(
        self, smtp: SmtpProvider, smtp_sink: Sink
    ) -> None:
        result = await smtp.send(_message())

        [received] = smtp_sink.handler.received
        assert result.provider_message_id == received.email["Message-ID"]
        assert result.provider_message_id is not None
        assert result.provider_message_id.endswith("@mail.notifier.test>")
        assert received.email["Date"]

    async def test_unsubscribe_url_adds_one_click_headers(
        self, smtp: SmtpProvider, smtp_sink: Sink
    ) -> None:
        await smtp.send(_message(unsubscribe_url="https://n.test/u/tok123"))

        email = smtp_sink.handler.received[0].email
        assert email["List-Unsubscribe"] == "<https://n.test/u/tok123>"
        assert email["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

    async def test_no_unsubscribe_headers_without_url(
        self, smtp: SmtpProvider, smtp_sink: Sink
    ) -> None:
        await smtp.send(_message())

        assert "List-Unsubscribe" not in smtp_sink.handler.received[0].email

    async def test_extra_headers_are_added(self, smtp: SmtpProvider, smtp_sink: Sink) -> None:
        await smtp.send(_message(headers={"X-Letter-Id": "L-1", "Reply-To": "help@n.test"}))

        email = smtp_sink.handler.received[0].email
        assert email["X-Letter-Id"] == "L-1"
        assert email["Reply-To"] == "help@n.test"

    @pytest.mark.parametrize(
        ("headers", "reason"),
        [
            ({"X-Evil": "a\r\nBcc: victim@example.com"}, "line break"),
            ({"Bcc": "victim@example.com"}, "set by the gateway"),
        ],
    )
    async def test_unsafe_headers_are_refused_permanently(
        self, smtp: SmtpProvider, smtp_sink: Sink, headers: dict[str, str], reason: str
    ) -> None:
        result = await smtp.send(_message(headers=headers))

        assert result.outcome is Outcome.permanent_error
        assert result.code == "invalid_message"
        assert reason in (result.reason or "")
        assert smtp_sink.handler.received == []

    async def test_long_headers_and_many_recipients_are_folded_within_the_line_limit(
        self, smtp: SmtpProvider, smtp_sink: Sink
    ) -> None:
        subject = "Ваш баланс пополнен — " * 40
        to = [
            Recipient(address=f"u{i}@example.com", name=f"Сотрудник {i}, отдел «Ф»")
            for i in range(300)
        ]
        await smtp.send(_message(to=to, subject=subject, headers={"X-Long": "word " * 400}))

        [received] = smtp_sink.handler.received
        assert max(len(line) for line in received.content.split(b"\r\n")) <= 998
        email = received.email
        assert email["Subject"] == subject
        assert [a.addr_spec for a in email["To"].addresses] == [r.address for r in to]
        assert email["To"].addresses[7].display_name == "Сотрудник 7, отдел «Ф»"
        assert email["X-Long"].split() == ["word"] * 400

    async def test_ascii_body_is_7bit_and_other_text_base64(
        self, smtp: SmtpProvider, smtp_sink: Sink
    ) -> None:
        html = "<p>" + "Привет " * 500 + "</p>"
        await smtp.send(_message(text="line one\nline two", html=html))

        email = smtp_sink.handler.received[0].email
        plain, rich = email.iter_parts()
        assert plain["Content-Transfer-Encoding"] == "7bit"
        assert plain.get_content().splitlines() == ["line one", "line two"]
        assert rich["Content-Transfer-Encoding"] == "base64"
        assert rich.get_content() == html

    @pytest.mark.parametrize(
        ("overrides", "reason"),
        [
            ({"headers": {"X Bad": "v"}}, "printable ASCII"),
            ({"headers": {"X:Bad": "v"}}, "printable ASCII"),
            ({"subject": "a\nBcc: victim@example.com"}, "one line"),
            ({"to": [Recipient(address="a@example.com", name="A\r\nBcc: v@x.test")]}, "one line"),
        ],
    )
    async def test_header_injection_through_names_and_fields_is_refused(
        self, smtp: SmtpProvider, smtp_sink: Sink, overrides: dict[str, Any], reason: str
    ) -> None:
        result = await smtp.send(_message(**overrides))

        assert (result.outcome, result.code) == (Outcome.permanent_error, "invalid_message")
        assert reason in (result.reason or "")
        assert smtp_sink.handler.received == []

    async def test_message_without_content_is_refused(
        self, smtp: SmtpProvider, smtp_sink: Sink
    ) -> None:
        result = await smtp.send(_message(text=None, html=None))

        assert (result.outcome, result.code) == (Outcome.permanent_error, "invalid_message")
        assert smtp_sink.handler.connections == 0

    @pytest.mark.parametrize("address", [None, "not-an-address", "a@b@c"])
    async def test_recipient_without_valid_address_is_invalid_recipient(
        self, smtp: SmtpProvider, smtp_sink: Sink, address: str | None
    ) -> None:
        result = await smtp.send(_message(to=[Recipient(address=address)]))

        assert (result.outcome, result.code) == (Outcome.permanent_error, "invalid_recipient")
        assert smtp_sink.handler.connections == 0


class TestSmtpConnections:
    async def test_one_connection_is_reused_for_sequential_sends(
        self, smtp: SmtpProvider, smtp_sink: Sink
    ) -> None:
        for i in range(5):
            result = await smtp.send(_message(subject=f"n{i}"))
            assert result.outcome is Outcome.accepted

        assert len(smtp_sink.handler.received) == 5
        assert smtp_sink.handler.connections == 1

    async def test_send_many_sends_concurrently_on_at_most_pool_size_connections(
        self, smtp_sink: Sink, make_provider: ProviderFactory
    ) -> None:
        provider = await make_provider(smtp_sink.host, smtp_sink.port, pool_size=3)
        messages = [
            _message(to=[Recipient(address=f"u{i}@example.com")], subject=f"n{i}")
            for i in range(12)
        ]

        results = await provider.send_many(messages)

        assert [r.outcome for r in results] == [Outcome.accepted] * 12
        assert len({r.provider_message_id for r in results}) == 12
        assert sorted(r.rcpt_tos[0] for r in smtp_sink.handler.received) == sorted(
            f"u{i}@example.com" for i in range(12)
        )
        assert smtp_sink.handler.connections == 3

    async def test_reconnects_after_the_server_dropped_the_connection(
        self, smtp: SmtpProvider, smtp_sink: Sink
    ) -> None:
        assert (await smtp.send(_message())).outcome is Outcome.accepted
        smtp_sink.restart()

        result = await smtp.send(_message())

        assert result.outcome is Outcome.accepted
        assert len(smtp_sink.handler.received) == 2
        assert smtp_sink.handler.connections == 2

    async def test_silent_server_times_out_as_transient(
        self, silent_server: tuple[str, int], make_provider: ProviderFactory
    ) -> None:
        provider = await make_provider(*silent_server, timeout=0.3)

        result = await provider.send(_message())

        assert (result.outcome, result.code) == (Outcome.transient_error, "timeout")

    async def test_refused_connection_is_transient_transport(
        self, make_provider: ProviderFactory
    ) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]  # bound but not listening: connections are refused
            provider = await make_provider("127.0.0.1", port)

            result = await provider.send(_message())

        assert (result.outcome, result.code) == (Outcome.transient_error, "transport")


class TestSmtpReplies:
    async def test_450_for_the_recipient_is_transient(
        self, smtp: SmtpProvider, smtp_sink: Sink
    ) -> None:
        smtp_sink.handler.refuse["alice@example.com"] = "450 4.2.1 mailbox busy"

        result = await smtp.send(_message())

        assert (result.outcome, result.code, result.status_code) == (
            Outcome.transient_error,
            "smtp_4xx",
            450,
        )
        assert smtp_sink.handler.received == []

    @pytest.mark.parametrize("code", [550, 551, 553])
    async def test_recipient_refused_with_55x_is_permanent_invalid_recipient(
        self, smtp: SmtpProvider, smtp_sink: Sink, code: int
    ) -> None:
        smtp_sink.handler.refuse["alice@example.com"] = f"{code} 5.1.1 no such user"

        result = await smtp.send(_message())

        assert (result.outcome, result.code, result.status_code) == (
            Outcome.permanent_error,
            "invalid_recipient",
            code,
        )
        assert "no such user" in (result.reason or "")

    async def test_connection_is_still_usable_after_a_refusal(
        self, smtp: SmtpProvider, smtp_sink: Sink
    ) -> None:
        smtp_sink.handler.refuse["bad@example.com"] = "550 no such user"
        await smtp.send(_message(to=[Recipient(address="bad@example.com")]))

        result = await smtp.send(_message())

        assert result.outcome is Outcome.accepted
        assert smtp_sink.handler.connections == 1

    async def test_partly_refused_recipients_are_accepted_with_the_refusals_recorded(
        self, smtp: SmtpProvider, smtp_sink: Sink
    ) -> None:
        smtp_sink.handler.refuse["bad@example.com"] = "550 no such user"
        to = [Recipient(address="alice@example.com"), Recipient(address="bad@example.com")]

        result = await smtp.send(_message(to=to))

        assert result.outcome is Outcome.accepted
        assert result.details["refused"] == {"bad@example.com": "550 no such user"}
        assert smtp_sink.handler.received[0].rcpt_tos == ["alice@example.com"]

    async def test_rejected_content_is_permanent(self, smtp: SmtpProvider, smtp_sink: Sink) -> None:
        smtp_sink.handler.data_reply = "552 5.3.4 message too big"

        result = await smtp.send(_message())

        assert (result.outcome, result.code, result.status_code) == (
            Outcome.permanent_error,
            "rejected_content",
            552,
        )

    async def test_temporary_data_failure_is_transient(
        self, smtp: SmtpProvider, smtp_sink: Sink
    ) -> None:
        smtp_sink.handler.data_reply = "451 4.3.0 try again later"

        result = await smtp.send(_message())

        assert (result.outcome, result.code) == (Outcome.transient_error, "smtp_4xx")


class TestSmtpAuth:
    async def test_configured_credentials_log_in(
        self, auth_smtp_sink: Sink, make_provider: ProviderFactory
    ) -> None:
        provider = await make_provider(
            auth_smtp_sink.host, auth_smtp_sink.port, username="notifier", password="s3cret"
        )

        result = await provider.send(_message())

        assert result.outcome is Outcome.accepted
        assert auth_smtp_sink.handler.logins == ["notifier"]
        assert len(auth_smtp_sink.handler.received) == 1

    async def test_wrong_password_is_permanent_auth_failed(
        self, auth_smtp_sink: Sink, make_provider: ProviderFactory
    ) -> None:
        provider = await make_provider(
            auth_smtp_sink.host, auth_smtp_sink.port, username="notifier", password="wrong"
        )

        result = await provider.send(_message())

        assert (result.outcome, result.code, result.status_code) == (
            Outcome.permanent_error,
            "auth_failed",
            535,
        )
        assert auth_smtp_sink.handler.logins == []
        assert auth_smtp_sink.handler.received == []


class TestSmtpTls:
    async def test_required_starttls_on_a_server_without_it_is_permanent(
        self, smtp_sink: Sink, make_provider: ProviderFactory
    ) -> None:
        provider = await make_provider(smtp_sink.host, smtp_sink.port, start_tls=True)

        result = await provider.send(_message())

        assert (result.outcome, result.code) == (Outcome.permanent_error, "smtp_unsupported")
        assert "STARTTLS" in (result.reason or "")
        assert smtp_sink.handler.received == []

    async def test_auto_starttls_sends_in_clear_when_the_server_does_not_offer_it(
        self, smtp_sink: Sink, make_provider: ProviderFactory
    ) -> None:
        provider = await make_provider(smtp_sink.host, smtp_sink.port, start_tls="auto")

        result = await provider.send(_message())

        assert result.outcome is Outcome.accepted
