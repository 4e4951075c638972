"""The typed letter declaration. Adding a letter = one :class:`LetterSpec` + its templates.

Every number of a letter (delays, caps, quiet hours, expiry) is a field of its ``params`` model:
defaults live in code, overrides in ``letter_settings`` (see ``settings_service``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import time, timedelta
from decimal import Decimal
from typing import Annotated, Any, Generic, Literal, TypeVar

from notifier_common.events import AnyEvent
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

from notifier.enrichment import Balance, ClientProfile, Contract
from notifier.letters.timing import QuietHours, Timing

Enrichment = Literal["client", "balance", "contract"]
Match = Literal["client", "contract"]
Channel = Literal["email", "esp", "newsletter", "crm"]
#: the gateway's message actions (``send`` delivers content; the others change a subscription
#: or a contact at the provider: seeds 000 and 001)
Action = Literal["send", "subscribe", "unsubscribe", "change_email", "upsert_contact", "mark_spam"]
#: channels whose messages are actions on a person's record, not content sent to them: an
#: address's suppressions do not stop them (unsubscribing or marking spam must reach it)
ACTION_CHANNELS = frozenset({"newsletter", "crm"})

ZERO = timedelta(0)


def _positive_expiry(value: timedelta) -> timedelta:
    if value <= ZERO:
        raise PydanticCustomError(
            "greater_than",
            "Input should be greater than 0 seconds: an expiry of 0 or less would expire every "
            "letter at once (null = never expires)",
            {"gt": "0 seconds"},
        )
    return value


#: the longest duration a letter parameter takes, as ``days`` (365): a send time computed
#: from a much larger one is beyond what a date can hold (``P999999999D`` failed every event)
MAX_DURATION = timedelta(days=365)

# The duration types of letter parameters (ISO 8601 in JSON: ``P1D``, ``PT12H``). Every
# ``timedelta`` parameter is declared with one of them, so no override can be negative or
# longer than a year.
Duration = Annotated[timedelta, Field(ge=ZERO, le=MAX_DURATION)]
"""0 or more: 0 is meaningful (a delay of 0 sends at once, a min_interval of 0 caps nothing)."""
Expiry = Annotated[timedelta, Field(le=MAX_DURATION), AfterValidator(_positive_expiry)]
"""More than 0: an expiry of 0 would expire every letter as soon as it is due."""


class LetterParams(BaseModel):
    """Parameters every letter has; subclasses add their own numbers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    respect_quiet_hours: bool = Field(True, description="Move sends out of quiet hours.")
    quiet_hours_start: time | None = Field(None, description="Local start; None = global.")
    quiet_hours_end: time | None = Field(None, description="Local end; None = global.")
    expires_after: Expiry | None = Field(
        None,
        description=(
            "Not sent at all if it could not go out this long after it was due "
            "(more than 0; null = never expires)."
        ),
    )

    def quiet_hours(self, default: QuietHours) -> QuietHours | None:
        if not self.respect_quiet_hours:
            return None
        return QuietHours(
            start=self.quiet_hours_start or default.start,
            end=self.quiet_hours_end or default.end,
        )


P = TypeVar("P", bound=LetterParams)


@dataclass(frozen=True)
class Facts:
    """What conditions decide on: the event plus the enrichment fetched for it."""

    event: AnyEvent
    client: ClientProfile | None  # None for letters that need no ``client`` enrichment
    balance: Balance | None = None
    contract: Contract | None = None


@dataclass(frozen=True)
class SendFacts:
    """Fresh upstream data re-fetched at send time for a letter's recheck."""

    contract: Contract | None = None
    balance: Balance | None = None


@dataclass(frozen=True)
class Trigger:
    """An event type, and a predicate on the event alone (no upstream data needed)."""

    event_type: str
    when: Callable[[AnyEvent], bool] = lambda _event: True
    label: str = ""  # what ``when`` checks, for docs (e.g. "prepaid, not paid")


@dataclass(frozen=True)
class Recheck:
    """Re-fetch ``needs`` at send time; ``check`` returns a skip reason or None to send."""

    needs: frozenset[Enrichment]
    check: Callable[[SendFacts], str | None]


@dataclass(frozen=True)
class Crossing(Generic[P]):
    """A stateful frequency rule on a balance level (per client).

    Fires when the event's balance crosses from above ``level`` to below it (``<= level`` when
    ``inclusive``) while the rule is armed and at least ``min_interval`` after the last firing;
    firing disarms it, a balance back above ``level`` re-arms it.
    """

    level: Callable[[Facts], Decimal]
    inclusive: bool
    min_interval: Callable[[P], timedelta | None] = lambda _params: None


@dataclass(frozen=True)
class Addressee:
    """One recipient of an outbound message (the gateway's ``Recipient``)."""

    address: str
    name: str | None = None
    external_id: str | None = None
    properties: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Outbound(Generic[P]):
    """A letter the provider composes: an ESP campaign trigger, a newsletter (un)subscription,
    a CRM update. Nothing is rendered from our templates; the gateway message's fields are
    decided with the letter (stored in its context as ``message``) and sent as they are.

    ``fields``: message-wide fields (``template_ref``, ``properties``, ``lists``,
    ``previous_address``). ``recipients``: who it is about (default: the client's addresses).
    ``external_id_from``: the recipient's ``external_id`` is the provider id answered to the
    client's last *sent* letter of that name, read when the letter is sent (the CRM id of the
    contact an earlier upsert created).
    """

    action: Action
    fields: Callable[[Facts, P], Mapping[str, Any]] = lambda _facts, _params: {}
    recipients: Callable[[Facts, P], Sequence[Addressee]] | None = None
    external_id_from: str | None = None


