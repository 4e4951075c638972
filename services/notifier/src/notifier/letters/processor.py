"""The EventProcessor the worker plugs into ``handle_event``: plan, write, send after commit."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from notifier_common.events import AnyEvent
from notifier_common.logging import get_logger
from sqlalchemy.ext.asyncio import AsyncSession

from notifier.clock import Clock
from notifier.events.processing import AfterCommit
from notifier.letters import repository, service
from notifier.letters.catalog import Catalog
from notifier.letters.definitions import LETTERS
from notifier.letters.drain import LetterSender
from notifier.letters.service import Enricher, PlanConfig

log = get_logger("notifier.letters.processor")


class LetterProcessor:
    """Upstream reads first (no lock held), then, under the client's lock: decide and write.

    Enrichment errors propagate as the enrichment package classifies them (404 -> the event
    fails, 5xx / timeout -> the job is retried); nothing was written then.
    """

    def __init__(
        self,
        *,
        enricher: Enricher,
        config: PlanConfig,
        clock: Clock,
        sender: LetterSender | None,
        catalog: Catalog = LETTERS,
    ) -> None:
        self.enricher = enricher
        self.config = config
        self.clock = clock
        self.sender = sender
        self.catalog = catalog

    async def process(self, session: AsyncSession, event: AnyEvent) -> Sequence[AfterCommit]:
        if not self.catalog.involved(event.type):
            return ()
        bound = log.bind(event_id=str(event.id), event_type=event.type)
        gathered = await service.gather(
            session, event, enricher=self.enricher, catalog=self.catalog
        )
        await repository.lock_client(session, event.client_id)
        now = self.clock()
        plan = await service.decide(
            session, event, gathered, config=self.config, now=now, catalog=self.catalog
        )
        applied = await service.apply(session, plan, now=now)
        for decision in plan.decisions:
            bound.info(
                "letters.decision",
                letter=decision.letter,
                decision=decision.kind,
                reason=decision.reason,
            )
        if applied.cancelled:
            bound.info("letters.cancelled", letter_ids=applied.cancelled)
        if applied.created:
            bound.info("letters.created", letter_ids=applied.created, due_now=applied.due_now)
        if applied.due_now and self.sender is not None:
            return (partial(self._send_now, applied.due_now),)
        return ()

    async def _send_now(self, letter_ids: list[int]) -> None:
        assert self.sender is not None
        await self.sender.send_now(letter_ids)
