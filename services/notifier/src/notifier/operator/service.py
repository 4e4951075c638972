"""Operator decisions on letters: history, timeline, cancel, bulk retry. Only ``flush()``;
the request dependency (or the CLI's ``session_scope``) owns the transaction."""

from __future__ import annotations

from datetime import datetime

from notifier_common.errors import Conflict, NotFound, Unprocessable
from notifier_common.logging import get_logger
from notifier_common.pagination import decode_keyset_cursor, encode_cursor
from sqlalchemy.ext.asyncio import AsyncSession

from notifier.clock import Clock, system_clock
from notifier.config import repository as config_repository
from notifier.models import LetterStatus
from notifier.operator import repository, timeline
from notifier.operator.repository import LetterQuery
from notifier.operator.schemas import (
    AttemptOut,
    EventRef,
    LetterDetail,
    LetterFilter,
    LetterOut,
    LetterPage,
    RetryResult,
)

log = get_logger("notifier.operator")

RETRYABLE = frozenset({LetterStatus.failed, LetterStatus.expired})
MAX_IDS_SHOWN = 1000


def _after(cursor: str | None) -> tuple[datetime, int] | None:
    return decode_keyset_cursor(cursor, int)


async def list_letters(
    session: AsyncSession, query: LetterQuery, *, cursor: str | None, limit: int
) -> LetterPage:
    rows = await repository.list_letters(session, query, after=_after(cursor), limit=limit + 1)
    page = rows[:limit]
    more = len(rows) > limit
    next_cursor = encode_cursor(page[-1].created_at, page[-1].id) if more else None
    return LetterPage(items=[LetterOut.model_validate(r) for r in page], next_cursor=next_cursor)


async def letter_detail(session: AsyncSession, letter_id: int) -> LetterDetail:
    letter = await repository.get_letter(session, letter_id)
    if letter is None:
        raise NotFound(f"letter {letter_id} does not exist")
    event = await repository.get_event(session, letter.event_id) if letter.event_id else None
    attempts = await repository.attempts_of(session, letter_id)
    resends = await repository.resends_of(session, letter_id)
    setting = await config_repository.get_setting(session, letter.letter)
    entries = timeline.build(
        letter,
        event=event,
        attempts=attempts,
        resends=resends,
        overrides=setting.params if setting else None,
    )
    event_ref = (
        EventRef(
            id=event.id,
            type=event.type,
            status=event.status.value,
            occurred_at=event.occurred_at,
            received_at=event.received_at,
            processed_at=event.processed_at,
            body=event.body,
        )
        if event
        else None
    )
    return LetterDetail(
        **LetterOut.model_validate(letter).model_dump(),
        context=letter.context or {},
        event=event_ref,
        attempt_rows=[AttemptOut.model_validate(a) for a in attempts],
        resends=[r.id for r in resends],
        timeline=entries,
    )


async def cancel(
    session: AsyncSession,
    letter_id: int,
    *,
    reason: str,
    by: str,
    clock: Clock = system_clock,
) -> LetterOut:
    """``scheduled -> cancelled`` in one conditional UPDATE, so a cancel never races a send: a
    letter a send holds (its row lock is the claim, decisions 0090 and 0103) is waited for,
    then refused with 409 if it went out or cancelled if it is ``scheduled`` again; a letter
    in any other state (finished, or ``sending`` under an earlier version's lease) is 409."""
    full_reason = f"{reason} ({by})"[:200]
    done = await repository.cancel_if_scheduled(session, letter_id, reason=full_reason, now=clock())
    letter = await repository.get_letter(session, letter_id)
    if letter is None:
        raise NotFound(f"letter {letter_id} does not exist")
    if not done:
        raise Conflict(
            f"letter {letter_id} is {letter.status.value}; only scheduled letters can be cancelled"
        )
    await session.refresh(letter)
    log.info("operator.letter_cancelled", letter_id=letter_id, by=by)
    return LetterOut.model_validate(letter)


def _retry_query(flt: LetterFilter) -> LetterQuery:
    statuses = set(flt.status)
    if not statuses or not statuses <= RETRYABLE:
        raise Unprocessable(
            "only failed or expired letters can be retried",
            errors=[
                {
                    "loc": "body.filter.status",
                    "msg": f"allowed: {sorted(s.value for s in RETRYABLE)}",
                    "type": "value_error",
                }
            ],
        )
    return LetterQuery(
        status=sorted(statuses),
        client_id=flt.client_id,
        letter=flt.letter,
        channel=flt.channel,
        created_from=flt.created_from,
        created_to=flt.created_to,
    )


async def retry(
    session: AsyncSession,
    flt: LetterFilter,
    *,
    dry_run: bool,
    cap: int | None,
    by: str,
    clock: Clock = system_clock,
) -> RetryResult:
    """Count (dry run) or re-schedule matching failed letters, refusing more than ``cap``."""
    query = _retry_query(flt)
    matched = await repository.count_letters(session, query)
    if dry_run:
        return RetryResult(matched=matched, rescheduled=0, dry_run=True, letter_ids=[])
    if cap is None:
        raise Unprocessable(
            "max is required unless dry_run",
            errors=[{"loc": "body.max", "msg": "Field required", "type": "missing"}],
        )
    if matched > cap:
        raise Conflict(f"{matched} letters match, more than max={cap}; narrow the filter")
    ids = await reschedule_batch(session, flt, limit=cap, by=by, clock=clock)
    return RetryResult(
        matched=matched, rescheduled=len(ids), dry_run=False, letter_ids=ids[:MAX_IDS_SHOWN]
    )


async def reschedule_batch(
    session: AsyncSession,
    flt: LetterFilter,
    *,
    limit: int,
    by: str,
    clock: Clock = system_clock,
) -> list[int]:
    """Re-schedule up to ``limit`` matching letters (the CLI's batches; no cap check)."""
    ids = await repository.reschedule(session, _retry_query(flt), now=clock(), limit=limit)
    log.info("operator.letters_retried", count=len(ids), by=by)
    return ids
