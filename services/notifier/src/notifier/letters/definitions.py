"""The 13 corp letters of seed 004, with the rules of issue 4, and the integration letters of
seeds 000-002 (``integrations``). Every number is a parameter."""

from __future__ import annotations

from datetime import time, timedelta
from decimal import Decimal

from notifier_common.events import (
    AnyEvent,
    BalanceChanged,
    ClientActivated,
    ContractCreated,
)
from pydantic import Field

from notifier.letters.catalog import (
    Catalog,
    Crossing,
    Duration,
    Expiry,
    Facts,
    LetterParams,
    LetterSpec,
    Recheck,
    SendFacts,
    Trigger,
)
from notifier.letters.integrations import INTEGRATION_LETTERS
from notifier.letters.timing import After, AtLocalTime, Immediately, Timing

# ---- parameters -------------------------------------------------------------------------


class ReminderParams(LetterParams):
    delay: Duration = Field(
        timedelta(days=1), description="After the contract was created (0 or more; 0 = at once)."
    )
    expires_after: Expiry | None = timedelta(days=2)


class FirstRemindParams(ReminderParams):
    delay: Duration = timedelta(days=1)


class SecondRemindParams(ReminderParams):
    delay: Duration = timedelta(days=3)


class ThirdRemindParams(ReminderParams):
    delay: Duration = timedelta(days=7)


class OfferRemindParams(ReminderParams):
    delay: Duration = Field(
        timedelta(days=7),
        description="After the offer client was created (0 or more; 0 = at once).",
    )


class TakeARideParams(LetterParams):
    days: int = Field(3, ge=0, le=365, description="Calendar days after the activation.")
    at: time = Field(time(11, 0), description="Recipient's local wall-clock time.")
    expires_after: Expiry | None = timedelta(days=1)


class FirstTakeARideParams(TakeARideParams):
    days: int = Field(3, ge=0, le=365)


class SecondTakeARideParams(TakeARideParams):
    days: int = Field(10, ge=0, le=365)


class ImmediateParams(LetterParams):
    """Service letters: sent right away, also at night (switch on quiet hours per letter)."""

    respect_quiet_hours: bool = False
    expires_after: Expiry | None = timedelta(days=1)


class LowBalanceParams(ImmediateParams):
    min_interval: Duration = Field(
        timedelta(hours=24),
        description="At most one LowBalanceNotice per client per interval (0 or more; 0 = no cap).",
    )


def _after(params: ReminderParams) -> Timing:
    return After(params.delay)


def _at_local(params: TakeARideParams) -> Timing:
    return AtLocalTime(days=params.days, at=params.at)


def _now(_params: LetterParams) -> Timing:
    return Immediately()


# ---- predicates and conditions ------------------------------------------------------------


def _prepaid_unpaid_contract(event: AnyEvent) -> bool:
    return (
        isinstance(event, ContractCreated)
        and event.payload.payment_type == "prepaid"
        and not event.payload.is_paid
    )


def _activated(*, payment_type: str | None = None, service: str | None = None) -> Trigger:
    def when(event: AnyEvent) -> bool:
        if not isinstance(event, ClientActivated):
            return False
        return (payment_type is None or event.payload.payment_type == payment_type) and (
            service is None or event.payload.service == service
        )

    label = ", ".join(x for x in (payment_type, service) if x)
    return Trigger("client.activated", when, label)


def _contract_unpaid_reason(facts: SendFacts) -> str | None:
    contract = facts.contract
    if contract is None:
        return "contract unknown"
    if contract.status == "closed":
        return "contract closed"
    if contract.is_paid:
        return "contract already paid"
    return None


def _unpaid_at_trigger(facts: Facts, _params: LetterParams) -> str | None:
    return _contract_unpaid_reason(SendFacts(contract=facts.contract))


def _contract_key(facts: Facts) -> str:
    assert isinstance(facts.event, ContractCreated)
    return f"contract:{facts.event.payload.contract_id}"


def _client_key(facts: Facts) -> str:
    return f"client:{facts.event.client_id}"


def _limit(facts: Facts) -> Decimal:
    assert facts.balance is not None
    return facts.balance.limit


