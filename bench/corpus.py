"""Realistic corp events (seed 004) built with the event contract's own models.

The mix covers the triggers of the 13 letters: contract.created (prepaid/offer reminders),
client.activated (activation + take-a-ride letters), client.balance_changed (low balance, limit
over), client.unblocked (financial unblock), client.created_by_offer, client.payment_received
and order.first_completed (which also cancel pending reminders).
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from notifier_common.events import (
    BalanceChanged,
    BalanceChangedPayload,
    ClientActivated,
    ClientActivatedPayload,
    ClientCreatedByOffer,
    ClientUnblocked,
    ClientUnblockedPayload,
    ContractCreated,
    ContractCreatedPayload,
    CreatedByOfferPayload,
    Envelope,
    FirstOrderCompleted,
    FirstOrderCompletedPayload,
    PaymentReceived,
    PaymentReceivedPayload,
)

#: event type -> share of the stream (balance changes dominate a billing-driven stream)
MIX: dict[str, float] = {
    "client.balance_changed": 0.35,
    "client.payment_received": 0.15,
    "contract.created": 0.12,
    "client.activated": 0.12,
    "order.first_completed": 0.10,
    "client.unblocked": 0.08,
    "client.created_by_offer": 0.08,
}


def _money(rng: random.Random, low: int, high: int) -> Decimal:
    return Decimal(rng.randint(low * 100, high * 100)) / 100


def make_event(
    rng: random.Random, kind: str, *, client_id: str, at: datetime, event_id: uuid.UUID
) -> Envelope:
    common: dict[str, Any] = {
        "id": event_id,
        "occurred_at": at,
        "producer": "corp-bench",
        "client_id": client_id,
    }
    contract = f"contract-{client_id}"
    pay_type = rng.choice(["prepaid", "prepaid", "postpaid"])
    service = rng.choice(["taxi", "taxi", "taxi", "cargo"])
    if kind == "client.balance_changed":
        old = _money(rng, 500, 5000)
        # about half of the changes cross below a low-balance threshold
        new = _money(rng, 0, 300) if rng.random() < 0.5 else _money(rng, 1000, 6000)
        payload: Any = BalanceChangedPayload(
            contract_id=contract, old_balance=old, new_balance=new, currency="RUB"
        )
        return BalanceChanged(type="client.balance_changed", payload=payload, **common)
    if kind == "client.payment_received":
        payload = PaymentReceivedPayload(amount=_money(rng, 100, 20000), contract_id=contract)
        return PaymentReceived(type="client.payment_received", payload=payload, **common)
    if kind == "contract.created":
        payload = ContractCreatedPayload(
            contract_id=contract, payment_type=pay_type, service=service, is_paid=False
        )
        return ContractCreated(type="contract.created", payload=payload, **common)
    if kind == "client.activated":
        payload = ClientActivatedPayload(payment_type=pay_type, service=service)
        return ClientActivated(type="client.activated", payload=payload, **common)
    if kind == "order.first_completed":
        payload = FirstOrderCompletedPayload(order_id=f"order-{rng.randint(1, 10**9)}")
        return FirstOrderCompleted(type="order.first_completed", payload=payload, **common)
    if kind == "client.unblocked":
        payload = ClientUnblockedPayload(reason="balance_restored")
        return ClientUnblocked(type="client.unblocked", payload=payload, **common)
    if kind == "client.created_by_offer":
        payload = CreatedByOfferPayload(offer_id=f"offer-{rng.randint(1, 1000)}")
        return ClientCreatedByOffer(type="client.created_by_offer", payload=payload, **common)
    raise ValueError(kind)


def events(
    count: int, *, seed: int = 7, clients: int = 5000, kinds: dict[str, float] | None = None
) -> Iterator[Envelope]:
    """``count`` events over ``clients`` clients, types drawn from ``kinds`` (default MIX)."""
    rng = random.Random(seed)
    mix = kinds or MIX
    names, weights = list(mix), list(mix.values())
    start = datetime.now(UTC) - timedelta(minutes=5)
    for i in range(count):
        kind = rng.choices(names, weights)[0]
        yield make_event(
            rng,
            kind,
            client_id=f"client-{rng.randint(1, clients)}",
            at=start + timedelta(milliseconds=i),
            event_id=uuid.UUID(int=rng.getrandbits(128), version=4),
        )


def bodies(count: int, **kwargs: Any) -> list[dict[str, Any]]:
    """Events as JSON-ready dicts (what producers POST and what the queue job carries)."""
    return [e.model_dump(mode="json") for e in events(count, **kwargs)]
