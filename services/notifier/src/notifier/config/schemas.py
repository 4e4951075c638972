"""Pydantic I/O of the configuration API."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from notifier_common.text import NoNulModel
from pydantic import BaseModel, ConfigDict, Field


class LetterConfigOut(BaseModel):
    """A catalog letter: its declaration, switch and parameters."""

    name: str = Field(examples=["LowBalanceNotice"])
    description: str
    channel: str = Field(examples=["email"])
    action: str = Field(
        "send",
        examples=["send"],
        description=(
            "The gateway action: `send` delivers content; an integration letter may subscribe, "
            "unsubscribe, change_email, upsert_contact or mark_spam."
        ),
    )
    rendered: bool = Field(
        True,
        description="Rendered from our templates (false: composed by its provider, no locales).",
    )
    triggers: list[str] = Field(description="Event types that may trigger it.")
    cancelled_by: list[str] = Field(description="Event types that cancel it while pending.")
    timing: str = Field(examples=["immediately"])
    enabled: bool
    defaults: dict[str, Any] = Field(description="Parameter defaults declared in code.")
    overrides: dict[str, Any] = Field(description="What the database overrides.")
    effective: dict[str, Any] = Field(description="Defaults + overrides: what the engine uses.")
    params_schema: dict[str, Any] = Field(description="JSON Schema of the typed parameters.")
    locales: list[str] = Field(description="Locales it has templates for.")
    updated_at: datetime | None = None
    updated_by: str | None = None


class LetterConfigPatch(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"enabled": False},
                {"params": {"min_interval": "PT12H"}},
                {"params": {"delay": "P2D", "respect_quiet_hours": True}, "enabled": True},
            ]
        },
    )

    enabled: bool | None = Field(None, description="Switch the letter on or off.")
    params: dict[str, Any] | None = Field(
        None,
        description=(
            "Partial: merged over the stored overrides, then validated against the letter's "
            "typed parameters (422 with field errors). Durations as ISO 8601 (`P1D`, `PT12H`)."
        ),
    )
    reset_params: bool = Field(False, description="Drop every stored override first.")


class AuditOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    letter: str
    changed_by: str = Field(description="Token name of the operator.")
    changed_at: datetime
    old: dict[str, Any] | None = Field(description="`{enabled, params}` before (null: defaults).")
    new: dict[str, Any] = Field(description="`{enabled, params}` after.")


class IntegrationOut(BaseModel):
    """A gateway provider (integration) and its global switch."""

    model_config = ConfigDict(extra="ignore")

    name: str = Field(examples=["smtp"])
    kind: str = Field(examples=["smtp"])
    enabled: bool
    switch_source: Literal["settings", "operator"]
    changed_by: str | None = None
    changed_at: datetime | None = None
    replayable: int = Field(0, description="Messages skipped while off, to replay.")


class SwitchIn(NoNulModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"enabled": False, "reason": "ESP outage"}]}
    )

    enabled: bool
    reason: str | None = Field(None, max_length=500)


class SwitchChangeOut(BaseModel):
    model_config = ConfigDict(extra="ignore")

    enabled: bool
    changed_by: str
    reason: str | None
    changed_at: datetime
