"""Decisions about events: validate, reject, store once, process."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from notifier_common.db import session_scope
from notifier_common.events import AnyEvent, describe_errors, parse_event
from notifier_common.logging import get_logger
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from notifier.events import repository
from notifier.events.processing import (
    AfterCommit,
    EventProcessor,
    PermanentEventError,
)
from notifier.metrics import EVENTS_HANDLED
from notifier.models import EventStatus

log = get_logger("notifier.events")

REJECT_NAMESPACE = uuid.UUID("5d3c7c1e-2f55-4f4e-9d0b-6a1d2b9d7c11")

Outcome = Literal["processed", "duplicate", "rejected", "failed"]


def reject_id_for(body: Any) -> uuid.UUID:
    """Deterministic id of a rejected body: the same bad body is stored once."""
    canonical = json.dumps(body, sort_keys=True, default=str, separators=(",", ":"))
    return uuid.uuid5(REJECT_NAMESPACE, hashlib.sha256(canonical.encode()).hexdigest())


@dataclass(frozen=True)
class Validated:
    event: AnyEvent | None
    errors: list[dict[str, str]] | None


def _nul_paths(value: Any, path: str = "") -> list[str]:
    """Paths of strings (keys included) holding U+0000, which PostgreSQL text/JSONB refuse."""
    if isinstance(value, str):
        return [path or "(root)"] if "\x00" in value else []
    found: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            sub = f"{path}.{key}" if path else str(key)
            if "\x00" in str(key):
                found.append(sub)
            found += _nul_paths(item, sub)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += _nul_paths(item, f"{path}.{i}" if path else str(i))
    return found


def _may_hold_nul(body: Any) -> bool:
    """False when ``body`` surely holds no U+0000: orjson writes it as ``\u0000`` (a quick
    test in C; the walk of ``_nul_paths`` runs only when the text appears or orjson can't
    serialise the body)."""
    try:
        return b"\\u0000" in orjson.dumps(body)
    except TypeError:  # orjson.JSONEncodeError too
        return True


def storable(value: Any) -> Any:
    """A copy of a body that PostgreSQL can store: U+0000 replaced by U+FFFD."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {storable(str(k)): storable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [storable(v) for v in value]
    return value


def validate(body: Any, *, check_nul: bool = True) -> Validated:
    """The typed event or field errors. ``check_nul=False`` when the caller knows the body
    holds no U+0000 (e.g. its raw JSON has no ``\\u0000`` escape)."""
    nul = _nul_paths(body) if check_nul and _may_hold_nul(body) else []
    if nul:
        return Validated(
            None,
            [
                {"loc": loc, "msg": "U+0000 (NUL) is not allowed in strings", "type": "string_nul"}
                for loc in nul
            ],
        )
    try:
        return Validated(parse_event(body), None)
    except ValidationError as exc:
        return Validated(None, describe_errors(exc))


async def reject(
    session: AsyncSession, body: Any, errors: list[dict[str, str]], *, source: str
) -> uuid.UUID:
    reject_id = reject_id_for(body)
    await repository.insert_rejected(
        session, reject_id=reject_id, body=storable(body), errors=storable(errors), source=source
    )
    EVENTS_HANDLED.labels(source, "rejected").inc()
    log.warning("events.rejected", reject_id=str(reject_id), source=source, errors=errors)
    return reject_id


async def handle_event(
    sessionmaker: async_sessionmaker[AsyncSession],
    processor: EventProcessor,
    body: Any,
    *,
    source: str = "queue",
) -> Outcome:
    """Store the event once and process it. Transient errors propagate to the caller (retry)."""
    checked = validate(body)
    if checked.event is None:
        async with session_scope(sessionmaker) as session:
            await reject(session, body, checked.errors or [], source=source)
        return "rejected"
    event = checked.event
    bound = log.bind(event_id=str(event.id), event_type=event.type)
    try:
        async with session_scope(sessionmaker) as session:
            fresh = await repository.insert_received(session, event, source=source)
            if not fresh:
                stored = await repository.get(session, event.id)
                if stored is not None and stored.status != EventStatus.processing:
                    bound.info("events.duplicate", status=stored.status.value)
                    EVENTS_HANDLED.labels(source, "duplicate").inc()
                    return "duplicate"
            after_commit = await processor.process(session, event)
            await repository.mark(session, event.id, EventStatus.processed)
    except PermanentEventError as exc:
        return await fail(sessionmaker, event, exc, source=source)
    await run_after_commit(after_commit, bound)
    EVENTS_HANDLED.labels(source, "processed").inc()
    bound.info("events.processed")
    return "processed"


async def fail(
    sessionmaker: async_sessionmaker[AsyncSession],
    event: AnyEvent,
    exc: Exception,
    *,
    source: str,
    tries: int | None = None,
) -> Outcome:
    """Store the event ``failed`` with the reason, so it is listed and can be replayed with
    ``--force``: processing can never succeed (a :class:`PermanentEventError`), or a transient
    error outlasted the job's last try (``tries``: how many were spent; decision 0093).

    Only a new row or one still ``processing`` is marked: an event another job processed (or
    failed) meanwhile keeps its outcome, and this one is a ``duplicate``."""
    reason = (str(exc) or repr(exc))[:2000]  # a TimeoutError has no message
    error: dict[str, Any] = {"message": reason}
    if tries is not None:
        error["tries"] = tries
    async with session_scope(sessionmaker) as session:
        await repository.insert_received(session, event, source=source)
        marked = await repository.mark(
            session, event.id, EventStatus.failed, error=error, only_from=EventStatus.processing
        )
    if not marked:
        log.info("events.duplicate", event_id=str(event.id), not_failed=reason[:300])
        EVENTS_HANDLED.labels(source, "duplicate").inc()
        return "duplicate"
    log.warning(
        "events.failed",
        event_id=str(event.id),
        event_type=event.type,
        reason=reason,
        **({} if tries is None else {"tries": tries}),
    )
    EVENTS_HANDLED.labels(source, "failed").inc()
    return "failed"


async def run_after_commit(actions: Sequence[AfterCommit], bound: Any = log) -> None:
    for action in actions:
        try:
            await action()
        except Exception:  # the outbox row is committed: the drain will deliver it
            bound.exception("events.after_commit_failed")
