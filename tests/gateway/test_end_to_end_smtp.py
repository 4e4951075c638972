"""The gateway with the real SMTP adapter, configured through settings, against aiosmtpd."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from email import message_from_bytes, policy
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.gateway.conftest import GatewayToken, SettingsFactory, client_for, email, running


class Collect:
    def __init__(self) -> None:
        self.messages: list[Envelope] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.messages.append(envelope)
        return "250 OK"


@pytest.fixture
def sink() -> Iterator[tuple[Collect, int]]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    handler = Collect()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


async def test_batch_reaches_the_smtp_server_once_per_key(
    sink: tuple[Collect, int], make_settings: SettingsFactory, gateway_token: GatewayToken
) -> None:
    handler, port = sink
    smtp: dict[str, Any] = {
        "kind": "smtp",
        "host": "127.0.0.1",
        "port": port,
        "start_tls": False,
        "from_address": "noreply@example.com",
    }
    settings = make_settings(
        providers={"smtp-main": smtp},
        channel_defaults={"email": "smtp-main"},
        default_provider=None,
    )
    headers = await gateway_token("messages:write")
    body = {
        "items": [
            {"idempotency_key": f"letter-{i}", "message": email(f"user{i}@example.com")}
            for i in range(3)
        ]
    }
    async with running(settings) as application, client_for(application) as c:
        first = await c.post("/v1/messages:batch", json=body, headers=headers)
        again = await c.post("/v1/messages:batch", json=body, headers=headers)
    results = first.json()["results"]
    assert {r["outcome"] for r in results} == {"accepted"}
    assert {r["provider"] for r in results} == {"smtp-main"}
    assert again.json() == first.json()
    assert len(handler.messages) == 3
    ids = {
        message_from_bytes(bytes(m.content or b""), policy=policy.default)["Message-ID"]
        for m in handler.messages
    }
    assert ids == {r["provider_message_id"] for r in results}
