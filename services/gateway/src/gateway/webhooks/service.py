"""Apply provider webhook events: store them once, update message statuses, add suppressions."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from notifier_common.logging import get_logger
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.messages.dispatch import normalize_address
from gateway.metrics import WEBHOOK_EVENTS
from gateway.models import ALL_SCOPES, MessageStatus
from gateway.suppressions import repository as suppressions
from gateway.webhooks import repository
from gateway.webhooks.schemas import NeutralEvent, WebhookResultOut

log = get_logger("gateway.webhooks")

_STATUS = {
    "delivered": MessageStatus.delivered,
    "bounced": MessageStatus.bounced,
    "complained": MessageStatus.complained,
}


def _suppression(
    event: NeutralEvent, address: str, provider: str
) -> suppressions.NewSuppression | None:
    if event.type == "bounced" and event.bounce_type != "soft":
        reason, scope = "hard_bounce", ALL_SCOPES
    elif event.type == "complained":
        reason, scope = "complaint", ALL_SCOPES
    elif event.type == "unsubscribed":
        reason, scope = "unsubscribe", event.scope or ALL_SCOPES
    else:
        return None
    return suppressions.NewSuppression(
        address=address, scope=scope, reason=reason, source=provider, detail=event.reason
    )


def _dedupe(events: Sequence[NeutralEvent]) -> list[NeutralEvent]:
    seen: set[str] = set()
    out = []
    for event in events:
        if event.id is not None and event.id in seen:
            continue
        if event.id is not None:
            seen.add(event.id)
        out.append(event)
    return out


async def apply(
    session: AsyncSession, provider: str, events: Sequence[NeutralEvent], *, ignored: int
) -> WebhookResultOut:
    unique = _dedupe(events)
    known = await repository.messages_by_provider_id(
        session, provider, {e.provider_message_id for e in unique if e.provider_message_id}
    )
    rows: list[dict[str, Any]] = []
    addresses: list[str | None] = []
    message_ids: list[uuid.UUID | None] = []
    for event in unique:
        message_id, recipient = known.get(event.provider_message_id or "", (None, None))
        message_ids.append(message_id)
        address = event.address or recipient
        addresses.append(normalize_address(address)[:320] if address else None)
        rows.append(
            {
                "provider": provider,
                "external_id": event.id,
                "type": event.type,
                "bounce_type": event.bounce_type,
                "provider_message_id": event.provider_message_id,
                "message_id": message_id,
                "address": addresses[-1],
                "scope": event.scope,
                "reason": event.reason,
                "payload": event.model_dump(mode="json", exclude_none=True),
                "occurred_at": event.occurred_at,
            }
        )
    new = await repository.insert_events(session, rows)
    moves: dict[MessageStatus, set[uuid.UUID]] = defaultdict(set)
    wanted = []
    for i in new:
        event, message_id, address = unique[i], message_ids[i], addresses[i]
        WEBHOOK_EVENTS.labels(provider, event.type).inc()
        soft = event.type == "bounced" and event.bounce_type == "soft"
        if message_id is not None and event.type in _STATUS and not soft:
            moves[_STATUS[event.type]].add(message_id)
        if address and (suppression := _suppression(event, address, provider)):
            wanted.append(suppression)
    updated = 0
    for status in (MessageStatus.delivered, MessageStatus.bounced, MessageStatus.complained):
        updated += await repository.set_status(session, moves[status], status)
    added = await suppressions.add_many(session, wanted)
    result = WebhookResultOut(
        received=len(events),
        ignored=ignored,
        stored=len(new),
        duplicates=len(events) - len(new),
        messages_updated=updated,
        suppressions_added=added,
    )
    log.info("gateway.webhook_applied", provider=provider, **result.model_dump())
    return result
