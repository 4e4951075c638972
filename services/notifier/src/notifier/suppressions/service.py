"""Decisions about suppressions: who is suppressed for which letter, what a link unsubscribes,
and the operator's list / add / lift (decision 0108). Only ``flush()``: the request dependency
(or the CLI's ``session_scope``) owns the transaction."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache
from typing import Protocol

from notifier_common.errors import NotFound, Unprocessable
from notifier_common.logging import get_logger, mask_email
from notifier_common.pagination import decode_keyset_cursor, encode_cursor
from sqlalchemy.ext.asyncio import AsyncSession

from notifier.letters.catalog import ACTION_CHANNELS
from notifier.models import ALL_SCOPES, Letter, SuppressionReason, SuppressionSource
from notifier.suppressions import repository
from notifier.suppressions.repository import NewSuppression, SuppressionQuery, normal_address
from notifier.suppressions.schemas import (
    LiftResult,
    SuppressionIn,
    SuppressionOut,
    SuppressionPage,
)

log = get_logger("notifier.suppressions")


class Addressed(Protocol):
    @property
    def id(self) -> int: ...
    @property
    def letter(self) -> str: ...
    @property
    def channel(self) -> str: ...
    @property
    def recipient(self) -> str: ...


def scopes_for(letter: Addressed) -> tuple[str, ...]:
    """A letter is stopped by a suppression in scope ``*``, its channel, or its letter name;
    an action on a person's record (a newsletter (un)subscription, a CRM update) by none: an
    unsubscribed or bounced address must still be unsubscribed, moved or marked as spam (the
    gateway's rule too)."""
    if letter.channel in ACTION_CHANNELS:
        return ()
    return (ALL_SCOPES, letter.channel, letter.letter)


def link_scope(letter: Letter) -> str:
    """What the signed link unsubscribes from: everything for e-mail (the link's address gets
    nothing more from us), the channel otherwise. See docs/decisions/0013."""
    return ALL_SCOPES if letter.channel == "email" else letter.channel


async def suppressed(session: AsyncSession, letters: Sequence[Addressed]) -> dict[int, str]:
    """``{letter_id: skip reason}`` for suppressed recipients; one query for the whole batch."""
    found = await repository.scopes_of(session, [normal_address(x.recipient) for x in letters])
    out: dict[int, str] = {}
    for x in letters:
        reason = _match(found.get(normal_address(x.recipient), {}), scopes_for(x))
        if reason is not None:
            out[x.id] = f"suppressed ({reason.value})"
    return out


def _match(
    scopes: Mapping[str, SuppressionReason], wanted: Sequence[str]
) -> SuppressionReason | None:
    for scope in wanted:
        if scope in scopes:
            return scopes[scope]
    return None


async def unsubscribe(session: AsyncSession, letter: Letter) -> bool:
    """Suppress the letter's recipient (idempotent). True when the row is new."""
    row = NewSuppression(
        address=normal_address(letter.recipient),
        scope=link_scope(letter),
        reason=SuppressionReason.unsubscribed,
        source=SuppressionSource.link,
        detail=f"letter {letter.id} ({letter.letter})",
    )
    return await repository.add_many(session, [row]) == 1


class GatewaySuppressions(Protocol):
    """The gateway's side of a lift (``notifier.config.integrations.Integrations``)."""

    async def lift_suppression(self, *, address: str, scope: str) -> int: ...


@cache
def operator_scopes() -> frozenset[str]:
    """Scopes a suppression stops a letter in: ``*``, the channels and names of the catalog's
    letters that suppressions apply to (not the action channels, see :func:`scopes_for`)."""
    from notifier.letters.definitions import LETTERS

    stoppable = [spec for spec in LETTERS if spec.channel not in ACTION_CHANNELS]
    return frozenset({ALL_SCOPES, *(s.channel for s in stoppable), *(s.name for s in stoppable)})


async def list_suppressions(
    session: AsyncSession, query: SuppressionQuery, *, cursor: str | None, limit: int
) -> SuppressionPage:
    after = decode_keyset_cursor(cursor, int)
    rows = await repository.list_suppressions(session, query, after=after, limit=limit + 1)
    page = rows[:limit]
    next_cursor = encode_cursor(page[-1].created_at, page[-1].id) if len(rows) > limit else None
    items = [SuppressionOut.model_validate(r) for r in page]
    return SuppressionPage(items=items, next_cursor=next_cursor)


async def add_manual(
    session: AsyncSession, body: SuppressionIn, *, by: str
) -> tuple[SuppressionOut, bool]:
    """Suppress by hand (reason ``manual``, source ``operator``, ``detail`` = who and why).
    An existing (address, scope) is returned unchanged; True when the row is new."""
    if body.scope not in operator_scopes():
        raise Unprocessable(
            f"scope {body.scope!r} stops no letter",
            errors=[
                {
                    "loc": "body.scope",
                    "msg": "`*`, a channel (email, esp) or a catalog letter name "
                    "(GET /v1/config/letters)",
                    "type": "value_error",
                }
            ],
        )
    detail = f"by {by}: {body.detail}" if body.detail else f"by {by}"
    new = NewSuppression(
        address=body.address,
        scope=body.scope,
        reason=SuppressionReason.manual,
        source=SuppressionSource.operator,
        detail=detail,
    )
    row, added = await repository.add_or_get(session, new)
    if added:
        log.info(
            "suppressions.added",
            suppression_id=row.id,
            address=mask_email(row.address),
            scope=row.scope,
            by=by,
        )
    return SuppressionOut.model_validate(row), added


async def lift(
    session: AsyncSession, suppression_id: int, *, gateway: GatewaySuppressions, by: str
) -> LiftResult:
    """Lift at the gateway first (it enforces its own list at send time), then here. A gateway
    error propagates before anything is deleted here, so the operator simply retries."""
    row = await repository.get_suppression(session, suppression_id)
    if row is None:
        raise NotFound(f"suppression {suppression_id} does not exist")
    lifted = SuppressionOut.model_validate(row)
    at_gateway = await gateway.lift_suppression(address=row.address, scope=row.scope)
    await repository.delete_suppression(session, suppression_id)
    log.info(
        "suppressions.lifted",
        suppression_id=lifted.id,
        address=mask_email(lifted.address),
        scope=lifted.scope,
        reason=lifted.reason.value,
        source=lifted.source.value,
        gateway_lifted=at_gateway,
        by=by,
    )
    return LiftResult(suppression=lifted, gateway_lifted=at_gateway)
