"""What the upstream "clients" and "billing" services answer, validated at the boundary."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator

NonEmpty = Annotated[str, Field(min_length=1)]
PaymentType = Literal["prepaid", "postpaid"]


class _Upstream(BaseModel):
    # Upstreams may add fields; we keep only what we know. Snapshots are immutable.
    model_config = ConfigDict(frozen=True, extra="ignore")


class ClientProfile(_Upstream):
    """``GET {clients_url}/v1/clients/{client_id}``."""

    id: NonEmpty
    name: NonEmpty
    locale: Literal["ru", "en"]
    timezone: NonEmpty = Field(description="IANA time zone, e.g. Europe/Moscow.")
    emails: list[NonEmpty] = Field(min_length=1)
    payment_type: PaymentType
    service: Literal["taxi", "cargo"]
    cabinet_url: NonEmpty

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {value!r}") from exc
        return value


class Balance(_Upstream):
    """``GET {billing_url}/v1/clients/{client_id}/balance``.

    ``threshold``: the client's low-balance notification threshold (LowBalanceNotice);
    ``limit``: LimitIsOverNotice fires when the balance crosses to ``<= limit``.
    """

    client_id: NonEmpty
    contract_id: NonEmpty
    amount: Decimal
    currency: Annotated[str, Field(min_length=3, max_length=3)]
    threshold: Decimal
    limit: Decimal


class Contract(_Upstream):
    """``GET {billing_url}/v1/contracts/{contract_id}``."""

    id: NonEmpty
    client_id: NonEmpty
    payment_type: PaymentType
    is_paid: bool
    status: Literal["active", "closed"]
