"""The event contract: envelope + typed payloads in a discriminated union keyed by ``type``.

Producers choose ``id`` (the idempotency key). Unknown fields are rejected everywhere. A new
version of a type is a new payload model with ``version: Literal[2]``; see
docs/decisions/0003-event-contract.md.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

PaymentType = Literal["prepaid", "postpaid"]
Service = Literal["taxi", "cargo"]
Money = Annotated[Decimal, Field(max_digits=18, decimal_places=2)]


class Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Envelope(BaseModel):
    """Fields every event carries. Subclasses pin ``type`` and ``payload``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: UUID = Field(description="Chosen by the producer; the idempotency key of the event.")
    type: str
    version: Literal[1] = 1
    occurred_at: AwareDatetime = Field(description="When it happened at the producer (with tz).")
    producer: str = Field(min_length=1, max_length=100, examples=["corp-billing"])
    client_id: str = Field(min_length=1, max_length=100, description="The subject of the event.")
    payload: Payload
    trace_id: str | None = Field(None, max_length=200)


# ---- corp domain (seed 004) -------------------------------------------------------------


class ContractCreatedPayload(Payload):
    contract_id: str = Field(min_length=1)
    payment_type: PaymentType
    service: Service = "taxi"
    is_paid: bool = False


class ContractCreated(Envelope):
    type: Literal["contract.created"]
    payload: ContractCreatedPayload


class ContractClosedPayload(Payload):
    contract_id: str = Field(min_length=1)


class ContractClosed(Envelope):
    type: Literal["contract.closed"]
    payload: ContractClosedPayload


class PaymentReceivedPayload(Payload):
    amount: Money = Field(gt=0)
    currency: str = Field("RUB", min_length=3, max_length=3)
    contract_id: str | None = None


class PaymentReceived(Envelope):
    type: Literal["client.payment_received"]
    payload: PaymentReceivedPayload


class CreatedByOfferPayload(Payload):
    offer_id: str | None = None


class ClientCreatedByOffer(Envelope):
    type: Literal["client.created_by_offer"]
    payload: CreatedByOfferPayload


class ClientActivatedPayload(Payload):
    payment_type: PaymentType
    service: Service = "taxi"


class ClientActivated(Envelope):
    type: Literal["client.activated"]
    payload: ClientActivatedPayload


class FirstOrderCompletedPayload(Payload):
    order_id: str = Field(min_length=1)


class FirstOrderCompleted(Envelope):
    type: Literal["order.first_completed"]
    payload: FirstOrderCompletedPayload


class BalanceChangedPayload(Payload):
    contract_id: str | None = None
    old_balance: Money
    new_balance: Money
    currency: str = Field("RUB", min_length=3, max_length=3)


class BalanceChanged(Envelope):
    type: Literal["client.balance_changed"]
    payload: BalanceChangedPayload


class ClientUnblockedPayload(Payload):
    reason: str | None = None


class ClientUnblocked(Envelope):
    type: Literal["client.unblocked"]
    payload: ClientUnblockedPayload


# ---- user lifecycle (seeds 000, 001) -------------------------------------------------------


class UserSignedUpPayload(Payload):
    email: str = Field(min_length=3, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")
    name: str | None = None
    language: str = "en"
    mailing_lists: list[str] = Field(default_factory=list)


class UserSignedUp(Envelope):
    type: Literal["user.signed_up"]
    payload: UserSignedUpPayload


class UserEmailChangedPayload(Payload):
    old_email: str = Field(min_length=3, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")
    new_email: str = Field(min_length=3, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")


class UserEmailChanged(Envelope):
    type: Literal["user.email_changed"]
    payload: UserEmailChangedPayload


class UserMarkedSpamPayload(Payload):
    email: str = Field(min_length=3, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")


class UserMarkedSpam(Envelope):
    type: Literal["user.marked_spam"]
    payload: UserMarkedSpamPayload


class GroupMembershipPayload(Payload):
    email: str = Field(min_length=3, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")
    group: str = Field(min_length=1)


class UserJoinedGroup(Envelope):
    type: Literal["user.group_joined"]
    payload: GroupMembershipPayload


class UserLeftGroup(Envelope):
    type: Literal["user.group_left"]
    payload: GroupMembershipPayload


# ---- licenses (seed 002) --------------------------------------------------------------------


class LicenseAllocationPayload(Payload):
    subscription_plan_id: str = Field(min_length=1)
    allocated: int = Field(ge=0)
    total: int = Field(gt=0)


class LicenseAllocationChanged(Envelope):
    type: Literal["license.allocation_changed"]
    payload: LicenseAllocationPayload


class LicenseAdminPayload(Payload):
    """``client_id`` is the admin's enterprise-customer-user id (one per enterprise the user
    administers, seed 002)."""

    email: str = Field(min_length=3, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")
    enterprise_customer_id: str = Field(min_length=1, max_length=100)
    name: str | None = Field(None, max_length=200)


class LicenseAdminActivated(Envelope):
    type: Literal["license.admin_activated"]
    payload: LicenseAdminPayload


class LicenseAdminDeactivated(Envelope):
    type: Literal["license.admin_deactivated"]
    payload: LicenseAdminPayload


AnyEvent = Annotated[
    ContractCreated
    | ContractClosed
    | PaymentReceived
    | ClientCreatedByOffer
    | ClientActivated
    | FirstOrderCompleted
    | BalanceChanged
    | ClientUnblocked
    | UserSignedUp
    | UserEmailChanged
    | UserMarkedSpam
    | UserJoinedGroup
    | UserLeftGroup
    | LicenseAllocationChanged
    | LicenseAdminActivated
    | LicenseAdminDeactivated,
    Field(discriminator="type"),
]

EVENT_ADAPTER: TypeAdapter[AnyEvent] = TypeAdapter(AnyEvent)

EVENT_TYPES: dict[str, type[Envelope]] = {
    cls.model_fields["type"].annotation.__args__[0]: cls  # type: ignore[union-attr]
    for cls in Envelope.__subclasses__()
}


def parse_event(data: Any) -> AnyEvent:
    """Validate a JSON-like object into its typed event. Raises :class:`ValidationError`."""
    return EVENT_ADAPTER.validate_python(data)


def describe_errors(exc: ValidationError) -> list[dict[str, str]]:
    """Flatten pydantic errors to ``[{"loc": "payload.amount", "msg": ..., "type": ...}]``."""
    out = []
    for err in exc.errors(include_url=False):
        parts = list(err["loc"])
        if parts and parts[0] in EVENT_TYPES:  # the union tag pydantic prefixes
            parts = parts[1:]
        loc = ".".join(str(p) for p in parts)
        if not loc and err["type"].startswith("union_tag"):
            loc = "type"
        out.append({"loc": loc or "(root)", "msg": err["msg"], "type": err["type"]})
    return out


def event_json_schema(event_type: str) -> dict[str, Any]:
    return EVENT_TYPES[event_type].model_json_schema()
