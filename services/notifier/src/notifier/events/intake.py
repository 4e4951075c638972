"""POST /v1/events: validate every item, store the invalid ones, enqueue the valid ones."""

from __future__ import annotations

import json
from typing import Any

from arq.connections import ArqRedis
from notifier_common.errors import PayloadTooLarge, Unprocessable
from notifier_common.events import Envelope
from notifier_common.publisher import enqueue_raw, job_id_for
from sqlalchemy.ext.asyncio import AsyncSession

from notifier.events import service
from notifier.events.schemas import FieldError, IntakeResponse, ItemResult
from notifier.metrics import EVENTS_ENQUEUED


def may_hold_nul(raw: bytes) -> bool:
    """JSON can only carry U+0000 escaped (a raw control character is invalid JSON)."""
    return b"\\u0000" in raw


def parse_body(raw: bytes, *, max_events: int) -> tuple[list[Any], bool]:
    """Returns (items, is_batch). Raises 422 for non-JSON or a malformed batch wrapper."""
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Unprocessable(
            f"body is not valid JSON: {exc}",
            errors=[{"loc": "body", "msg": str(exc), "type": "json_invalid"}],
        ) from exc
    if isinstance(data, dict) and set(data) == {"events"}:
        items = data["events"]
        if not isinstance(items, list) or not items:
            raise Unprocessable(
                "`events` must be a non-empty list",
                errors=[{"loc": "events", "msg": "must be a non-empty list", "type": "list_type"}],
            )
        if len(items) > max_events:
            raise PayloadTooLarge(f"a batch holds at most {max_events} events, got {len(items)}")
        return items, True
    return [data], False


async def accept(
    session: AsyncSession,
    redis: ArqRedis,
    items: list[Any],
    *,
    queue_name: str,
    check_nul: bool = True,
) -> IntakeResponse:
    """Validate each item; enqueue the valid ones as received (the worker validates them again,
    so the job carries the producer's JSON and nothing is re-serialised on this hot path)."""
    results: list[ItemResult] = []
    valid: list[tuple[int, Envelope, Any]] = []
    for index, item in enumerate(items):
        checked = service.validate(item, check_nul=check_nul)
        if checked.event is None:
            errors = checked.errors or []
            reject_id = await service.reject(session, item, errors, source="api")
            results.append(
                ItemResult(
                    index=index,
                    id=reject_id,
                    status="rejected",
                    errors=[FieldError(**e) for e in errors],
                )
            )
        else:
            valid.append((index, checked.event, item))
    # rejected rows are committed by the caller's transaction; the valid ones go to the queue
    await session.commit()
    jobs = [(job_id_for(event.id), item) for _, event, item in valid]
    fresh = await enqueue_raw(redis, jobs, queue_name=queue_name)
    for (index, event, _), new in zip(valid, fresh, strict=True):
        status = "queued" if new else "duplicate"
        results.append(ItemResult(index=index, id=event.id, status=status))
    results.sort(key=lambda r: r.index)
    accepted = sum(r.status == "queued" for r in results)
    EVENTS_ENQUEUED.inc(accepted)
    return IntakeResponse(
        accepted=accepted,
        duplicates=sum(r.status == "duplicate" for r in results),
        rejected=sum(r.status == "rejected" for r in results),
        results=results,
    )
