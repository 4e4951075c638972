"""Delivery: claim due letters in batches, send each batch in one gateway call, record results.

Each batch is one transaction (decision 0103): lock due rows ``FOR UPDATE SKIP LOCKED`` (the
claim is the row lock, as an immediate send's, decision 0090), read settings and suppressions,
render, call the gateway, record the results and attempts, commit. Race-proof against
cancellation (docs/decisions/0020-race-proof-cancellation.md): a cancel that committed first
made its rows ``cancelled``, so they are not locked; a cancel holding a row is passed over; a
cancel that comes later waits for the lock and then finds the row ``sent`` (or ``scheduled``
again after a transient failure, which it cancels). A crash rolls the transaction back: the
letters are due again at once, and the gateway answers the repeated idempotency key
(``letter-<id>``) with its first result.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol, cast

from notifier_common.db import session_scope
from notifier_common.logging import get_logger
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from notifier.clock import Clock
from notifier.enrichment import Balance, Contract, UpstreamNotFound
from notifier.gateway_client import GatewayClient, GatewayResult, encode_message, encode_outbound
from notifier.letters import drain_sql, repository
from notifier.letters.catalog import Catalog, SendFacts
from notifier.letters.definitions import LETTERS
from notifier.letters.repository import Claimed
from notifier.letters.service import Enricher
from notifier.letters.settings_service import EffectiveSettings, effective
from notifier.letters.timing import is_expired
from notifier.metrics import LETTER_OUTCOMES
from notifier.models import AttemptOutcome, LetterStatus
from notifier.suppressions.service import suppressed
from notifier.unsubscribe import link

log = get_logger("notifier.letters.drain")


class RenderedLetter(Protocol):
    @property
    def subject(self) -> str: ...
    @property
    def html(self) -> str: ...
    @property
    def text(self) -> str: ...


Renderer = Callable[[str, str, Mapping[str, Any]], RenderedLetter]


@dataclass(frozen=True)
class DeliveryConfig:
    batch_size: int = 500
    max_attempts: int = 8
    backoff_base: float = 60.0
    backoff_cap: float = 3600.0
    public_url: str = "http://127.0.0.1:8000"
    secret_key: str = "change-me-in-production"
    #: claim -> deliver loops one drain runs side by side (docs/decisions/0045): while one
    #: batch waits for the gateway under its row locks, the next is claimed and prepared
    concurrency: int = 2


@dataclass(slots=True)  # not frozen: one per letter, see ``repository.Claimed``
class Result:
    """What happens to one claimed letter."""

    status: LetterStatus
    attempt: AttemptOutcome | None = None
    send_at: datetime | None = None  # a retry's new due time (None keeps the stored one)
    provider: str | None = None
    provider_message_id: str | None = None
    code: str | None = None
    error: str | None = None
    skip_reason: str | None = None
    cancel_reason: str | None = None
    status_code: int | None = None
    duration_ms: int | None = None


@dataclass(frozen=True, slots=True)
class _Lookups:
    """What deciding a claimed batch reads besides the rows: the letters' effective settings
    and ``{letter id: skip reason}`` of suppressed recipients."""

    settings: dict[str, EffectiveSettings]
    blocked: dict[int, str]
    #: ``{letter id: ProviderId}`` of outbound letters whose recipient's ``external_id`` is
    #: an earlier letter's provider id (``Outbound.external_id_from``)
    external: dict[int, repository.ProviderId] = field(default_factory=dict)
    #: ``{letter id: cancel reason}`` of occurrences of a series whose cancelling event was
    #: remembered after the occurrence was scheduled (see ``LetterSender._series_ended``)
    ended: dict[int, str] = field(default_factory=dict)


#: a recorded letter's status -> its outcome (``BatchReport`` field, metric label)
OUTCOME_NAMES = {
    LetterStatus.sent: "sent",
    LetterStatus.scheduled: "retried",
    LetterStatus.failed: "failed",
    LetterStatus.skipped: "skipped",
    LetterStatus.expired: "expired",
    LetterStatus.cancelled: "cancelled",
}

#: an occurrence of a series that ended so schedules the next one (a cancelled one ends it)
SERIES_GOES_ON = frozenset(
    {LetterStatus.sent, LetterStatus.failed, LetterStatus.skipped, LetterStatus.expired}
)


@dataclass
class BatchReport:
    claimed: int = 0
    sent: int = 0
    retried: int = 0
    failed: int = 0
    skipped: int = 0
    expired: int = 0
    cancelled: int = 0  # an occurrence of a series that ended (``_series_ended``)

    def add(self, other: BatchReport) -> None:
        for name in BatchReport.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def count(self, status: LetterStatus) -> None:
        name = OUTCOME_NAMES[status]
        setattr(self, name, getattr(self, name) + 1)


@dataclass
class DrainReport(BatchReport):
    batches: int = 0


def idempotency_key(letter_id: int) -> str:
    return f"letter-{letter_id}"


def unsubscribe_url(config: DeliveryConfig, letter_id: int, recipient: str) -> str:
    """A stable signed link (same letter -> same URL, so a repeated send has the same body)."""
    return link(config.public_url, config.secret_key, letter_id, recipient)


def render_context(claimed: Claimed, config: DeliveryConfig) -> dict[str, Any]:
    """The stored snapshot with the letter's id and its unsubscribe link filled in."""
    context = dict(claimed.context)
    context["letter"] = {"name": claimed.letter, "id": claimed.id}
    context["links"] = {
        **context.get("links", {}),
        "unsubscribe_url": unsubscribe_url(config, claimed.id, claimed.recipient),
    }
    return context


