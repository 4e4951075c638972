"""The signed unsubscribe link: a confirmation page (GET) and RFC 8058 one-click (POST); and the
operator's routes: list, add and lift suppressions (decision 0108).

The link is public, no bearer token: its signature is the credential. An unknown letter, a
malformed token and a wrong signature all answer the same 404 (no oracle). Each client IP gets
``NOTIFIER_UNSUBSCRIBE_PER_MINUTE`` requests a minute, then 429 with ``Retry-After``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import HTMLResponse
from notifier_common.errors import NotFound, problem, problem_responses
from notifier_common.logging import get_logger
from notifier_common.text import NoNul
from sqlalchemy.ext.asyncio import AsyncSession

from notifier import unsubscribe as signer
from notifier.api.deps import (
    GatewayIntegrations,
    LettersReader,
    LettersWriter,
    Redis,
    Session,
    Settings,
)
from notifier.models import Letter, SuppressionReason, SuppressionSource
from notifier.settings import NotifierSettings
from notifier.suppressions import pages, repository, service
from notifier.suppressions.repository import SuppressionQuery
from notifier.suppressions.schemas import (
    LiftResult,
    SuppressionIn,
    SuppressionOut,
    SuppressionPage,
)
from notifier.suppressions.throttle import retry_after

router = APIRouter(prefix="/v1", tags=["unsubscribe"])
operator_router = APIRouter(prefix="/v1", tags=["suppressions"])
log = get_logger("notifier.suppressions")

Token = Path(max_length=60, description="`<letter id>.<signature>` from the letter's link.")
HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
_HTML: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/html": {}}, "description": "HTML page"}
}


async def _letter(session: AsyncSession, token: str, settings: NotifierSettings) -> Letter:
    parsed = signer.parse(token)
    letter = await repository.letter_for_link(session, parsed[0]) if parsed else None
    recipient = letter.recipient if letter else ""
    ok = parsed is not None and signer.verify(settings.secret_key, parsed[0], recipient, parsed[1])
    if letter is None or not ok:
        raise NotFound("unsubscribe link not found")
    return letter


async def _throttled(request: Request, redis: Redis, settings: NotifierSettings) -> Response | None:
    client = request.client.host if request.client else "unknown"
    wait = await retry_after(
        redis, scope="unsubscribe", client=client, limit=settings.unsubscribe_per_minute
    )
    if wait is None:
        return None
    log.warning("unsubscribe.throttled", client=client, retry_after=wait)
    answer = problem(429, "Too Many Requests", "too many unsubscribe requests; retry later")
    answer.headers["Retry-After"] = str(wait)
    return answer


@router.get(
    "/unsubscribe/{token}",
    response_class=HTMLResponse,
    summary="Unsubscribe confirmation page (nothing changes until the form is posted)",
    responses={**_HTML, **problem_responses(404, 429)},
)
async def unsubscribe_page(
    request: Request, session: Session, redis: Redis, settings: Settings, token: str = Token
) -> Response:
    if (limited := await _throttled(request, redis, settings)) is not None:
        return limited
    letter = await _letter(session, token, settings)
    html = pages.confirm(locale=letter.locale, address=letter.recipient, action=request.url.path)
    return HTMLResponse(html, headers=HEADERS)


@router.post(
    "/unsubscribe/{token}",
    response_class=HTMLResponse,
    summary="Unsubscribe (RFC 8058 one-click; idempotent)",
    description=(
        "Mail clients post `List-Unsubscribe=One-Click` (form-encoded); any body is accepted. "
        "Suppresses the letter's recipient (scope `*` for e-mail) and answers a small page; "
        "repeating it changes nothing."
    ),
    responses={**_HTML, **problem_responses(404, 429)},
)
async def unsubscribe_one_click(
    request: Request, session: Session, redis: Redis, settings: Settings, token: str = Token
) -> Response:
    if (limited := await _throttled(request, redis, settings)) is not None:
        return limited
    letter = await _letter(session, token, settings)
    new = await service.unsubscribe(session, letter)
    log.info("unsubscribe.done", letter_id=letter.id, letter=letter.letter, new=new)
    return HTMLResponse(pages.done(locale=letter.locale, address=letter.recipient), headers=HEADERS)


SuppressionId = Annotated[
    int, Path(ge=1, le=2**63 - 1, description="Suppression id (from the list).", examples=[17])
]


@operator_router.get(
    "/suppressions",
    response_model=SuppressionPage,
    summary="Suppressed addresses, newest first",
    description=(
        "Every suppression the notifier enforces at send time: unsubscribe links, the gateway's "
        "bounces / complaints / provider unsubscribes (pulled every minute), operators'. Newest "
        "first (`created_at`, then `id`, descending), keyset-paginated: pass `next_cursor` back "
        "as `cursor`. `address` is compared lower-cased; `reason` may repeat."
    ),
    responses=problem_responses(),
)
async def list_suppressions(
    session: Session,
    _: LettersReader,
    address: Annotated[str | None, Query(min_length=1, max_length=320), NoNul] = None,
    scope: Annotated[str | None, Query(min_length=1, max_length=100), NoNul] = None,
    reason: Annotated[list[SuppressionReason] | None, Query(description="Repeatable.")] = None,
    source: SuppressionSource | None = None,
    cursor: Annotated[str | None, Query(max_length=500), NoNul] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> SuppressionPage:
    query = SuppressionQuery(
        address=address,
        scope=scope,
        reasons=tuple(reason or ()),
        source=source,
    )
    return await service.list_suppressions(session, query, cursor=cursor, limit=limit)


@operator_router.post(
    "/suppressions",
    response_model=SuppressionOut,
    status_code=201,
    summary="Suppress an address by hand",
    description=(
        "Stops letters to the address in `scope` (`*` by default: every letter; a channel; a "
        "catalog letter name — anything else is 422) from the next send on: the drain and "
        "immediate sends read the list right before sending. Stored with reason `manual`, "
        "source `operator` and `detail` = `by <your token name>: <detail>`. An (address, scope) "
        "already suppressed answers 200 with the existing row, unchanged (its first reason "
        "stays). The gateway is not told: the notifier checks its own list before every send."
    ),
    responses={
        200: {"model": SuppressionOut, "description": "Already suppressed (unchanged)"},
        **problem_responses(),
    },
)
async def add_suppression(
    body: SuppressionIn, session: Session, principal: LettersWriter, response: Response
) -> SuppressionOut:
    row, added = await service.add_manual(session, body, by=principal.name)
    if not added:
        response.status_code = 200
    return row


@operator_router.delete(
    "/suppressions/{suppression_id}",
    response_model=LiftResult,
    summary="Lift a suppression (here and at the gateway)",
    description=(
        "The address may receive letters of that scope again. The gateway enforces its own "
        "list too, so its row of the same (address, scope) is deleted first, through the "
        "notifier's gateway token (which needs `admin` there); then the notifier's. If the "
        "gateway cannot be reached (503) or refuses the token (502), nothing is deleted here: "
        "retry. Repeating a lift is harmless (a row already gone at the gateway is fine); "
        "suppressions of the address in other scopes stay."
    ),
    responses=problem_responses(404, 502, 503),
)
async def lift_suppression(
    suppression_id: SuppressionId,
    session: Session,
    principal: LettersWriter,
    gateway: GatewayIntegrations,
) -> LiftResult:
    return await service.lift(session, suppression_id, gateway=gateway, by=principal.name)
