"""Pull sync from the gateway (docs/decisions/0013-notifier-suppressions.md).

Each feed keeps a watermark in ``notifier.sync_watermarks``: the newest timestamp applied. A run
reads from (watermark - overlap), page after page, and in one transaction per page applies the
rows and moves the watermark. Applying a row twice is harmless (upsert / newest status wins), so
the overlap only costs a few re-read rows and covers rows the gateway committed late.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol, TypeVar

from notifier_common.db import session_scope
from notifier_common.logging import get_logger
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from notifier.models import SuppressionReason, SuppressionSource
from notifier.suppressions import repository
from notifier.suppressions.feed import GatewayFeeds, RemoteStatusChange, RemoteSuppression
from notifier.suppressions.repository import NewSuppression, Replayed, StatusChange

log = get_logger("notifier.suppressions.sync")

SUPPRESSIONS_FEED = "gateway.suppressions"
STATUS_FEED = "gateway.status_changes"
DELIVERY_STATUSES = frozenset({"delivered", "bounced", "complained"})
_REASONS = {
    "hard_bounce": SuppressionReason.hard_bounce,
    "complaint": SuppressionReason.complaint,
    "unsubscribe": SuppressionReason.unsubscribed,
    "unsubscribed": SuppressionReason.unsubscribed,
}

Item = TypeVar("Item")


@dataclass(frozen=True)
class SyncConfig:
    page_size: int = 1000
    max_pages: int = 50
    overlap: timedelta = timedelta(seconds=60)


@dataclass
class SyncReport:
    pages: int = 0
    read: int = 0
    applied: int = 0
    watermark: datetime | None = None


class Fetch(Protocol[Item]):
    def __call__(
        self, *, since: datetime | None, cursor: str | None, limit: int
    ) -> Awaitable[tuple[list[Item], str | None]]: ...


async def pull(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    feed: str,
    fetch: Fetch[Item],
    apply: Callable[[AsyncSession, Sequence[Item]], Awaitable[int]],
    stamp: Callable[[Item], datetime],
    config: SyncConfig,
) -> SyncReport:
    """Read one feed from its watermark; raises ``FeedUnavailable`` (pages applied so far stay)."""
    async with sessionmaker() as session:
        mark = await repository.watermark(session, feed)
    since = mark - config.overlap if mark is not None else None
    report = SyncReport(watermark=mark)
    cursor: str | None = None
    for _ in range(config.max_pages):
        items, cursor = await fetch(since=since, cursor=cursor, limit=config.page_size)
        report.pages += 1
        report.read += len(items)
        if items:
            newest = max(stamp(i) for i in items)
            async with session_scope(sessionmaker) as session:
                report.applied += await apply(session, items)
                await repository.advance_watermark(session, feed, newest)
            report.watermark = max(newest, report.watermark or newest)
        if cursor is None:
            break
    return report


async def apply_suppressions(session: AsyncSession, items: Sequence[RemoteSuppression]) -> int:
    rows = [
        NewSuppression(
            address=i.address,
            scope=i.scope,
            reason=_REASONS.get(i.reason, SuppressionReason.manual),
            source=SuppressionSource.gateway,
            detail=f"{i.source}: {i.reason}" + (f": {i.detail}" if i.detail else ""),
        )
        for i in items
    ]
    return await repository.add_many(session, rows)


def letter_id_of(idempotency_key: str) -> int | None:
    """Our letters are sent as ``letter-<id>`` (letters/drain.py); other keys are not ours."""
    prefix, _, rest = idempotency_key.partition("-")
    return int(rest) if prefix == "letter" and rest.isascii() and rest.isdigit() else None


#: a replayed message's current status -> (its letter's status, the attempt's outcome)
_REPLAYED_AS = {
    "accepted": ("sent", "ok"),
    "delivered": ("sent", "ok"),
    "bounced": ("sent", "ok"),
    "complained": ("sent", "ok"),
    "permanent_error": ("failed", "permanent"),
    "transient_error": ("scheduled", "transient"),
    "skipped": ("skipped", "skipped"),
}


async def apply_status_changes(session: AsyncSession, items: Sequence[RemoteStatusChange]) -> int:
    changes = [
        StatusChange(letter_id, i.status, i.status_changed_at or i.received_at)
        for i in items
        if i.status in DELIVERY_STATUSES and (letter_id := letter_id_of(i.idempotency_key))
    ]
    replays = [
        replayed(letter_id, i)
        for i in items
        if i.event == REPLAYED
        and i.status in _REPLAYED_AS
        and (letter_id := letter_id_of(i.idempotency_key))
    ]
    # a replay first: a letter sent by it may be delivered (or bounced) in the same page
    moved = await repository.reflect_replays(session, replays)
    if moved:
        log.info("letters.replayed_by_gateway", letters=len(moved))
    await repository.set_delivery_status(session, changes)
    return len(changes) + len(moved)


REPLAYED = "replayed"


def replayed(letter_id: int, item: RemoteStatusChange) -> Replayed:
    status, outcome = _REPLAYED_AS[item.status]
    error = None
    if status in ("failed", "scheduled"):
        error = f"{item.code}: {item.reason}" if item.code or item.reason else item.status
    return Replayed(
        letter_id=letter_id,
        status=status,
        outcome=outcome,
        at=item.status_changed_at or item.received_at,
        provider=item.provider,
        provider_message_id=item.provider_message_id,
        code=item.code if status != "sent" else None,
        error=error[:2000] if error else None,
    )


async def sync_suppressions(
    sessionmaker: async_sessionmaker[AsyncSession], feeds: GatewayFeeds, config: SyncConfig
) -> SyncReport:
    report = await pull(
        sessionmaker,
        feed=SUPPRESSIONS_FEED,
        fetch=feeds.suppressions,
        apply=apply_suppressions,
        stamp=lambda i: i.created_at,
        config=config,
    )
    if report.read:
        log.info("suppressions.synced", read=report.read, added=report.applied, pages=report.pages)
    return report


async def sync_delivery_statuses(
    sessionmaker: async_sessionmaker[AsyncSession], feeds: GatewayFeeds, config: SyncConfig
) -> SyncReport:
    report = await pull(
        sessionmaker,
        feed=STATUS_FEED,
        fetch=feeds.status_changes,
        apply=apply_status_changes,
        stamp=lambda i: i.received_at,
        config=config,
    )
    if report.read:
        log.info("letters.delivery_synced", read=report.read, letters=report.applied)
    return report
