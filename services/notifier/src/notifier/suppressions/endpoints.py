"""The signed unsubscribe link: a confirmation page (GET) and RFC 8058 one-click (POST).

Public, no bearer token: the link's signature is the credential. An unknown letter, a malformed
token and a wrong signature all answer the same 404 (no oracle). Each client IP gets
``NOTIFIER_UNSUBSCRIBE_PER_MINUTE`` requests a minute, then 429 with ``Retry-After``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import HTMLResponse
from notifier_common.errors import NotFound, problem, problem_responses
from notifier_common.logging import get_logger
from sqlalchemy.ext.asyncio import AsyncSession

from notifier import unsubscribe as signer
from notifier.api.deps import Redis, Session, Settings
from notifier.models import Letter
from notifier.settings import NotifierSettings
from notifier.suppressions import pages, repository, service
from notifier.suppressions.throttle import retry_after

router = APIRouter(prefix="/v1", tags=["unsubscribe"])
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