def _threshold(facts: Facts) -> Decimal:
    assert facts.balance is not None
    return facts.balance.threshold


def _min_interval(params: LowBalanceParams) -> timedelta | None:
    return params.min_interval


BALANCE_CHANGED = Trigger("client.balance_changed", lambda e: isinstance(e, BalanceChanged))

# ---- the letters --------------------------------------------------------------------------


def _prepaid_reminder(name: str, params: type[ReminderParams]) -> LetterSpec[ReminderParams]:
    return LetterSpec(
        name=name,
        params=params,
        triggers=(Trigger("contract.created", _prepaid_unpaid_contract, "prepaid, not paid"),),
        timing=_after,
        enrichments=frozenset({"client", "contract"}),
        condition=_unpaid_at_trigger,
        recheck=Recheck(needs=frozenset({"contract"}), check=_contract_unpaid_reason),
        cancelled_by={"client.payment_received": "client", "contract.closed": "contract"},
        dedup=_contract_key,
        sequence="prepaid-reminders",
        description="Reminds a prepaid client to pay its new contract.",
    )


def _take_a_ride(
    name: str, payment_type: str, params: type[TakeARideParams]
) -> LetterSpec[TakeARideParams]:
    return LetterSpec(
        name=name,
        params=params,
        triggers=(_activated(payment_type=payment_type),),
        timing=_at_local,
        cancelled_by={"order.first_completed": "client"},
        dedup=_client_key,
        sequence=f"{payment_type}-onboarding",
        description="Onboarding nudge until the first order is completed.",
    )


LETTERS = Catalog(
    [
        _prepaid_reminder("FirstRemindPrepaidNotice", FirstRemindParams),
        _prepaid_reminder("SecondRemindPrepaidNotice", SecondRemindParams),
        _prepaid_reminder("ThirdRemindPrepaidNotice", ThirdRemindParams),
        LetterSpec(
            name="ThirdRemindOfferNotice",
            params=OfferRemindParams,
            triggers=(Trigger("client.created_by_offer"),),
            timing=_after,
            cancelled_by={"client.activated": "client"},
            dedup=_client_key,
            description="Reminds an offer client to activate.",
        ),
        _take_a_ride("PrepaidFirstTakeARideNotice", "prepaid", FirstTakeARideParams),
        _take_a_ride("PrepaidSecondTakeARideNotice", "prepaid", SecondTakeARideParams),
        _take_a_ride("PostpaidFirstTakeARideNotice", "postpaid", FirstTakeARideParams),
        _take_a_ride("PostpaidSecondTakeARideNotice", "postpaid", SecondTakeARideParams),
        LetterSpec(
            name="ActivateClientNotice",
            params=ImmediateParams,
            triggers=(_activated(service="taxi"),),
            timing=_now,
            description="Welcome letter of an activated taxi client.",
        ),
        LetterSpec(
            name="CargoActivateClientNotice",
            params=ImmediateParams,
            triggers=(_activated(service="cargo"),),
            timing=_now,
            description="Welcome letter of an activated cargo client.",
        ),
        LetterSpec(
            name="LimitIsOverNotice",
            params=ImmediateParams,
            triggers=(BALANCE_CHANGED,),
            timing=_now,
            enrichments=frozenset({"client", "balance"}),
            frequency=Crossing(level=_limit, inclusive=True),
            description="The balance crossed to the limit or below (once per crossing).",
        ),
        LetterSpec(
            name="FinancialUnblockNotice",
            params=ImmediateParams,
            triggers=(Trigger("client.unblocked"),),
            timing=_now,
            description="The client was unblocked.",
        ),
        LetterSpec(
            name="LowBalanceNotice",
            params=LowBalanceParams,
            triggers=(BALANCE_CHANGED,),
            timing=_now,
            enrichments=frozenset({"client", "balance"}),
            frequency=Crossing(level=_threshold, inclusive=False, min_interval=_min_interval),
            description="The balance fell below the client's threshold (max once per 24 h).",
        ),
        *INTEGRATION_LETTERS,
    ]
)
