"""The ``log`` provider: records each message in ``gateway.logged_messages`` and the log.

The default in development, and the "write to a log instead of the real CRM" mode of seed 001.
Config: ``record`` (default true) writes the table row; ``database_url`` is filled in by the
registry from the gateway's settings (with ``gateway_database_url``: only in the gateway's own
database are stored requests referred to).

One INSERT per batch (``chunk_size`` 1000: the dispatcher hands over whole batches). A message
the claim stored unchanged is recorded by reference: ``message_id`` names its committed
``gateway.messages`` row, whose ``request`` is the JSON (``Message.stored_as``, decision 0111;
``LoggedMessage.content`` reads either form). Any other message is stored as
``Message.received_json``, serialised only for a message changed on the way (recipients
dropped as suppressed). With ``record`` on, the
table is the record of each message, so the per-message log lines are at debug and each batch
logs one info line; with ``record`` off the log is the only record and every message is logged
at info.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from notifier_common.db import (
    DriverStatement,
    autocommit_sessionmaker,
    create_engine,
    create_sessionmaker,
    session_scope,
)
from notifier_common.ids import ordered_hex
from notifier_common.logging import get_logger, mask_email
from sqlalchemy import LargeBinary, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import UUID as PGUUID
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from gateway.messages.repository import join_json
from gateway.providers.base import Message, Provider, SendResult

log = get_logger("gateway.providers.log")


class LogProvider(Provider):
    kind = "log"
    #: The registry passes ``database_url`` to providers that declare this.
    uses_gateway_database = True
    chunk_size = 1000

    def __init__(self, name: str, config: dict[str, Any]) -> None:
        super().__init__(name, config)
        self.record = bool(config.get("record", True))
        self._engine: AsyncEngine | None = None
        self._sessionmaker: async_sessionmaker[AsyncSession] | None = None
        url = config.get("database_url")
        self._in_gateway_database = url is not None and url == config.get("gateway_database_url")

    async def start(self) -> None:
        url = self.config.get("database_url")
        if self.record and url:
            # each INSERT commits on its own and a dropped connection fails the send like any
            # provider error (transient: retried): no ping, BEGIN or COMMIT round trips
            # (decision 0088)
            engine = create_engine(
                str(url), pool_size=2, app_name=f"gateway-{self.name}", pre_ping=False
            )
            self._engine = engine
            self._sessionmaker = autocommit_sessionmaker(create_sessionmaker(engine))

    async def aclose(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None

    async def send(self, message: Message) -> SendResult:
        return (await self.send_many([message]))[0]

    async def send_many(self, messages: Sequence[Message]) -> list[SendResult]:
        ids = [f"log-{digits}" for digits in ordered_hex(len(messages))]
        if self._sessionmaker is not None:
            here = self._in_gateway_database
            stored = [i for i, m in enumerate(messages) if here and m.stored_as is not None]
            sent = [i for i, m in enumerate(messages) if not here or m.stored_as is None]

            def rows(indexes: list[int]) -> dict[str, Any]:
                return {
                    "provider": self.name,
                    "pmids": [ids[i] for i in indexes],
                    "channels": [messages[i].channel for i in indexes],
                    "actions": [messages[i].action for i in indexes],
                }

            async with session_scope(self._sessionmaker) as session:
                if stored:  # the claim's row holds the JSON: not sent, parsed or written again
                    sources = [messages[i].stored_as for i in stored]
                    await _REFERENCE_ON_DRIVER.execute(
                        session, {**rows(stored), "sources": sources}
                    )
                if sent:
                    joined = join_json(_json(messages[i]) for i in sent)
                    await _INSERT_ON_DRIVER.execute(session, {**rows(sent), "messages": joined})
            log.info("gateway.log_provider_recorded", provider=self.name, count=len(messages))
        recorded = self._sessionmaker is not None
        if not recorded or log.isEnabledFor(logging.DEBUG):
            emit = log.debug if recorded else log.info
            for pid, m in zip(ids, messages, strict=True):
                emit(
                    "gateway.log_provider_message",
                    provider=self.name,
                    provider_message_id=pid,
                    channel=m.channel,
                    action=m.action,
                    to=[mask_email(r.address) for r in m.to if r.address],
                    subject=m.subject,
                )
        return [SendResult.ok(pid) for pid in ids]


def _json(message: Message) -> bytes | memoryview:
    return message.received_json or message.model_dump_json(exclude_defaults=True).encode()


_INSERT = text(
    """
INSERT INTO gateway.logged_messages (provider, provider_message_id, channel, action, message)
SELECT CAST(:provider AS text), r.pmid, r.channel, r.action, r.message
FROM unnest(CAST(:pmids AS text[]), CAST(:channels AS text[]), CAST(:actions AS text[]),
    string_to_array(convert_from(:messages, 'UTF8'), E'\\n')) AS r(pmid, channel, action, message)
"""
).bindparams(bindparam("messages", type_=LargeBinary()))
_INSERT_ON_DRIVER = DriverStatement.of(_INSERT)  # on asyncpg's connection (decision 0107)

# A message whose JSON the claim stored (``Message.stored_as``) is recorded by reference to that
# row: the 2.5 MB of a batch are not sent, split, compressed or written a second time (decision
# 0111; before, 0056 copied them in the database). No join: its plan cannot depend on the size
# of ``gateway.messages``, and channel and action are the message's own.
_REFERENCE = text(
    """
INSERT INTO gateway.logged_messages (provider, provider_message_id, channel, action, message_id)
SELECT CAST(:provider AS text), r.pmid, r.channel, r.action, r.source
FROM unnest(CAST(:pmids AS text[]), CAST(:channels AS text[]), CAST(:actions AS text[]),
    CAST(:sources AS uuid[])) AS r(pmid, channel, action, source)
"""
).bindparams(bindparam("sources", type_=ARRAY(PGUUID(as_uuid=True))))
_REFERENCE_ON_DRIVER = DriverStatement.of(_REFERENCE)