@dataclass(frozen=True)
class LetterSpec(Generic[P]):
    name: str
    params: type[P]
    triggers: tuple[Trigger, ...]
    timing: Callable[[P], Timing]
    channel: Channel = "email"
    template: str = ""  # default: the letter name
    enrichments: frozenset[Enrichment] = frozenset({"client"})
    condition: Callable[[Facts, P], str | None] = lambda _facts, _params: None
    recheck: Recheck | None = None
    cancelled_by: Mapping[str, Match] = field(default_factory=dict)
    dedup: Callable[[Facts], str] | None = None
    frequency: Crossing[P] | None = None
    sequence: str | None = None  # letters sharing a trigger at offsets (onboarding, reminders)
    outbound: Outbound[P] | None = None  # composed by the provider, not by our templates
    #: a series: when an occurrence ends (sent, failed, skipped, expired; not cancelled) the
    #: next one is scheduled this long after its due time, until a ``cancelled_by`` event
    repeat: Callable[[P], timedelta | None] | None = None
    description: str = ""

    @property
    def rendered(self) -> bool:
        """Rendered from our templates (subject, HTML, text), or an ``outbound`` message."""
        return self.outbound is None

    @property
    def action(self) -> Action:
        return self.outbound.action if self.outbound is not None else "send"

    @property
    def template_name(self) -> str:
        return self.template or self.name

    def default_params(self) -> P:
        return self.params()

    def parse_params(self, overrides: Mapping[str, Any]) -> P:
        """Code defaults + overrides, validated (raises pydantic ValidationError)."""
        merged = {**self.default_params().model_dump(), **overrides}
        return self.params.model_validate(merged)

    def triggered_by(self, event: AnyEvent) -> bool:
        return any(t.event_type == event.type and t.when(event) for t in self.triggers)


AnySpec = LetterSpec[Any]


def _check(spec: AnySpec, specs: Mapping[str, AnySpec]) -> None:
    """Declarations that could not be sent are refused when the catalog is built."""
    outbound = spec.outbound
    if outbound is None and spec.channel != "email":
        raise ValueError(f"letter {spec.name!r}: channel {spec.channel!r} needs an outbound")
    if outbound is None and "client" not in spec.enrichments:
        raise ValueError(f"letter {spec.name!r}: an e-mail letter needs the client enrichment")
    if outbound is not None and outbound.recipients is None and "client" not in spec.enrichments:
        raise ValueError(f"letter {spec.name!r}: no recipients without the client enrichment")
    if spec.repeat is not None and not spec.cancelled_by:
        raise ValueError(f"letter {spec.name!r}: a repeating letter needs cancelled_by")
    if outbound is not None and outbound.external_id_from not in (None, *specs):
        raise ValueError(
            f"letter {spec.name!r}: external_id_from names unknown letter "
            f"{outbound.external_id_from!r}"
        )


class Catalog:
    """Letters by name, with lookups by triggering and cancelling event type (indexed once: the
    worker looks them up several times per event)."""

    def __init__(self, specs: Iterable[AnySpec]) -> None:
        self._specs: dict[str, AnySpec] = {}
        for spec in specs:
            if spec.name in self._specs:
                raise ValueError(f"letter {spec.name!r} declared twice")
            self._specs[spec.name] = spec
        for spec in self._specs.values():
            _check(spec, self._specs)
        self._triggers: dict[str, list[tuple[AnySpec, tuple[Trigger, ...]]]] = {}
        self._cancelled: dict[str, tuple[AnySpec, ...]] = {}
        self._involved: dict[str, tuple[AnySpec, ...]] = {}
        types = {t.event_type for s in self._specs.values() for t in s.triggers}
        types.update(k for s in self._specs.values() for k in s.cancelled_by)
        for event_type in types:
            for spec in self._specs.values():
                mine = tuple(t for t in spec.triggers if t.event_type == event_type)
                if mine:
                    self._triggers.setdefault(event_type, []).append((spec, mine))
            self._cancelled[event_type] = tuple(
                s for s in self._specs.values() if event_type in s.cancelled_by
            )
            self._involved[event_type] = tuple(
                s
                for s in self._specs.values()
                if event_type in s.cancelled_by
                or any(t.event_type == event_type for t in s.triggers)
            )

    def __iter__(self) -> Any:
        return iter(self._specs.values())

    def __len__(self) -> int:
        return len(self._specs)

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def get(self, name: str) -> AnySpec:
        return self._specs[name]

    def names(self) -> list[str]:
        return list(self._specs)

    def triggered_by(self, event: AnyEvent) -> list[AnySpec]:
        """Letters ``event`` triggers, in declaration order (``LetterSpec.triggered_by``)."""
        return [
            spec
            for spec, triggers in self._triggers.get(event.type, ())
            if any(t.when(event) for t in triggers)
        ]

    def cancelled_by(self, event_type: str) -> list[AnySpec]:
        return list(self._cancelled.get(event_type, ()))

    def involved(self, event_type: str) -> list[AnySpec]:
        """Letters an event type may trigger or cancel (before looking at the payload)."""
        return list(self._involved.get(event_type, ()))
