"""Decisions about suppressions: who is suppressed for which letter, what a link unsubscribes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from notifier.letters.catalog import ACTION_CHANNELS
from notifier.models import ALL_SCOPES, Letter, SuppressionReason, SuppressionSource
from notifier.suppressions import repository
from notifier.suppressions.repository import NewSuppression


class Addressed(Protocol):
    @property
    def id(self) -> int: ...
    @property
    def letter(self) -> str: ...
    @property
    def channel(self) -> str: ...
    @property
    def recipient(self) -> str: ...


def normalize(address: str) -> str:
    return address.strip().lower()


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
    found = await repository.scopes_of(session, [normalize(x.recipient) for x in letters])
    out: dict[int, str] = {}
    for x in letters:
        reason = _match(found.get(normalize(x.recipient), {}), scopes_for(x))
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
        address=normalize(letter.recipient),
        scope=link_scope(letter),
        reason=SuppressionReason.unsubscribed,
        source=SuppressionSource.link,
        detail=f"letter {letter.id} ({letter.letter})",
    )
    return await repository.add_many(session, [row]) == 1
