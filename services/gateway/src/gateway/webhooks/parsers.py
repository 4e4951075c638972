"""Body parsers by format: each turns a provider's webhook body into neutral events.

``neutral``: ``{"events": [NeutralEvent, ...]}`` or one NeutralEvent.
``esp``: an event-webhook array in the style ESPs post (SendGrid-like: ``event``, ``email``,
``sg_event_id``, ``sg_message_id`` / ``message_id`` / ``dispatch_id``, ``timestamp``, ``type``).
``smtp``: bounce-processor records (Postmark-like: ``RecordType``, ``Type``, ``Email``,
``MessageID``, ``ID``), one object or an array.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from gateway.webhooks.schemas import NeutralBody, NeutralEvent


class UnreadableBody(ValueError):
    """The body does not match the provider's webhook format."""


Parsed = tuple[list[NeutralEvent], int]  # events, count of ignored entries


def _load(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise UnreadableBody(f"body is not JSON: {exc}") from exc


def _objects(data: Any) -> list[dict[str, Any]]:
    items = data if isinstance(data, list) else [data]
    if not items or not all(isinstance(i, dict) for i in items):
        raise UnreadableBody("expected a JSON object or a non-empty array of objects")
    return items


def parse_neutral(raw: bytes) -> Parsed:
    data = _load(raw)
    try:
        if isinstance(data, dict) and "events" in data:
            return NeutralBody.model_validate(data).events, 0
        return [NeutralEvent.model_validate(data)], 0
    except ValidationError as exc:
        raise UnreadableBody(str(exc)) from exc


def _unix(value: Any) -> datetime | None:
    return datetime.fromtimestamp(value, UTC) if isinstance(value, int | float) else None


def _esp_event(item: dict[str, Any]) -> NeutralEvent | None:
    kind = item.get("event")
    common: dict[str, Any] = {
        "id": item.get("sg_event_id") or item.get("event_id"),
        "provider_message_id": item.get("message_id")
        or item.get("dispatch_id")
        or item.get("sg_message_id"),
        "address": item.get("email"),
        "reason": item.get("reason"),
        "occurred_at": _unix(item.get("timestamp")),
    }
    if kind == "delivered":
        return NeutralEvent(type="delivered", **common)
    if kind == "bounce":
        hard = item.get("type", "bounce") != "blocked"
        return NeutralEvent(type="bounced", bounce_type="hard" if hard else "soft", **common)
    if kind == "spamreport":
        return NeutralEvent(type="complained", **common)
    if kind == "unsubscribe":
        return NeutralEvent(type="unsubscribed", **common)
    if kind == "group_unsubscribe" and item.get("asm_group_id") is not None:
        return NeutralEvent(type="unsubscribed", scope=f"group:{item['asm_group_id']}", **common)
    return None


def _smtp_event(item: dict[str, Any]) -> NeutralEvent | None:
    kind = item.get("RecordType")
    common: dict[str, Any] = {
        "id": str(item["ID"]) if item.get("ID") is not None else None,
        "provider_message_id": item.get("MessageID"),
        "address": item.get("Email") or item.get("Recipient"),
        "reason": item.get("Description") or item.get("Details"),
    }
    if kind == "Delivery":
        return NeutralEvent(type="delivered", occurred_at=item.get("DeliveredAt"), **common)
    if kind == "Bounce":
        hard = item.get("Type") in ("HardBounce", "BadEmailAddress", "ManuallyDeactivated")
        return NeutralEvent(
            type="bounced",
            bounce_type="hard" if hard else "soft",
            occurred_at=item.get("BouncedAt"),
            **common,
        )
    if kind == "SpamComplaint":
        return NeutralEvent(type="complained", occurred_at=item.get("BouncedAt"), **common)
    if kind == "SubscriptionChange" and item.get("SuppressSending"):
        return NeutralEvent(type="unsubscribed", occurred_at=item.get("ChangedAt"), **common)
    return None


def _adapter(convert: Callable[[dict[str, Any]], NeutralEvent | None]) -> Callable[[bytes], Parsed]:
    def parse(raw: bytes) -> Parsed:
        events: list[NeutralEvent] = []
        ignored = 0
        for item in _objects(_load(raw)):
            try:
                event = convert(item)
            except (ValidationError, TypeError, ValueError) as exc:
                raise UnreadableBody(f"unreadable event: {exc}") from exc
            if event is None:
                ignored += 1
            else:
                events.append(event)
        return events, ignored

    return parse


PARSERS: dict[str, Callable[[bytes], Parsed]] = {
    "neutral": parse_neutral,
    "esp": _adapter(_esp_event),
    "smtp": _adapter(_smtp_event),
}


def parse(format_: str, raw: bytes) -> Parsed:
    parser = PARSERS.get(format_)
    if parser is None:
        raise UnreadableBody(f"unknown webhook format {format_!r}; one of {sorted(PARSERS)}")
    return parser(raw)
