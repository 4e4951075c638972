"""Builders of valid event bodies for tests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any


def event_body(
    type_: str = "client.balance_changed",
    *,
    client_id: str = "client-1",
    payload: dict[str, Any] | None = None,
    occurred_at: datetime | None = None,
    event_id: uuid.UUID | None = None,
) -> dict[str, Any]:
    defaults: dict[str, dict[str, Any]] = {
        "client.balance_changed": {"old_balance": "1000.00", "new_balance": "50.00"},
        "contract.created": {"contract_id": "ct-1", "payment_type": "prepaid"},
        "contract.closed": {"contract_id": "ct-1"},
        "client.payment_received": {"amount": "500.00"},
        "client.created_by_offer": {},
        "client.activated": {"payment_type": "prepaid", "service": "taxi"},
        "order.first_completed": {"order_id": "o-1"},
        "client.unblocked": {},
    }
    return {
        "id": str(event_id or uuid.uuid4()),
        "type": type_,
        "version": 1,
        "occurred_at": (occurred_at or datetime.now(UTC)).isoformat(),
        "producer": "tests",
        "client_id": client_id,
        "payload": payload if payload is not None else defaults.get(type_, {}),
    }
