"""The EventProcessor the worker plugs into ``handle_event``: plan, write, send after commit."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

from notifier_common.db import Db
from notifier_common.events import AnyEvent
from notifier_common.logging import get_logger
from sqlalchemy.ext.asyncio import AsyncSession

from notifier.clock import Clock
from notifier.events.processing import AfterCommit
from notifier.letters import repository, service
from notifier.letters.catalog import Catalog
from notifier.letters.definitions import LETTERS
from notifier.letters.drain import LetterSender
from notifier.letters.immediate import ImmediateSends
from notifier.letters.service import Applied, Enricher, Gathered, Plan, PlanConfig
from notifier.letters.settings_service import SettingsCache

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
        settings: SettingsCache | None = None,
        immediate: ImmediateSends | None = None,
    ) -> None:
        """``settings``: where ``prepare`` reads letter settings (required for the batch path);
        ``immediate``: coalesces the after-commit sends (else one ``send_now`` per event)."""
        self.enricher = enricher
        self.config = config
        self.clock = clock
        self.sender = sender
        self.catalog = catalog
        self.settings = settings
        self.immediate = immediate

    async def process(self, session: AsyncSession, event: AnyEvent) -> Sequence[AfterCommit]:
        if not self.catalog.involved(event.type):
            return ()
        gathered = await service.gather(
            session, event, enricher=self.enricher, catalog=self.catalog
        )
        await repository.lock_client(session, event.client_id)
        now = self.clock()
        plan = await service.decide(
            session, event, gathered, config=self.config, now=now, catalog=self.catalog
        )
        applied = await service.apply(session, plan, now=now)
        _log(plan, applied)
        return self._after_commit(applied.due_now)

    # ---- the worker's group commit (notifier.events.batching) -----------------------------

    async def prepare(self, event: AnyEvent) -> Gathered | None:
        """Settings and upstream data of one event, read without a database connection held
        (enrichment errors propagate as classified, before anything is written)."""
        if not self.catalog.involved(event.type):
            return None
        if self.settings is None:
            raise RuntimeError("LetterProcessor.prepare needs a SettingsCache")
        settings = await self.settings.get()
        return await service.gather_with(
            event, settings, enricher=self.enricher, catalog=self.catalog
        )

    async def process_many(
        self,
        session: Db,
        items: Sequence[tuple[AnyEvent, Gathered | None]],
        *,
        notes: dict[Any, dict[str, Any]] | None = None,
    ) -> Sequence[AfterCommit]:
        """Decide and write for events of distinct clients: their locks in one stable order,
        one statement per kind of read and write for all of them. ``notes``: each event's
        ``letters.planned`` fields go there (by event id) instead of a line of their own."""
        todo = [(event, gathered) for event, gathered in items if gathered is not None]
        if not todo:
            return ()
        await repository.lock_clients(session, [event.client_id for event, _ in todo])
        now = self.clock()
        plans = await service.decide_many(
            session, todo, config=self.config, now=now, catalog=self.catalog
        )
        applied = await service.apply_many(session, plans, now=now)
        due: list[int] = []
        for plan in plans:
            mine = applied[plan.event.id]
            if notes is None:
                _log(plan, mine)
            else:
                fields = _facts(plan, mine)
                if fields is not None:
                    notes[plan.event.id] = fields
            due += mine.due_now
        return self._after_commit(due)

    def _after_commit(self, due_now: list[int]) -> Sequence[AfterCommit]:
        if due_now and self.sender is not None:
            return (partial(self._send_now, due_now),)
        return ()

    async def _send_now(self, letter_ids: list[int]) -> None:
        if self.immediate is not None:
            await self.immediate.send(letter_ids)
            return
        assert self.sender is not None
        await self.sender.send_now(letter_ids)


def _log(plan: Plan, applied: Applied) -> None:
    """One line per event with every decision (and why), what it cancelled and created: the
    same facts as a line per decision, at a fraction of the cost on the hot path."""
    fields = _facts(plan, applied)
    if fields is not None:
        log.info(
            "letters.planned",
            event_id=str(plan.event.id),
            event_type=plan.event.type,
            **fields,
        )


def _facts(plan: Plan, applied: Applied) -> dict[str, Any] | None:
    """The letter facts of one event (None: it decided, cancelled and created nothing)."""
    if not (plan.decisions or applied.cancelled or applied.created):
        return None
    return {
        "decisions": [
            {"letter": d.letter, "decision": d.kind, "reason": d.reason} for d in plan.decisions
        ],
        "cancelled": applied.cancelled,
        "created": applied.created,
        "due_now": applied.due_now,
    }
