"""Thin routes of the operator API: letters history, timeline and actions."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Query
from notifier_common.errors import problem_responses

from notifier.api.deps import (
    Clients,
    LettersReader,
    LettersWriter,
    Redis,
    Session,
    Settings,
    Since,
    Until,
)
from notifier.events.schemas import EXAMPLE_EVENT
from notifier.letters.service import PlanConfig
from notifier.models import LetterOrigin, LetterStatus
from notifier.operator import dryrun, sending, service
from notifier.operator.dispatch import send_after_commit
from notifier.operator.repository import LetterQuery
from notifier.operator.schemas import (
    CancelRequest,
    DryRunResult,
    LetterDetail,
    LetterOut,
    LetterPage,
    PreviewRequest,
    PreviewResult,
    ResendRequest,
    RetryRequest,
    RetryResult,
    SendRequest,
    SendResult,
)

router = APIRouter(prefix="/v1", tags=["letters"])
tools = APIRouter(prefix="/v1", tags=["dry run and preview"])

NO_NUL = r"^[^\x00]+$"
LetterId = Annotated[int, Path(ge=1, le=2**63 - 1, description="Letter id.", examples=[1042])]
Text = Annotated[str | None, Query(min_length=1, max_length=100, pattern=NO_NUL)]


@router.get(
    "/letters",
    response_model=LetterPage,
    summary="Letter history with filters",
    description=(
        "Newest first (`created_at`, then `id`, descending), keyset-paginated: pass "
        "`next_cursor` back as `cursor`. Time ranges are half-open `[from, to)`; `status` may "
        'repeat (`?status=failed&status=expired`). Answers "what did client X get, and when?"'
    ),
    responses=problem_responses(),
)
async def list_letters(
    session: Session,
    _: LettersReader,
    client_id: Text = None,
    letter: Text = None,
    status: Annotated[list[LetterStatus] | None, Query(description="Repeatable.")] = None,
    channel: Text = None,
    origin: LetterOrigin | None = None,
    event_id: uuid.UUID | None = None,
    created_from: Since = None,
    created_to: Until = None,
    send_from: Since = None,
    send_to: Until = None,
    sent_from: Since = None,
    sent_to: Until = None,
    cursor: Annotated[str | None, Query(max_length=500, pattern=NO_NUL)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> LetterPage:
    query = LetterQuery(
        client_id=client_id,
        letter=letter,
        status=tuple(status or ()),
        channel=channel,
        origin=origin,
        event_id=event_id,
        created_from=created_from,
        created_to=created_to,
        send_from=send_from,
        send_to=send_to,
        sent_from=sent_from,
        sent_to=sent_to,
    )
    return await service.list_letters(session, query, cursor=cursor, limit=limit)


@router.get(
    "/letters/{letter_id}",
    response_model=LetterDetail,
    summary="One letter with its timeline",
    description=(
        "The letter row, its context snapshot, the triggering event, every delivery attempt and "
        "a timeline: event -> decision (why scheduled, for when, quiet-hour shift) -> attempts "
        "-> provider status -> outcome (sent / cancel / skip / expiry reason) -> resends."
    ),
    responses=problem_responses(404),
)
async def get_letter(letter_id: LetterId, session: Session, _: LettersReader) -> LetterDetail:
    return await service.letter_detail(session, letter_id)


@router.post(
    "/letters/{letter_id}:cancel",
    response_model=LetterOut,
    summary="Cancel a scheduled letter",
    description=(
        "Only a `scheduled` letter can be cancelled; any other state (it already ended) answers "
        "409. A letter a worker is sending right now is locked by that send: the cancel waits "
        "for it (at most the gateway timeout), then answers 409 if it went out, or cancels it "
        "if the send failed and it is due again. The reason is stored with the operator's "
        "token name."
    ),
    responses=problem_responses(404, 409),
)
async def cancel_letter(
    letter_id: LetterId,
    session: Session,
    principal: LettersWriter,
    body: Annotated[CancelRequest | None, Body()] = None,
) -> LetterOut:
    reason = (body or CancelRequest()).reason
    return await service.cancel(session, letter_id, reason=reason, by=principal.name)


_RETRY_BODY: Any = Body(
    openapi_examples={
        "count": {
            "summary": "Count first",
            "value": {"filter": {"status": ["failed"]}, "dry_run": True},
        },
        "retry": {
            "summary": "Retry at most 500",
            "value": {"filter": {"status": ["failed"], "letter": "LowBalanceNotice"}, "max": 500},
        },
    }
)


@router.post(
    "/letters:retry",
    response_model=RetryResult,
    summary="Retry failed letters in bulk",
    description=(
        "Selects `failed` (or `expired`) letters by filter. With `dry_run` only counts them. "
        "Otherwise `max` is required (422 without it) and more matches than `max` answer 409; "
        "the matching letters go back to `scheduled`, due now, with their attempt counter reset, "
        "and the next drain sends them."
    ),
    responses=problem_responses(409),
)
async def retry_letters(
    session: Session, principal: LettersWriter, body: Annotated[RetryRequest, _RETRY_BODY]
) -> RetryResult:
    return await service.retry(
        session, body.filter, dry_run=body.dry_run, cap=body.max, by=principal.name
    )


def engine_inputs(clients: Clients, settings: Settings) -> tuple[Any, PlanConfig, Any]:
    from notifier.worker import plan_config

    return clients["enrichment"], plan_config(settings), clients["clock"]()


EngineInputs = Annotated[tuple[Any, PlanConfig, Any], Depends(engine_inputs)]


@router.post(
    "/letters/{letter_id}:resend",
    response_model=LetterOut,
    status_code=201,
    summary="Resend a letter",
    description=(
        "Creates a new letter (origin `resend`, `resend_of` = this id, `created_by` = your token "
        "name) to the same recipient, sent right away by a worker (the per-minute drain is the "
        "safety net). Rendered from the stored context snapshot, or "
        "with `fresh: true` from data fetched again upstream. A pending letter (`scheduled` or "
        "`sending`) or a letter switched off in the config answers 409; a template that no "
        "longer renders answers 422."
    ),
    responses=problem_responses(404, 409, 503),
)
async def resend_letter(
    letter_id: LetterId,
    session: Session,
    redis: Redis,
    settings: Settings,
    principal: LettersWriter,
    inputs: EngineInputs,
    body: Annotated[ResendRequest | None, Body()] = None,
) -> LetterOut:
    enricher, config, now = inputs
    letter = await sending.resend(
        session,
        letter_id,
        fresh=(body or ResendRequest()).fresh,
        enricher=enricher,
        config=config,
        by=principal.name,
        now=now,
    )
    await send_after_commit(session, redis, [letter.id], queue_name=settings.queue_name)
    return letter


@router.post(
    "/letters:send",
    response_model=SendResult,
    status_code=201,
    summary="Send a catalog letter to a client by hand",
    description=(
        "Only letters in the catalog (422 otherwise) that are switched on (409 otherwise). The "
        "client's data is fetched upstream, the letter's condition evaluated (409 when it fails, "
        "unless `bypass_conditions` — the admin bypass), and one letter per recipient address is "
        "created with origin `manual` and `created_by` = your token name and sent right away by a "
        "worker (the per-minute drain is the safety net). Suppressed "
        "addresses are never bypassed: the gateway skips them at send time."
    ),
    responses=problem_responses(409, 503),
)
async def send_letter(
    body: SendRequest,
    session: Session,
    redis: Redis,
    settings: Settings,
    principal: LettersWriter,
    inputs: EngineInputs,
) -> SendResult:
    enricher, config, now = inputs
    result = await sending.manual_send(
        session, body, enricher=enricher, config=config, by=principal.name, now=now
    )
    ids = [letter.id for letter in result.letters]
    await send_after_commit(session, redis, ids, queue_name=settings.queue_name)
    return result


_DRY_RUN_BODY: Any = Body(
    ...,
    description="An event as it would be published to `POST /v1/events`.",
    openapi_examples={"balance": {"summary": "A balance drop", "value": EXAMPLE_EVENT}},
)


@tools.post(
    "/events:dry-run",
    response_model=DryRunResult,
    summary="What an event would do, without doing it",
    description=(
        "Runs the letter engine's planning on the event: which letters it would schedule (for "
        "when, with quiet-hour shifts, rendered previews) or skip (which condition failed), and "
        "which pending letters it would cancel. Nothing is stored and nothing is queued; "
        "upstream data is fetched over HTTP (read-only)."
    ),
    responses=problem_responses(503),
    openapi_extra={
        "requestBody": {"content": {"application/json": {"schema": {"type": "object"}}}}
    },
)
async def dry_run(
    session: Session, _: LettersReader, inputs: EngineInputs, body: dict[str, Any] = _DRY_RUN_BODY
) -> DryRunResult:
    enricher, config, now = inputs
    return await dryrun.dry_run(session, body, enricher=enricher, config=config, now=now)


@tools.post(
    "/templates/{letter}:preview",
    response_model=PreviewResult,
    summary="Render a letter for a client and locale",
    description=(
        "Renders subject, HTML and text from the client's current data (when `client_id` is "
        "given) merged with `context_overrides`. A render error answers 422 with the message."
    ),
    responses=problem_responses(404, 503),
)
async def preview_template(
    letter: Annotated[str, Path(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_]+$")],
    body: PreviewRequest,
    session: Session,
    _: LettersReader,
    inputs: EngineInputs,
) -> PreviewResult:
    enricher, config, now = inputs
    return await dryrun.preview(session, letter, body, enricher=enricher, config=config, now=now)
