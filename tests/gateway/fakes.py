"""Test-only providers, configured through settings by import path (``tests.gateway.fakes:...``)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Any

from gateway.providers.base import Message, Provider, SendResult


class CountingProvider(Provider):
    """Counts calls; answers ``outcome`` (accepted | transient | permanent | raise) after
    ``delay`` seconds. Tests flip ``outcome`` on the live instance."""

    kind = "counting"

    def __init__(self, name: str, config: dict[str, Any]) -> None:
        super().__init__(name, config)
        self.delay = float(config.get("delay", 0.0))
        self.outcome = str(config.get("outcome", "accepted"))
        self.sent: list[Message] = []
        self.calls = 0
        self.started = False
        self.in_flight = 0  # send_many calls running now, and the most seen at once
        self.max_in_flight = 0

    async def start(self) -> None:
        self.started = True

    async def aclose(self) -> None:
        self.started = False

    async def send(self, message: Message) -> SendResult:
        self.calls += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.outcome == "raise":
            raise RuntimeError("provider bug")
        self.sent.append(message)
        if self.outcome == "transient":
            return SendResult.transient("http_503", "upstream unavailable", status_code=503)
        if self.outcome == "permanent":
            return SendResult.permanent("invalid_recipient", "no such mailbox", status_code=550)
        if self.outcome == "nul":  # a provider answering bytes PostgreSQL cannot store
            return SendResult.permanent(
                "bad\x00code",
                "no\x00such mailbox",
                status_code=550,
                response_excerpt="raw\x00answer",
            )
        return SendResult.ok(f"cnt-{uuid.uuid4().hex[:12]}")

    async def send_many(self, messages: Sequence[Message]) -> list[SendResult]:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return list(await asyncio.gather(*(self.send(m) for m in messages)))
        finally:
            self.in_flight -= 1


class ServerRestartProvider(CountingProvider):
    """Accepts like ``CountingProvider``, but first terminates every PostgreSQL backend of the
    gateway's pool (``application_name = 'gateway'``), as a database restart during the
    provider call would, and waits until the pooled sockets have seen it (``config``:
    ``database_url``)."""

    kind = "server-restart"

    async def send(self, message: Message) -> SendResult:
        import asyncpg

        url = str(self.config["database_url"]).replace("postgresql+asyncpg://", "postgresql://")
        admin = await asyncpg.connect(url)
        try:
            self.terminated = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name = 'gateway' AND pid <> pg_backend_pid()"
            )
        finally:
            await admin.close()
        await asyncio.sleep(0.3)  # the FIN reaches the idle pooled connections
        return await super().send(message)
