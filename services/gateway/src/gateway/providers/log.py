"""The ``log`` provider: records each message in ``gateway.logged_messages`` and the log.

The default in development, and the "write to a log instead of the real CRM" mode of seed 001.
Config: ``record`` (default true) writes the table row; ``database_url`` is filled in by the
registry from the gateway's settings (with ``gateway_database_url``: only in the gateway's own
database are stored requests copied).

One INSERT per batch (``chunk_size`` 1000: the dispatcher hands over whole batches), storing
each message as the JSON the gateway already wrote for its request: copied in the database from
the claimed row's ``gateway.messages.request`` (``Message.stored_as``, decision 0056), else sent
as ``Message.received_json``, serialised only for a message changed on the way (recipients
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
from sqlalchemy import LargeBinary, String, bindparam, text
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
        self._copies = url is not None and url == config.get("gateway_database_url")

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
            copies = self._copies
            stored = [i for i, m in enumerate(messages) if copies and m.stored_as is not None]
            sent = [i for i, m in enumerate(messages) if not copies or m.stored_as is None]
            async with session_scope(self._sessionmaker) as session:
                if stored:  # copied from the claim's row: not sent and parsed again
                    copy = {
                        "provider": self.name,
                        "pmids": [ids[i] for i in stored],
                        "sources": [messages[i].stored_as for i in stored],
                    }
                    copied = {r[0] for r in await _COPY_ON_DRIVER.fetch(session, copy)}
                    # a row gone meanwhile (never expected): its message is sent as JSON
                    sent += [i for i in stored if ids[i] not in copied]
                if sent:
                    params = {
                        "provider": self.name,
                        "pmids": [ids[i] for i in sent],
                        "channels": [messages[i].channel for i in sent],
                        "actions": [messages[i].action for i in sent],
                        "messages": join_json(_json(messages[i]) for i in sent),
                    }
                    await _INSERT_ON_DRIVER.execute(session, params)
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

# A message whose JSON the claim stored (``Message.stored_as``) is copied from that row in the
# database: the 2.5 MB of a batch are not sent, split and compressed a second time (decision
# 0056). The row's request is the message's JSON: the same document that was hashed.
_COPY = text(
    """
INSERT INTO gateway.logged_messages (provider, provider_message_id, channel, action, message)
SELECT CAST(:provider AS text), r.pmid, m.channel, m.action, m.request
FROM unnest(CAST(:pmids AS text[]), CAST(:sources AS uuid[])) WITH ORDINALITY AS r(pmid, source, n)
JOIN gateway.messages AS m ON m.id = r.source
ORDER BY r.n
RETURNING provider_message_id
"""
).bindparams(
    bindparam("pmids", type_=ARRAY(String())),
    bindparam("sources", type_=ARRAY(PGUUID(as_uuid=True))),
)
_COPY_ON_DRIVER = DriverStatement.of(_COPY)
