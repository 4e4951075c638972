"""Suppressions: listed for operators and pulled by the notifier; removable by an admin."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Response
from notifier_common.errors import NotFound, Unprocessable, problem_responses
from notifier_common.logging import get_logger
from notifier_common.pagination import decode_datetime_cursor, encode_cursor

from gateway.deps import Admin, MessagesReader, Session
from gateway.messages.dispatch import normalize_address
from gateway.suppressions import repository
from gateway.suppressions.schemas import SuppressionOut, SuppressionPage

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
    address: Annotated[str | None, Query(max_length=320)] = None,
    scope: Annotated[str | None, Query(max_length=100)] = None,
    since: datetime | None = None,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> SuppressionPage:
    after = None
    if cursor:
        at, last = decode_datetime_cursor(cursor)
        if not last.isdigit():
            raise Unprocessable("invalid cursor")
        after = (at, int(last))
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
