"""Suppressions: listed for operators and pulled by the notifier; removable by an admin.

Also the message status feed the notifier pulls next to the suppression feed (same paging).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Response
from notifier_common.errors import NotFound, problem_responses
from notifier_common.logging import get_logger
from notifier_common.pagination import decode_keyset_cursor, encode_cursor
from notifier_common.text import NoNul

from gateway.deps import Admin, MessagesReader, Session
from gateway.messages.dispatch import normalize_address
from gateway.suppressions import repository
from gateway.suppressions.schemas import (
    StatusChangeOut,
    StatusChangePage,
    SuppressionOut,
    SuppressionPage,
)

router = APIRouter(prefix="/v1", tags=["suppressions"])
log = get_logger("gateway.suppressions")


@router.get(
    "/suppressions",
    response_model=SuppressionPage,
    summary="Suppressed addresses, oldest first (a sync feed)",
    description=(
        "Filter by `address` and `scope`; `since` returns those created at or after a time. "
        "The notifier syncs by polling with `since` = (newest `created_at` it has seen minus a "
        "minute of overlap) and upserting by (address, scope); see docs/gateway-api.md."
    ),
    responses=problem_responses(),
)
async def list_suppressions(
    session: Session,
    _: MessagesReader,
    address: Annotated[str | None, Query(max_length=320), NoNul] = None,
    scope: Annotated[str | None, Query(max_length=100), NoNul] = None,
    since: datetime | None = None,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> SuppressionPage:
    after = _int_cursor(cursor)
    rows = await repository.list_page(
        session,
        address=normalize_address(address) if address else None,
        scope=scope,
        since=since,
        after=after,
        limit=limit + 1,
    )
    page = rows[:limit]
    next_cursor = encode_cursor(page[-1].created_at, page[-1].id) if len(rows) > limit else None
    return SuppressionPage(
        items=[SuppressionOut.model_validate(r) for r in page], next_cursor=next_cursor
    )


@router.get(
    "/status-changes",
    response_model=StatusChangePage,
    summary="Messages moved by provider webhooks, oldest first (a sync feed)",
    description=(
        "One item per webhook event that moved a message to delivered / bounced / complained, "
        "ordered by the event's `received_at`, with the message's current status and "
        "idempotency key. Poll like `/v1/suppressions`: `since` = newest `received_at` seen "
        "minus a minute of overlap; applying an item twice is harmless."
    ),
    responses=problem_responses(),
)
async def list_status_changes(
    session: Session,
    _: MessagesReader,
    since: datetime | None = None,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> StatusChangePage:
    rows = await repository.status_changes(
        session, since=since, after=_int_cursor(cursor), limit=limit + 1
    )
    page = rows[:limit]
    next_cursor = (
        encode_cursor(page[-1].received_at, page[-1].event_id) if len(rows) > limit else None
    )
    return StatusChangePage(
        items=[StatusChangeOut.model_validate(r) for r in page], next_cursor=next_cursor
    )


def _int_cursor(cursor: str | None) -> tuple[datetime, int] | None:
    return decode_keyset_cursor(cursor, int)


@router.delete(
    "/suppressions/{suppression_id}",
    status_code=204,
    summary="Remove a suppression (the address may receive messages again)",
    responses=problem_responses(404),
)
async def delete_suppression(suppression_id: int, session: Session, principal: Admin) -> Response:
    if not await repository.delete_one(session, suppression_id):
        raise NotFound(f"suppression {suppression_id} not found")
    log.info("gateway.suppression_deleted", suppression_id=suppression_id, by=principal.name)
    return Response(status_code=204)
