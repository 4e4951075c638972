"""The ``log`` provider: records each message in ``gateway.logged_messages`` and the log.

The default in development, and the "write to a log instead of the real CRM" mode of seed 001.
Config: ``record`` (default true) writes the table row; ``database_url`` is filled in by the
registry from the gateway's settings.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from notifier_common.db import create_engine, create_sessionmaker, session_scope
from notifier_common.logging import get_logger, mask_email
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from gateway.models import LoggedMessage
from gateway.providers.base import Message, Provider, SendResult

log = get_logger("gateway.providers.log")


class LogProvider(Provider):
    kind = "log"
    #: The registry passes ``database_url`` to providers that declare this.
    uses_gateway_database = True

    def __init__(self, name: str, config: dict[str, Any]) -> None:
        super().__init__(name, config)
        self.record = bool(config.get("record", True))
        self._engine: AsyncEngine | None = None
        self._sessionmaker: async_sessionmaker[AsyncSession] | None = None

    async def start(self) -> None:
        url = self.config.get("database_url")
        if self.record and url:
            self._engine = create_engine(str(url), pool_size=2, app_name=f"gateway-{self.name}")
            self._sessionmaker = create_sessionmaker(self._engine)

    async def aclose(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None

    async def send(self, message: Message) -> SendResult:
        return (await self.send_many([message]))[0]

    async def send_many(self, messages: Sequence[Message]) -> list[SendResult]:
        ids = [f"log-{uuid.uuid4().hex}" for _ in messages]
        if self._sessionmaker is not None:
            rows = [
                {
                    "provider": self.name,
                    "provider_message_id": pid,
                    "channel": m.channel,
                    "action": m.action,
                    "message": m.model_dump(mode="json", exclude_defaults=True),
                }
                for pid, m in zip(ids, messages, strict=True)
            ]
            async with session_scope(self._sessionmaker) as session:
                await session.execute(insert(LoggedMessage), rows)
        for pid, m in zip(ids, messages, strict=True):
            log.info(
                "gateway.log_provider_message",
                provider=self.name,
                provider_message_id=pid,
                channel=m.channel,
                action=m.action,
                to=[mask_email(r.address) for r in m.to if r.address],
                subject=m.subject,
            )
        return [SendResult.ok(pid) for pid in ids]
