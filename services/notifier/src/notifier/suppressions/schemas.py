"""Pydantic I/O of the operator's suppression routes (list, add, lift)."""

from __future__ import annotations

from datetime import datetime

from notifier_common.text import NoNulModel
from pydantic import BaseModel, ConfigDict, Field, field_validator

from notifier.models import ALL_SCOPES, SuppressionReason, SuppressionSource
from notifier.suppressions.repository import normal_address


class SuppressionOut(BaseModel):
    """One row of ``notifier.suppressions``."""

    model_config = ConfigDict(from_attributes=True)

    id: int = Field(examples=[17])
    address: str = Field(description="Lower-cased.", examples=["finance@example.com"])
    scope: str = Field(
        description="`*` (every letter), a channel (`email`) or a letter name.", examples=["*"]
    )
    reason: SuppressionReason
    source: SuppressionSource = Field(
        description="`link` (unsubscribe link), `gateway` (provider webhooks), `operator`."
    )
    detail: str | None = Field(None, examples=["by ops-alice: client asked by phone"])
    created_at: datetime


class SuppressionPage(BaseModel):
    items: list[SuppressionOut]
    next_cursor: str | None = Field(None, description="Pass as `cursor` for the next page.")


class SuppressionIn(NoNulModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"address": "finance@example.com", "detail": "client asked by phone"},
                {"address": "finance@example.com", "scope": "LowBalanceNotice"},
            ]
        },
    )

    address: str = Field(min_length=1, max_length=320, description="Stored lower-cased.")
    scope: str = Field(
        ALL_SCOPES,
        min_length=1,
        max_length=100,
        description="`*` (every letter), a channel (`email`, `esp`) or a catalog letter name.",
    )
    detail: str | None = Field(None, max_length=500, description="Why; stored after your name.")

    @field_validator("address", mode="after")
    @classmethod
    def _normalized(cls, value: str) -> str:
        value = normal_address(value)
        if not value:
            raise ValueError("an address is required")
        return value


class LiftResult(BaseModel):
    suppression: SuppressionOut = Field(description="The row lifted (no longer stored).")
    gateway_lifted: int = Field(
        description="Rows of the same (address, scope) removed at the delivery gateway (0 when "
        "it had none, e.g. an unsubscribe link's or an operator's suppression)."
    )
