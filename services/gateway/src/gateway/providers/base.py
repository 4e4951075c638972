"""The one small interface every delivery provider implements.

A provider never raises for an expected failure: it classifies it into a :class:`SendResult`
(transient: retry later, permanent: never retry). Only bugs escape as exceptions, and the
gateway turns those into ``transient_error`` with code ``internal`` rather than a 500.
"""

from __future__ import annotations

import enum
import uuid
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

RESPONSE_EXCERPT_LIMIT = 2000

Action = Literal[
    "send",  # deliver content (smtp, esp, webhook, log)
    "subscribe",  # newsletter: lookup then subscribe to `lists`
    "unsubscribe",  # newsletter: lookup then unsubscribe from `lists`
    "change_email",  # newsletter/crm: move `previous_address` -> recipient address
    "upsert_contact",  # crm: create/update the contact of a signed-up user
    "mark_spam",  # crm: mark the contact as spam
]


class Recipient(BaseModel):
    model_config = ConfigDict(extra="forbid")

    address: str | None = Field(None, max_length=320, description="Email address or URL.")
    name: str | None = Field(None, max_length=200)
    external_id: str | None = Field(None, max_length=200, description="ESP/CRM user id.")
    properties: dict[str, Any] = Field(
        default_factory=dict, description="Per-recipient template data (ESP trigger_properties)."
    )


class Message(BaseModel):
    """What the notifier asks the gateway to deliver (the request body of POST /v1/messages)."""

    model_config = ConfigDict(extra="forbid")
    # The received JSON lives in a slot, not a PrivateAttr: any private attribute makes pydantic
    # call a Python post-init hook for every message it validates (more than half the
    # validation time of a 500-message batch). Copies do not carry it (decision 0053).
    __slots__ = ("_received", "_stored_as")

    channel: str = Field(min_length=1, max_length=50, examples=["email"])
    provider: str | None = Field(None, description="Provider instance; default: the channel's.")
    action: Action = "send"
    to: list[Recipient] = Field(min_length=1, max_length=1000)
    subject: str | None = Field(None, max_length=998)
    html: str | None = None
    text: str | None = None
    template_ref: str | None = Field(None, description="Provider-side template / campaign id.")
    properties: dict[str, Any] = Field(
        default_factory=dict, description="Message-wide template data (ESP trigger_properties)."
    )
    lists: list[str] = Field(default_factory=list, description="Newsletter / mailing lists.")
    previous_address: str | None = Field(None, description="For change_email.")
    unsubscribe_url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict, description="Opaque, echoed back.")

    def remember_json(
        self, body: bytes | memoryview | None, stored_as: uuid.UUID | None = None
    ) -> None:
        """Keep the JSON this message was received and stored as (set by the messages service;
        cleared when the gateway changes the message, e.g. drops suppressed recipients; a
        copy starts without it), and the ``gateway.messages`` row whose ``request`` holds that
        JSON once the claim committed it (decision 0056)."""
        object.__setattr__(self, "_received", body)
        object.__setattr__(self, "_stored_as", stored_as if body is not None else None)

    @property
    def received_json(self) -> bytes | memoryview | None:
        """UTF-8 JSON equal to this message when known, so a provider that records messages
        need not serialise them again; None for a message built or changed in code."""
        return getattr(self, "_received", None)

    @property
    def stored_as(self) -> uuid.UUID | None:
        """The id of the committed ``gateway.messages`` row whose ``request`` is this message's
        JSON (a provider recording messages in the gateway's database can copy it there
        instead of sending it again); None when unknown or changed since."""
        return getattr(self, "_stored_as", None)


class Outcome(enum.StrEnum):
    accepted = "accepted"
    transient_error = "transient_error"
    permanent_error = "permanent_error"
    skipped = "skipped"


@dataclass(slots=True)
class SendResult:
    outcome: Outcome
    provider_message_id: str | None = None
    code: str | None = None  # e.g. not_found, unexpected_response, http_429, timeout, disabled
    reason: str | None = None
    status_code: int | None = None
    retry_after: float | None = None  # seconds, a hint for transient errors
    response_excerpt: str | None = None  # truncated to RESPONSE_EXCERPT_LIMIT
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def ok(cls, provider_message_id: str | None, **kw: Any) -> SendResult:
        return cls(Outcome.accepted, provider_message_id=provider_message_id, **kw)

    @classmethod
    def transient(cls, code: str, reason: str, **kw: Any) -> SendResult:
        return cls(Outcome.transient_error, code=code, reason=reason, **kw)

    @classmethod
    def permanent(cls, code: str, reason: str, **kw: Any) -> SendResult:
        return cls(Outcome.permanent_error, code=code, reason=reason, **kw)


def excerpt(body: str | bytes | None) -> str | None:
    if body is None:
        return None
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    return text[:RESPONSE_EXCERPT_LIMIT]


class Provider(ABC):
    """One configured provider instance (several instances of one kind are allowed)."""

    kind: str = "abstract"

    def __init__(self, name: str, config: dict[str, Any]) -> None:
        self.name = name
        self.config = config

    async def start(self) -> None:
        """Open long-lived resources (connections, HTTP clients). Called once per process."""

    async def aclose(self) -> None:
        """Release what start() opened."""

    @abstractmethod
    async def send(self, message: Message) -> SendResult:
        """Deliver one message; classify every expected failure into the result."""

    #: Messages per ``send_many`` call when the instance's ``chunk_size`` is not set (None: the
    #: gateway's ``default_chunk_size``); a provider with a cheap bulk path takes whole batches.
    chunk_size: int | None = None

    async def send_many(self, messages: Sequence[Message]) -> list[SendResult]:
        """Deliver several; providers with a bulk API (ESP) override this."""
        return [await self.send(m) for m in messages]