def _bypassed(c: Claimed) -> bool:
    operator = c.context.get("operator")
    return isinstance(operator, dict) and operator.get("bypass_conditions") is True


def backoff(attempt: int, config: DeliveryConfig, *, retry_after: float | None = None) -> float:
    """Exponential with jitter in [half, full] of base * 2**(attempt-1), capped; >= retry_after."""
    ceiling = min(config.backoff_cap, config.backoff_base * 2 ** max(0, attempt - 1))
    return max(random.uniform(ceiling / 2, ceiling), retry_after or 0.0)


class LetterSender:
    """Claims and delivers letters; one per worker process (kept in the arq ctx)."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        gateway: GatewayClient,
        enricher: Enricher,
        render: Renderer,
        config: DeliveryConfig,
        clock: Clock,
        catalog: Catalog = LETTERS,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.gateway = gateway
        self.enricher = enricher
        self.render = render
        self.config = config
        self.clock = clock
        self.catalog = catalog

    # ---- entry points ---------------------------------------------------------------------

    async def drain(self, *, now: datetime | None = None, max_batches: int = 10_000) -> DrainReport:
        """Claim and deliver batches until nothing is due at ``now``.

        ``config.concurrency`` lanes run side by side (docs/decisions/0045), each a loop of
        one transaction per batch: lock due rows -> look up -> prepare -> send -> record ->
        commit (decision 0103). Each batch is locked after the last row the pass locked
        (``(send_at, id)`` order); the pass ends when a scan from the front finds nothing due
        (decision 0105). Lock + prepare (CPU: rendering; re-check GETs) take turns, one
        lane at a time, while the other lanes' batches are at the gateway: the first batch
        leaves as early as with one lane and the lanes stay staggered. ``SKIP LOCKED`` keeps
        the lanes' (and other workers') batches apart. ``max_batches`` bounds the batches of
        all lanes together. The first failure of a lane cancels the others and is raised as
        is (their transactions roll back: their letters are due again)."""
        at = now or self.clock()
        report = DrainReport()
        budget = max_batches
        turn = asyncio.Lock()
        limit = self.config.batch_size
        after: drain_sql.DueKey | None = None  # where the next scan starts (decision 0105)

        async def lane() -> None:
            nonlocal budget, after
            while budget > 0:
                async with session_scope(self.sessionmaker) as session:
                    async with turn:
                        if budget <= 0:
                            return
                        scanned_from = after
                        claimed = await drain_sql.lock_due(
                            session, now=at, limit=limit, after=scanned_from
                        )
                        # a short batch reached the end: the next scan starts from the front,
                        # where rows passed over (held by others then) or written since are
                        after = drain_sql.last_key(claimed) if len(claimed) == limit else None
                        if not claimed:
                            if scanned_from is None:
                                budget = 0  # nothing due: the lanes waiting for a turn stop too
                                return
                            continue  # the end after the key: look from the front once more
                        budget -= 1
                        results, items = await self._prepare(
                            claimed, await self._look_up(session, claimed), now=at
                        )
                        claimed = _without_contexts(claimed)
                    batch = await self._send(session, claimed, results, items, now=at)
                    # dropped before this lane waits for its next turn (decision 0059)
                    del claimed, results, items
                report.batches += 1
                report.add(batch)

        try:
            await _run_lanes(lane, max(1, min(self.config.concurrency, max_batches)))
        finally:
            release_memory()
        if report.batches:
            log.info("letters.drained", **_counts(report), batches=report.batches)
        return report

    async def send_now(self, letter_ids: Sequence[int]) -> BatchReport:
        """Send these letters now if still scheduled and due: the after-commit immediate send
        of freshly created letters, an operator's manual send (the drain is the net).

        One transaction (decision 0090), as a drain's batch: lock the rows (``FOR UPDATE SKIP
        LOCKED``: a drain or a cancel holding one wins it), read the settings and
        suppressions, render, call the gateway, record, commit. If the process dies on the
        way, the transaction rolls back and the letters are simply still due, for the drain
        (the gateway answers the repeated key with its first result)."""
        now = self.clock()
        async with session_scope(self.sessionmaker) as session:
            claimed = await drain_sql.lock_due_ids(session, letter_ids, now=now)
            if not claimed:
                return BatchReport()
            lookups = await self._look_up(session, claimed)
            results, items = await self._prepare(claimed, lookups, now=now)
            claimed = _without_contexts(claimed)
            return await self._send(session, claimed, results, items, now=now)

    async def _look_up(self, session: AsyncSession, claimed: Sequence[Claimed]) -> _Lookups:
        names = sorted({c.letter for c in claimed if c.letter in self.catalog})
        settings = await effective(session, names, catalog=self.catalog)
        blocked = await suppressed(session, claimed)  # one query per batch
        wanted: dict[int, tuple[str, str]] = {}
        for c in claimed:
            spec = self._spec(c)
            outbound = spec.outbound if spec is not None else None
            if outbound is not None and outbound.external_id_from:
                wanted[c.id] = (outbound.external_id_from, c.client_id)
        ended = await self._series_ended(session, claimed)
        if not wanted:
            return _Lookups(settings, blocked, ended=ended)
        found = await repository.provider_ids(session, wanted.values())
        return _Lookups(settings, blocked, {i: found[key] for i, key in wanted.items()}, ended)

    async def _series_ended(
        self, session: AsyncSession, claimed: Sequence[Claimed]
    ) -> dict[int, str]:
        """Occurrences of a series whose cancelling event came after their trigger. The next
        occurrence is written when the previous one is recorded, without the client's lock
        (the drain holds row locks a cancel waits for): a cancel committing meanwhile cannot
        see it, so it is cancelled here, when it is due, from the remembered cancellation."""
        mine = [c for c in claimed if self._repeats(c)]
        if not mine:
            return {}
        subjects = {c.id: _subjects_of(c) for c in mine}
        pairs = {(c.letter, s) for c in mine for s in subjects[c.id]}
        _, rows = await repository.decision_reads(session, states=(), cancellations=pairs)
        latest = {(r.letter, r.subject): r for r in rows}
        out: dict[int, str] = {}
        for c in mine:
            triggered = _trigger_time(c)
            for subject in subjects[c.id]:
                row = latest.get((c.letter, subject))
                if row is not None and (triggered is None or row.occurred_at >= triggered):
                    out[c.id] = f"cancelled by {row.event_type} {row.event_id} (series ended)"
        return out

    async def _send(
        self,
        session: AsyncSession,
        claimed: Sequence[Claimed],
        results: dict[int, Result],
        items: dict[int, bytes],
        *,
        now: datetime,
    ) -> BatchReport:
        """Send the prepared items of the ``claimed`` letters (locked by this transaction) in
        one gateway call and record every letter; the caller commits."""
        report = BatchReport(claimed=len(claimed))
        by_id = {c.id: c for c in claimed}
        to_send = [(idempotency_key(i), items.pop(i)) for i in sorted(by_id) if i in items]
        answers = await self.gateway.send_encoded(to_send) if to_send else {}
        del to_send
        for letter_id, c in by_id.items():
            if letter_id not in results:
                results[letter_id] = self._from_gateway(
                    c, answers[idempotency_key(letter_id)], now=now
                )
        await self._record(session, [(by_id[i], results[i]) for i in sorted(by_id)], now=now)
        for letter_id in by_id:
            report.count(results[letter_id].status)
        log.info("letters.drain_batch", **_counts(report))
        return report

    # ---- deciding -------------------------------------------------------------------------

    async def _prepare(
        self, claimed: Sequence[Claimed], lookups: _Lookups, *, now: datetime
    ) -> tuple[dict[int, Result], dict[int, bytes]]:
        """Decide each letter: a final ``Result`` or its gateway item, rendered and encoded
        right away (only the request JSON is kept until the send: decision 0059)."""
        settings, blocked = lookups.settings, lookups.blocked
        # re-fetched only for letters the re-check can decide: an expired letter, one not in
        # the catalog or one switched off gets that verdict whatever the fetch says (_precheck)
        rechecks = await self._rechecks(
            [
                c
                for c in claimed
                if c.letter in settings
                and settings[c.letter].enabled
                and not is_expired(c.expires_at, now)
            ]
        )
        results: dict[int, Result] = {}
        items: dict[int, bytes] = {}
        for c in claimed:
            verdict = self._precheck(c, settings, rechecks, now=now)
            if verdict is None and c.id in lookups.ended:
                verdict = Result(LetterStatus.cancelled, cancel_reason=lookups.ended[c.id])
            if verdict is None and c.id in blocked:
                verdict = Result(LetterStatus.skipped, skip_reason=blocked[c.id])
            external = lookups.external.get(c.id)
            if verdict is None and external is not None and external.value is None:
                verdict = self._unresolved(c, external, now=now)
            if verdict is not None:
                results[c.id] = verdict
                continue
            item = self._item(c, external_id=external.value if external else None)
            if type(item) is bytes:
                items[c.id] = item
            else:
                results[c.id] = cast(Result, item)
        return results, items

    def _precheck(
        self,
        c: Claimed,
        settings: Mapping[str, EffectiveSettings],
        rechecks: Mapping[int, Result],
        *,
        now: datetime,
    ) -> Result | None:
        if is_expired(c.expires_at, now):
            return Result(LetterStatus.expired, error="expired before it could be sent")
        if c.letter not in self.catalog:
            return Result(LetterStatus.failed, error=f"letter {c.letter!r} is not in the catalog")
        if not settings[c.letter].enabled:
            return Result(LetterStatus.skipped, skip_reason="letter switched off")
        verdict = rechecks.get(c.id)
        if verdict is not None and verdict.status == LetterStatus.scheduled:
            return self._retry(c, error=verdict.error, now=now, code=verdict.code)
        return verdict

    async def _rechecks(self, claimed: Sequence[Claimed]) -> dict[int, Result]:
        """Re-fetch what each letter's send-time check needs (once per contract / client).

        A manual send an operator made with ``bypass_conditions`` is not re-checked."""
        todo = [
            (c, spec.recheck)
            for c in claimed
            if (spec := self._spec(c)) and spec.recheck and not _bypassed(c)
        ]
        if not todo:
            return {}
        contracts = {c.contract_id for c, r in todo if "contract" in r.needs and c.contract_id}
        clients = {c.client_id for c, r in todo if "balance" in r.needs}
        limit = asyncio.Semaphore(16)

        async def fetch(kind: str, key: str) -> tuple[str, str, Any]:
            async with limit:
                try:
                    if kind == "contract":
                        return kind, key, await self.enricher.contract(key, fresh=True)
                    return kind, key, await self.enricher.balance(key, fresh=True)
                except Exception as exc:  # classified below, per letter
                    return kind, key, exc

        fetched = await asyncio.gather(
            *(fetch("contract", k) for k in contracts), *(fetch("balance", k) for k in clients)
        )
        data = {(kind, key): value for kind, key, value in fetched}
        out: dict[int, Result] = {}
        for c, recheck in todo:
            contract = data.get(("contract", c.contract_id or ""))
            balance = data.get(("balance", c.client_id))
            for value in (contract, balance):
                if isinstance(value, Exception):
                    out[c.id] = _recheck_failure(value)
                    break
            else:
                reason = recheck.check(
                    SendFacts(
                        contract=contract if isinstance(contract, Contract) else None,
                        balance=balance if isinstance(balance, Balance) else None,
                    )
                )
                if reason is not None:
                    out[c.id] = Result(LetterStatus.skipped, skip_reason=reason)
        return out

    def _spec(self, c: Claimed) -> Any:
        return self.catalog.get(c.letter) if c.letter in self.catalog else None

    def _unresolved(self, c: Claimed, external: repository.ProviderId, *, now: datetime) -> Result:
        """An outbound letter whose ``external_id_from`` letter has not been sent: retried
        while one is pending (the upsert goes first), failed when there is none."""
        source = self.catalog.get(c.letter).outbound.external_id_from  # type: ignore[union-attr]
        if external.pending:
            return self._retry(
                c,
                error=f"waiting for {source} of this client to be sent",
                now=now,
                code="not_synced",
            )
        return Result(
            LetterStatus.failed,
            attempt=AttemptOutcome.permanent,
            code="not_synced",
            error=f"no {source} was sent for client {c.client_id}: no provider id to update",
        )

    def _item(self, c: Claimed, *, external_id: str | None = None) -> bytes | Result:
        """The letter rendered and encoded as its gateway item (or why it cannot be)."""
        spec = self.catalog.get(c.letter)
        metadata: dict[str, str | int] = {
            "letter_id": c.id,
            "letter": c.letter,
            "client_id": c.client_id,
        }
        if spec.outbound is not None:
            return self._outbound_item(c, metadata, external_id=external_id)
        context = render_context(c, self.config)
        try:
            rendered = self.render(spec.template_name, c.locale, context)
        except Exception as exc:  # a template bug fails this letter, never the batch
            log.warning("letters.render_failed", letter_id=c.id, letter=c.letter, error=str(exc))
            return Result(
                LetterStatus.failed,
                attempt=AttemptOutcome.permanent,
                code="template_error",
                error=f"template error: {exc}",
            )
        client = context.get("client", {})
        return encode_message(
            idempotency_key(c.id),
            channel=c.channel,
            address=c.recipient,
            name=client.get("name"),
            subject=rendered.subject,
            html=rendered.html,
            text=rendered.text,
            unsubscribe_url=context["links"]["unsubscribe_url"],
            metadata=metadata,
        )

    def _outbound_item(
        self, c: Claimed, metadata: dict[str, str | int], *, external_id: str | None
    ) -> bytes | Result:
        """An outbound letter's stored ``message`` as its gateway item."""
        message = c.context.get("message")
        if not isinstance(message, dict) or not isinstance(message.get("to"), list):
            return Result(
                LetterStatus.failed,
                attempt=AttemptOutcome.permanent,
                code="invalid_message",
                error="the letter's context has no outbound message",
            )
        if external_id is not None:
            to = [{**r, "external_id": external_id} for r in message["to"] if isinstance(r, dict)]
            message = {**message, "to": to}
        return encode_outbound(
            idempotency_key(c.id), channel=c.channel, message=message, metadata=metadata
        )

    def _from_gateway(self, c: Claimed, answer: GatewayResult, *, now: datetime) -> Result:
        common: dict[str, Any] = {
            "provider": answer.provider,
            "provider_message_id": answer.provider_message_id,
            "code": answer.code,
            "status_code": answer.status_code,
            "duration_ms": answer.duration_ms,
        }
        error = f"{answer.code}: {answer.reason}" if answer.code or answer.reason else None
        if answer.outcome == "accepted":
            return Result(LetterStatus.sent, AttemptOutcome.ok, **common)
        if answer.outcome == "skipped":
            reason = answer.code or answer.reason or "skipped by the gateway"
            return Result(
                LetterStatus.skipped, AttemptOutcome.skipped, skip_reason=reason, **common
            )
        if answer.outcome == "permanent_error":
            return Result(LetterStatus.failed, AttemptOutcome.permanent, error=error, **common)
        return self._retry(c, error=error, retry_after=answer.retry_after, now=now, **common)

    def _retry(
        self,
        c: Claimed,
        *,
        error: str | None,
        now: datetime,
        retry_after: float | None = None,
        **common: Any,
    ) -> Result:
        """Transient failure: back to ``scheduled`` with backoff, or ``failed`` when exhausted."""
        tries = c.attempts + 1
        if tries >= self.config.max_attempts:
            return Result(
                LetterStatus.failed,
                AttemptOutcome.transient,
                error=f"attempts exhausted ({tries}): {error}",
                **common,
            )
        delay = backoff(tries, self.config, retry_after=retry_after)
        return Result(
            LetterStatus.scheduled,
            AttemptOutcome.transient,
            send_at=now + timedelta(seconds=delay),
            error=error,
            **common,
        )

    # ---- recording ------------------------------------------------------------------------

    async def _record(
        self, session: AsyncSession, outcomes: Sequence[tuple[Claimed, Result]], *, now: datetime
    ) -> None:
        letters, attempts = repository.LetterResults(), repository.AttemptRows()
        for c, r in outcomes:
            error = r.error[:2000] if r.error else None
            tries = c.attempts
            if r.attempt is not None:
                tries += 1
                attempts.letter_id.append(c.id)
                attempts.try_number.append(tries)
                attempts.outcome.append(r.attempt)
                attempts.status_code.append(r.status_code)
                attempts.code.append(r.code)
                attempts.error.append(error)
                attempts.provider.append(r.provider)
                attempts.provider_message_id.append(r.provider_message_id)
                attempts.duration_ms.append(r.duration_ms)
            letters.id.append(c.id)
            letters.status.append(r.status)
            letters.send_at.append(r.send_at)
            letters.provider_message_id.append(r.provider_message_id)
            letters.last_error.append(error)
            letters.skip_reason.append(r.skip_reason[:200] if r.skip_reason else None)
            letters.attempts.append(tries)
            letters.cancel_reason.append(r.cancel_reason)
        await repository.update_letters(session, letters, now=now)
        await repository.insert_attempts(session, attempts, now=now)
        for (letter, status), n in Counter((c.letter, r.status) for c, r in outcomes).items():
            LETTER_OUTCOMES.labels(letter, OUTCOME_NAMES[status]).inc(n)
        series = [(c, r) for c, r in outcomes if r.status in SERIES_GOES_ON and self._repeats(c)]
        if series:
            await self._schedule_next(session, series, now=now)

    def _repeats(self, c: Claimed) -> bool:
        spec = self._spec(c)
        return spec is not None and spec.repeat is not None

    async def _schedule_next(
        self, session: AsyncSession, series: Sequence[tuple[Claimed, Result]], *, now: datetime
    ) -> None:
        """The next occurrence of each letter of a series that ended this one (in the same
        transaction as its result). Its interval is the letter's effective parameter; a due
        time already past (the drain was down for weeks) moves on by whole intervals."""
        names = sorted({c.letter for c, _ in series})
        settings = await effective(session, names, catalog=self.catalog)
        next_at: dict[int, datetime] = {}
        for c, _ in series:
            spec = self.catalog.get(c.letter)
            assert spec.repeat is not None
            every = spec.repeat(settings[c.letter].params)
            if every is None or every <= timedelta(0):
                continue
            at = c.send_at + every
            if at <= now:
                at += every * ((now - at) // every + 1)
            next_at[c.id] = at
        created = await repository.schedule_next(session, next_at, now=now)
        if created:
            log.info("letters.series_scheduled", letters=len(created))


async def _run_lanes(lane: Callable[[], Awaitable[None]], lanes: int) -> None:
    """Run ``lanes`` copies of ``lane`` until all return; the first error cancels the rest and
    is raised unchanged (not wrapped in an ExceptionGroup, unlike a TaskGroup)."""
    if lanes == 1:
        await lane()
        return
    tasks = [asyncio.ensure_future(lane()) for _ in range(lanes)]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:  # also when the drain itself is cancelled
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in tasks:
        if task in done and not task.cancelled():
            error = task.exception()
            if error is not None:
                raise error


def _subjects_of(c: Claimed) -> list[str]:
    subjects = [f"client:{c.client_id}"]
    if c.contract_id:
        subjects.append(f"contract:{c.contract_id}")
    return subjects


def _trigger_time(c: Claimed) -> datetime | None:
    """When the series' triggering event occurred (its context), None when unknown."""
    event = c.context.get("event")
    value = event.get("occurred_at") if isinstance(event, dict) else None
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _without_contexts(claimed: Sequence[Claimed]) -> list[Claimed]:
    """The claimed rows without their contexts, once rendered: the send and the record need
    ids, attempts and send_at only (a batch's decoded contexts are several MB)."""
    return [
        Claimed(
            c.id,
            c.letter,
            c.client_id,
            c.contract_id,
            c.channel,
            c.recipient,
            c.locale,
            _NO_CONTEXT,
            c.attempts,
            c.send_at,
            c.expires_at,
        )
        for c in claimed
    ]


_NO_CONTEXT: dict[str, Any] = {}


def _malloc_trim() -> Callable[[], object] | None:
    """glibc's ``malloc_trim(0)`` (None elsewhere), as the gateway's (decision 0054)."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return cast(Callable[[], object], functools.partial(trim, 0))


_TRIM = _malloc_trim()


def release_memory() -> None:
    """Hand the C heap's free pages back to the OS once a drain is over (decision 0059): the
    worker is idle until the next minute's drain, and glibc keeps a drain's freed buffers."""
    if _TRIM is not None:
        _TRIM()


def _recheck_failure(exc: Exception) -> Result:
    if isinstance(exc, UpstreamNotFound):
        return Result(LetterStatus.skipped, skip_reason=f"recheck: {exc}"[:200])
    return Result(
        LetterStatus.scheduled,
        AttemptOutcome.transient,
        code="recheck_unavailable",
        error=f"recheck failed: {exc}",
    )


def _counts(report: BatchReport) -> dict[str, int]:
    return {
        "claimed": report.claimed,
        "sent": report.sent,
        "retried": report.retried,
        "failed": report.failed,
        "skipped": report.skipped,
        "expired": report.expired,
        "cancelled": report.cancelled,
    }
