from __future__ import annotations

import uuid
from typing import Annotated, Any

from arq.jobs import Job, JobStatus
from fastapi import APIRouter, Body, Query, Request, Response
from notifier_common.errors import (
    AppError,
    NotFound,
    PayloadTooLarge,
    Unprocessable,
    problem_responses,
)
from notifier_common.events import EVENT_TYPES
from notifier_common.pagination import decode_keyset_cursor, encode_cursor
from notifier_common.publisher import job_id_for
from notifier_common.text import NoNul
from redis.exceptions import RedisError

from notifier.api.deps import EventsWriter, LettersReader, Redis, Session, Settings, Since, Until
from notifier.events import intake, repository
from notifier.events.schemas import (
    EXAMPLE_EVENT,
    EventOut,
    EventPage,
    EventTypeOut,
    IntakeResponse,
)
from notifier.models import EventStatus

router = APIRouter(prefix="/v1", tags=["events"])


class QueueUnavailable(AppError):
    status_code = 503
    title = "Service Unavailable"


_BODY_DOC: Any = Body(
    ...,
    description='One event, or `{"events": [...]}` with up to 1,000 events.',
    openapi_examples={
        "single": {"summary": "One event", "value": EXAMPLE_EVENT},
        "batch": {"summary": "A batch", "value": {"events": [EXAMPLE_EVENT]}},
    },
)


@router.post(
    "/events",
    status_code=202,
    response_model=IntakeResponse,
    summary="Publish one event or a batch",
    description=(
        "Validates each event against its type's schema. Valid events are queued for the worker "
        "(a repeated id is reported as `duplicate` and processed once); invalid ones are stored "
        "as `rejected` with field errors and reported per item. A single invalid event answers "
        "422 (still stored as rejected)."
    ),
    responses=problem_responses(413, 503),
    openapi_extra={
        "requestBody": {"content": {"application/json": {"schema": {"type": "object"}}}}
    },
)
async def post_events(
    request: Request, session: Session, redis: Redis, settings: Settings, _: EventsWriter
) -> Any:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > settings.max_body_bytes:
        raise PayloadTooLarge(f"body exceeds {settings.max_body_bytes} bytes")
    raw = bytearray()
    async for chunk in request.stream():
        raw.extend(chunk)
        if len(raw) > settings.max_body_bytes:
            raise PayloadTooLarge(f"body exceeds {settings.max_body_bytes} bytes")
    body = bytes(raw)
    items, is_batch = intake.parse_body(body, max_events=settings.max_batch_events)
    try:
        result = await intake.accept(
            session,
            redis,
            items,
            queue_name=settings.queue_name,
            check_nul=intake.may_hold_nul(body),
        )
    except (RedisError, OSError) as exc:
        raise QueueUnavailable("the event queue is unavailable; retry later") from exc
    if not is_batch and result.rejected:
        item = result.results[0]
        raise Unprocessable(f"event rejected (stored as {item['id']})", errors=item["errors"])
    # serialised once here; returning a model would make FastAPI validate it again
    return Response(result.to_json(), status_code=202, media_type="application/json")


@router.get(
    "/events/{event_id}",
    response_model=EventOut,
    summary="One event with its processing status",
    description=(
        "`queued` means accepted and waiting for a worker. A rejected event is stored under an "
        "id of its own (the producer's id stays free for the corrected event); asked for by "
        "the producer's id, the newest rejected body that carried it is answered (its `id` is "
        "the stored one, `body.id` the producer's)."
    ),
    responses=problem_responses(404),
)
async def get_event(
    event_id: uuid.UUID, session: Session, redis: Redis, settings: Settings, _: LettersReader
) -> Any:
    row = await repository.get(session, event_id)
    if row is not None:
        return row
    status = await Job(job_id_for(event_id), redis, _queue_name=settings.queue_name).status()
    if status in (JobStatus.queued, JobStatus.deferred, JobStatus.in_progress):
        return EventOut(
            id=event_id,
            type=None,
            version=None,
            client_id=None,
            producer=None,
            occurred_at=None,
            trace_id=None,
            status="queued",
            source="queue",  # in the queue, whoever put it there (API or a producer)
            error=None,
            body=None,
            received_at=None,
            processed_at=None,
        )
    rejected = await repository.rejected_with_producer_id(session, event_id)
    if rejected is not None:
        return rejected
    raise NotFound(f"event {event_id} not found")


@router.get(
    "/events",
    response_model=EventPage,
    summary="List events, newest first",
    responses=problem_responses(),
)
async def list_events(
    session: Session,
    _: LettersReader,
    status: EventStatus | None = None,
    type: Annotated[str | None, Query(max_length=100), NoNul] = None,
    client_id: Annotated[str | None, Query(max_length=100), NoNul] = None,
    received_from: Since = None,
    received_to: Until = None,
    occurred_from: Since = None,
    occurred_to: Until = None,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> EventPage:
    after = decode_keyset_cursor(cursor, uuid.UUID)
    rows = await repository.list_events(
        session,
        status=status,
        type_=type,
        client_id=client_id,
        received=(received_from, received_to),
        occurred=(occurred_from, occurred_to),
        after=after,
        limit=limit + 1,
    )
    page = rows[:limit]
    next_cursor = encode_cursor(page[-1].received_at, page[-1].id) if len(rows) > limit else None
    return EventPage(items=[EventOut.model_validate(r) for r in page], next_cursor=next_cursor)


@router.get(
    "/event-types",
    response_model=list[EventTypeOut],
    summary="Event types with their JSON Schema",
    description="Public, no token needed: producers in any language validate before publishing.",
)
async def event_types() -> list[EventTypeOut]:
    return [
        EventTypeOut(type=name, version=1, json_schema=cls.model_json_schema())
        for name, cls in sorted(EVENT_TYPES.items())
    ]
