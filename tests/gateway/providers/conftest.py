"""Fixtures for provider tests: a real aiosmtpd sink and a silent TCP server. No database."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    peer: Any

    @property
    def email(self) -> EmailMessage:
        parsed = message_from_bytes(self.content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class SinkHandler:
    """Stores every envelope; answers RCPT with a configured reply for chosen recipients."""

    refuse: dict[str, str] = field(default_factory=dict)  # address -> "450 ..." / "550 ..."
    data_reply: str | None = None  # e.g. "552 message rejected" instead of accepting
    received: list[Received] = field(default_factory=list)
    ehlo_peers: list[Any] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        self.ehlo_peers.append(session.peer)
        session.host_name = hostname
        return responses

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert envelope.mail_from is not None
        if self.data_reply:
            return self.data_reply
        content = envelope.original_content or b""
        self.received.append(
            Received(envelope.mail_from, list(envelope.rcpt_tos), content, session.peer)
        )
        return "250 Message accepted for delivery"

    @property
    def connections(self) -> int:
        return len(set(self.ehlo_peers))


@dataclass
class Sink:
    controller: Controller
    handler: SinkHandler

    @property
    def host(self) -> str:
        return str(self.controller.hostname)

    @property
    def port(self) -> int:
        return int(self.controller.port)

    def restart(self) -> None:
        """Stop and start the server on the same port: open client connections are dropped."""
        host, port = self.host, self.port
        self.controller.stop()
        self.controller = Controller(self.handler, hostname=host, port=port)
        self.controller.start()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def smtp_sink() -> Iterator[Sink]:
    handler = SinkHandler()
    sink = Sink(Controller(handler, hostname="127.0.0.1", port=_free_port()), handler)
    sink.controller.start()
    try:
        yield sink
    finally:
        sink.controller.stop()


@pytest.fixture
def auth_smtp_sink() -> Iterator[Sink]:
    """A sink offering AUTH over plain text (test only) for user `notifier`, password `s3cret`.

    AUTH is offered, not required: requiring it without TLS makes aiosmtpd warn. Successful
    logins are recorded in ``handler.logins``.
    """
    handler = SinkHandler()

    def authenticate(
        server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            b"notifier",
            b"s3cret",
        )
        if ok:
            handler.logins.append(data.login.decode())
        return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535

    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=_free_port(),
        authenticator=authenticate,
        auth_require_tls=False,
    )
    sink = Sink(controller, handler)
    controller.start()
    try:
        yield sink
    finally:
        sink.controller.stop()


@pytest.fixture
async def silent_server() -> AsyncIterator[tuple[str, int]]:
    """Accepts TCP connections and never says a word (no SMTP greeting)."""
    writers: list[asyncio.StreamWriter] = []

    async def accept(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield "127.0.0.1", port
    finally:
        for writer in writers:
            writer.close()
        server.close()
        await server.wait_closed()
