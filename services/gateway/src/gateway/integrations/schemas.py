from __future__ import annotations

from datetime import datetime
from typing import Literal

from notifier_common.text import NoNulModel
from pydantic import BaseModel, ConfigDict, Field

from gateway.resilience.breaker import BreakerState


class BreakerOut(BaseModel):
    state: BreakerState | Literal["unknown"] = Field(description="unknown: Redis unreachable")
    retry_after: float = Field(description="Seconds until a call may be tried again.")


class ProviderOut(BaseModel):
    name: str
    kind: str
    enabled: bool
    switch_source: Literal["settings", "operator"]
    changed_by: str | None = None
    changed_at: datetime | None = None
    breaker: BreakerOut
    rate_per_second: float | None = None
    burst: int | None = None
    replayable: int = Field(description="Messages answered `skipped: disabled`, to replay.")


class SwitchIn(NoNulModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool
    reason: str | None = Field(None, max_length=1000)


class SwitchChangeOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    enabled: bool
    changed_by: str
    reason: str | None
    changed_at: datetime


class ReplayOut(BaseModel):
    provider: str
    total: int = Field(description="Messages sent again.")
    outcomes: dict[str, int] = Field(description="Count per outcome of the replayed messages.")
