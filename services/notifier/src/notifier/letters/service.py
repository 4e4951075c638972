"""Decisions of the letter engine: which letters an event triggers or cancels, and when.

``plan()`` only reads (enrichment over HTTP, settings, cancellations, frequency state), so the
operator API's dry run reuses it; ``apply()`` writes a plan in the caller's transaction.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, time
from decimal import Decimal
from typing import Any, Literal, Protocol
from zoneinfo import ZoneInfo

import orjson
from notifier_common.db import Db
from notifier_common.events import AnyEvent, BalanceChanged
from sqlalchemy.ext.asyncio import AsyncSession

from notifier.enrichment import Balance, ClientProfile, Contract
from notifier.letters import repository
from notifier.letters.catalog import (
    Addressee,
    AnySpec,
    Catalog,
    Crossing,
    Facts,
    LetterParams,
    Match,
)
from notifier.letters.definitions import LETTERS
from notifier.letters.settings_service import EffectiveSettings, effective
from notifier.letters.timing import QuietHours, expires_at, send_at
from notifier.models import LetterOrigin, LetterStatus


class FrequencyState(Protocol):
    """A ``letter_states`` row (the ORM's ``LetterState`` or ``repository.StateRow``)."""

    @property
    def armed(self) -> bool: ...
    @property
    def last_fired_at(self) -> datetime | None: ...
    @property
    def last_event_at(self) -> datetime | None: ...


class RememberedCancellation(Protocol):
    """A ``letter_cancellations`` row (``LetterCancellation`` or ``repository.CancellationRow``)."""

    @property
    def letter(self) -> str: ...
    @property
    def subject(self) -> str: ...
    @property
    def occurred_at(self) -> datetime: ...
    @property
    def event_id(self) -> Any: ...
    @property
    def event_type(self) -> str: ...


class Enricher(Protocol):
    """What the engine needs from upstream (``notifier.enrichment.EnrichmentClient``)."""

    async def client(self, client_id: str, *, fresh: bool = False) -> ClientProfile: ...
    async def balance(self, client_id: str, *, fresh: bool = False) -> Balance: ...
    async def contract(self, contract_id: str, *, fresh: bool = False) -> Contract: ...


@dataclass(frozen=True)
class PlanConfig:
    quiet_hours: QuietHours = field(default_factory=lambda: QuietHours(time(21, 0), time(9, 0)))
    payment_url_template: str = "{cabinet_url}/payment"


@dataclass(frozen=True)
class PlannedLetter:
    letter: str
    channel: str
    recipient: str
    locale: str
    client_id: str
    contract_id: str | None
    context: dict[str, Any]
    triggered_at: datetime
    send_at: datetime
    expires_at: datetime | None
    dedup_key: str | None
    status: LetterStatus = LetterStatus.scheduled
    cancel_reason: str | None = None
    cancelled_by_event_id: Any = None


DecisionKind = Literal["planned", "disabled", "condition", "frequency", "cancelled_earlier"]


@dataclass(frozen=True)
class Decision:
    letter: str
    kind: DecisionKind
    reason: str | None = None


@dataclass(frozen=True)
class Cancellation:
    letters: tuple[str, ...]
    match: Match
    value: str
    event: AnyEvent

    @property
    def subject(self) -> str:
        return f"{self.match}:{self.value}"


@dataclass(frozen=True)
class StateChange:
    letter: str
    client_id: str
    armed: bool
    last_fired_at: datetime | None
    last_event_at: datetime | None
    last_level: Any


@dataclass(frozen=True)
class Gathered:
    """Reads that need no lock: effective settings and upstream data."""

    settings: dict[str, EffectiveSettings]
    triggered: list[AnySpec]
    facts: Facts | None


@dataclass
class Plan:
    event: AnyEvent
    letters: list[PlannedLetter] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    cancellations: list[Cancellation] = field(default_factory=list)
    states: list[StateChange] = field(default_factory=list)


# ---- reading ------------------------------------------------------------------------------


def payload_field(event: AnyEvent, name: str) -> Any:
    """The payload's field ``name``, None when its type has no such field. Read from the
    model's ``__dict__`` (payloads forbid extra fields): ``getattr`` with a default on a
    pydantic model goes through ``BaseModel.__getattr__``, which builds and catches an
    ``AttributeError`` for a missing field, ~14 us against ~0.4 here, several times per
    event when deciding (issue 7, ``latency``)."""
    return event.payload.__dict__.get(name)


def contract_id_of(event: AnyEvent) -> str | None:
    value = payload_field(event, "contract_id")
    return value if isinstance(value, str) else None


async def fetch_facts(enricher: Enricher, event: AnyEvent, specs: Sequence[AnySpec]) -> Facts:
    """Fetch each needed enrichment once for the event, concurrently."""
    needs = set().union(*(s.enrichments for s in specs))
    contract_id = contract_id_of(event)
    want_client = "client" in needs
    want_balance = "balance" in needs
    want_contract = "contract" in needs and contract_id is not None
    if not (want_balance or want_contract):  # no tasks for one call (often a cache hit)
        client = await enricher.client(event.client_id) if want_client else None
        return Facts(event=event, client=client)

    async def none() -> None:
        return None

    client, balance, contract = await asyncio.gather(
        enricher.client(event.client_id) if want_client else none(),
        enricher.balance(event.client_id) if want_balance else none(),
        enricher.contract(contract_id) if want_contract and contract_id else none(),
    )
    return Facts(event=event, client=client, balance=balance, contract=contract)


async def gather(
    session: AsyncSession, event: AnyEvent, *, enricher: Enricher, catalog: Catalog = LETTERS
) -> Gathered:
    names = [s.name for s in catalog.involved(event.type)]
    settings = await effective(session, names, catalog=catalog) if names else {}
    return await gather_with(event, settings, enricher=enricher, catalog=catalog)


async def gather_with(
    event: AnyEvent,
    settings: Mapping[str, EffectiveSettings],
    *,
    enricher: Enricher,
    catalog: Catalog = LETTERS,
) -> Gathered:
    """``gather`` with the effective settings already known (no database access)."""
    settings = {s.name: settings[s.name] for s in catalog.involved(event.type)}
    triggered = [s for s in catalog.triggered_by(event)]
    enabled = [s for s in triggered if settings[s.name].enabled]
    facts = await fetch_facts(enricher, event, enabled) if enabled else None
    return Gathered(settings=settings, triggered=triggered, facts=facts)


# ---- deciding -----------------------------------------------------------------------------


def cancellations_for(event: AnyEvent, catalog: Catalog) -> list[Cancellation]:
    by_subject: dict[tuple[Match, str], list[str]] = {}
    for spec in catalog.cancelled_by(event.type):
        match = spec.cancelled_by[event.type]
        value = event.client_id if match == "client" else contract_id_of(event)
        if value:
            by_subject.setdefault((match, value), []).append(spec.name)
    return [Cancellation(tuple(names), m, v, event) for (m, v), names in by_subject.items()]


def decide_crossing(
    rule: Crossing[Any],
    facts: Facts,
    params: LetterParams,
    state: FrequencyState | None,
    *,
    letter: str,
) -> tuple[str | None, StateChange | None]:
    """(reason not to send or None, the new state) for a balance-crossing letter."""
    event = facts.event
    if not isinstance(event, BalanceChanged):
        return "not a balance event", None
    at = event.occurred_at
    if state is not None and state.last_event_at is not None and at < state.last_event_at:
        return "older than the last balance event seen", None
    level = rule.level(facts)
    new, old = event.payload.new_balance, event.payload.old_balance
    below = new <= level if rule.inclusive else new < level
    was_above = old > level if rule.inclusive else old >= level
    armed = state.armed if state is not None else True
    last = state.last_fired_at if state is not None else None

    def change(*, armed: bool, fired: datetime | None = last) -> StateChange:
        return StateChange(letter, event.client_id, armed, fired, at, level)

    if not below:
        return "balance above the level", change(armed=True)
    if not was_above:
        return "no crossing (already below the level)", change(armed=armed)
    if not armed:
        return "already notified for this crossing", change(armed=False)
    interval = rule.min_interval(params)
    if interval is not None and last is not None and at - last < interval:
        return f"capped: last sent at {last.isoformat()}", change(armed=True)
    return None, change(armed=False, fired=at)


def _hash(*parts: str) -> str:
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:40]


def build_context(
    spec: AnySpec, facts: Facts, params: LetterParams, config: PlanConfig
) -> dict[str, Any]:
    """The render context (see docs): letter.id and links.unsubscribe_url are set at send.
    An outbound letter's context has no links; ``planned_letters`` adds its ``message``."""
    event = facts.event
    client = facts.client
    context: dict[str, Any] = {
        "event": {
            "id": str(event.id),
            "type": event.type,
            "occurred_at": event.occurred_at.isoformat(),
            "payload": event.payload.model_dump(mode="json"),
        },
        "params": params.model_dump(mode="json"),
        "letter": {"name": spec.name, "id": None},
    }
    if client is not None:
        context = {"client": client.model_dump(mode="json"), **context}
    if spec.rendered:
        assert client is not None  # the catalog refuses e-mail letters without the client
        context["links"] = {
            "cabinet_url": client.cabinet_url,
            "payment_url": config.payment_url_template.format(
                cabinet_url=client.cabinet_url.rstrip("/")
            ),
            "unsubscribe_url": None,
        }
    if "balance" in spec.enrichments and facts.balance is not None:
        context["balance"] = facts.balance.model_dump(mode="json")
    if "contract" in spec.enrichments and facts.contract is not None:
        context["contract"] = facts.contract.model_dump(mode="json")
    return context


def addressees(spec: AnySpec, facts: Facts, params: LetterParams) -> list[Addressee]:
    """Who the letter goes to (or is about), each address once: the outbound's recipients,
    else the client's addresses."""
    if spec.outbound is not None and spec.outbound.recipients is not None:
        found = list(spec.outbound.recipients(facts, params))
    else:
        assert facts.client is not None
        found = [Addressee(address, name=facts.client.name) for address in facts.client.emails]
    first: dict[str, Addressee] = {}
    for addressee in found:
        first.setdefault(addressee.address, addressee)
    return list(first.values())


def outbound_message(spec: AnySpec, facts: Facts, params: LetterParams, to: Addressee) -> Any:
    """The gateway message fields of an outbound letter to ``to`` (its context's ``message``;
    channel, metadata and an ``external_id_from`` id are added when it is sent)."""
    assert spec.outbound is not None
    recipient: dict[str, Any] = {"address": to.address}
    if to.name is not None:
        recipient["name"] = to.name
    if to.external_id is not None:
        recipient["external_id"] = to.external_id
    if to.properties:
        recipient["properties"] = dict(to.properties)
    return {
        "action": spec.outbound.action,
        "to": [recipient],
        **dict(spec.outbound.fields(facts, params)),
    }


def planned_letters(
    spec: AnySpec, facts: Facts, params: LetterParams, *, config: PlanConfig, now: datetime
) -> list[PlannedLetter]:
    """One letter per recipient address (of the client, or the outbound's recipients)."""
    client, event = facts.client, facts.event
    tz = ZoneInfo(client.timezone) if client is not None else UTC_ZONE
    due = send_at(
        event.occurred_at,
        spec.timing(params),
        tz=tz,
        quiet=params.quiet_hours(config.quiet_hours),
        not_before=now,
    )
    context = build_context(spec, facts, params, config)
    contract_id = contract_id_of(event) or (facts.contract.id if facts.contract else None)
    scope = spec.dedup(facts) if spec.dedup is not None else None
    locale = client.locale if client is not None else event_locale(event)
    out = []
    for to in addressees(spec, facts, params):
        mine = context
        if spec.outbound is not None:
            mine = {**context, "message": outbound_message(spec, facts, params, to)}
        address = to.address
        out.append(
            PlannedLetter(
                letter=spec.name,
                channel=spec.channel,
                recipient=address,
                locale=locale,
                client_id=event.client_id,
                contract_id=contract_id,
                context=mine,
                triggered_at=event.occurred_at,
                send_at=due,
                expires_at=expires_at(due, params.expires_after),
                dedup_key=f"{spec.name}:{_hash(spec.name, scope, address)}" if scope else None,
            )
        )
    return out


UTC_ZONE = ZoneInfo("UTC")


def event_locale(event: AnyEvent) -> str:
    """A client-less letter's locale: the event's ``language`` when it is one we have."""
    language = payload_field(event, "language")
    return language if language in ("ru", "en") else "en"


async def decide(
    session: AsyncSession,
    event: AnyEvent,
    gathered: Gathered,
    *,
    config: PlanConfig,
    now: datetime,
    catalog: Catalog = LETTERS,
) -> Plan:
    """Read cancellations and frequency state (under the client lock) and decide."""
    candidates = _candidates(gathered)
    if not candidates or gathered.facts is None:
        return decide_from(event, gathered, states={}, cancellations=[], config=config, now=now)
    states = await repository.get_states(
        session, [s.name for s in candidates if s.frequency is not None], event.client_id
    )
    rows = await repository.latest_cancellations(
        session, [s.name for s in candidates], _subjects(event, gathered.facts)
    )
    return decide_from(
        event,
        gathered,
        states=states,
        cancellations=rows,
        config=config,
        now=now,
        catalog=catalog,
    )


def _candidates(gathered: Gathered) -> list[AnySpec]:
    return [s for s in gathered.triggered if gathered.settings[s.name].enabled]


def decide_from(
    event: AnyEvent,
    gathered: Gathered,
    *,
    states: Mapping[str, FrequencyState],
    cancellations: Sequence[RememberedCancellation],
    config: PlanConfig,
    now: datetime,
    catalog: Catalog = LETTERS,
) -> Plan:
    """The decision given what was read under the client lock: the event client's frequency
    states (by letter) and the remembered cancellations (any rows; those of this event's
    subjects and letters count)."""
    plan = Plan(event=event, cancellations=cancellations_for(event, catalog))
    facts = gathered.facts
    candidates: list[AnySpec] = []
    for spec in gathered.triggered:
        if not gathered.settings[spec.name].enabled:
            plan.decisions.append(Decision(spec.name, "disabled", "letter switched off"))
        else:
            candidates.append(spec)
    if not candidates or facts is None:
        return plan
    cancelled = _cancelled_earlier(event, facts, candidates, cancellations)
    for spec in candidates:
        params = gathered.settings[spec.name].params
        reason = spec.condition(facts, params)
        if spec.frequency is not None:
            crossing_reason, change = decide_crossing(
                spec.frequency, facts, params, states.get(spec.name), letter=spec.name
            )
            if change is not None and reason is None:
                plan.states.append(change)
            reason = reason or crossing_reason
            kind: DecisionKind = "frequency" if crossing_reason else "condition"
        else:
            kind = "condition"
        if reason is not None:
            plan.decisions.append(Decision(spec.name, kind, reason))
            continue
        letters = planned_letters(spec, facts, params, config=config, now=now)
        earlier = cancelled.get(spec.name)
        if earlier is not None:
            reason = f"cancelled by {earlier[1]} {earlier[0]} before it was scheduled"
            letters = [
                replace(
                    p,
                    status=LetterStatus.cancelled,
                    cancel_reason=reason,
                    cancelled_by_event_id=earlier[0],
                )
                for p in letters
            ]
            plan.decisions.append(Decision(spec.name, "cancelled_earlier", reason))
        else:
            plan.decisions.append(Decision(spec.name, "planned"))
        plan.letters.extend(letters)
    return plan


def _subjects(event: AnyEvent, facts: Facts) -> list[str]:
    subjects = [f"client:{event.client_id}"]
    contract_id = contract_id_of(event) or (facts.contract.id if facts.contract else None)
    if contract_id:
        subjects.append(f"contract:{contract_id}")
    return subjects


def _cancelled_earlier(
    event: AnyEvent,
    facts: Facts,
    specs: Sequence[AnySpec],
    rows: Sequence[RememberedCancellation],
) -> dict[str, tuple[Any, str]]:
    """Letters a cancelling event that occurred at/after this trigger already cancelled."""
    subjects = set(_subjects(event, facts))
    names = {s.name for s in specs}
    out: dict[str, tuple[Any, str]] = {}
    for row in rows:
        if row.letter in names and row.subject in subjects and row.occurred_at >= event.occurred_at:
            out[row.letter] = (row.event_id, row.event_type)
    return out


async def plan(
    session: AsyncSession,
    event: AnyEvent,
    *,
    enricher: Enricher,
    config: PlanConfig,
    now: datetime,
    catalog: Catalog = LETTERS,
) -> Plan:
    """Everything an event would do, without writing anything (the dry run)."""
    gathered = await gather(session, event, enricher=enricher, catalog=catalog)
    return await decide(session, event, gathered, config=config, now=now, catalog=catalog)


# ---- writing ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Applied:
    created: list[int]
    due_now: list[int]  # created, scheduled and due: the immediate sends
    cancelled: list[int]


async def apply(session: AsyncSession, plan: Plan, *, now: datetime) -> Applied:
    """Write a plan: cancellations first, then frequency state, then the letters (idempotent)."""
    event = plan.event
    cancelled: list[int] = []
    for c in plan.cancellations:
        await repository.record_cancellations(
            session,
            [
                {
                    "letter": name,
                    "subject": c.subject,
                    "occurred_at": event.occurred_at,
                    "event_id": event.id,
                    "event_type": event.type,
                }
                for name in c.letters
            ],
        )
        cancelled += await repository.cancel_pending(
            session,
            letters=c.letters,
            column="client_id" if c.match == "client" else "contract_id",
            value=c.value,
            occurred_at=event.occurred_at,
            event_id=event.id,
            reason=f"cancelled by {event.type}",
            now=now,
        )
    await repository.save_states(
        session,
        [state_row(s) for s in plan.states],
    )
    rows = [_row(p, event_id=event.id, now=now) for p in plan.letters]
    inserted = await repository.insert_letters(session, rows)
    due = [i for i, status, at in inserted if status == LetterStatus.scheduled and at <= now]
    return Applied(created=[i for i, _, _ in inserted], due_now=due, cancelled=cancelled)


def state_row(s: StateChange) -> dict[str, Any]:
    """A frequency state change as the row ``repository.save_states`` writes."""
    return {
        "letter": s.letter,
        "client_id": s.client_id,
        "armed": s.armed,
        "last_fired_at": s.last_fired_at,
        "last_event_at": s.last_event_at,
        "last_level": s.last_level,
    }


def _row(p: PlannedLetter, *, event_id: Any, now: datetime) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "letter": p.letter,
        "client_id": p.client_id,
        "contract_id": p.contract_id,
        "channel": p.channel,
        "recipient": p.recipient,
        "locale": p.locale,
        "context": p.context,
        "status": p.status,
        "triggered_at": p.triggered_at,
        "send_at": p.send_at,
        "expires_at": p.expires_at,
        "dedup_key": p.dedup_key,
        "cancel_reason": p.cancel_reason,
        "cancelled_by_event_id": p.cancelled_by_event_id,
        "origin": LetterOrigin.event,
        "created_at": now,
        "updated_at": now,
    }


# ---- many events at once (the worker's group commit, docs/decisions/0040) ------------------


async def decide_many(
    session: Db,
    items: Sequence[tuple[AnyEvent, Gathered]],
    *,
    config: PlanConfig,
    now: datetime,
    catalog: Catalog = LETTERS,
) -> list[Plan]:
    """``decide`` for events of *distinct* clients (their locks held): one read of frequency
    states and one of remembered cancellations for all of them."""
    state_keys: set[tuple[str, str]] = set()
    remembered_keys: set[tuple[str, str]] = set()
    for event, gathered in items:
        candidates = _candidates(gathered)
        if not candidates or gathered.facts is None:
            continue
        subjects = _subjects(event, gathered.facts)
        for spec in candidates:
            if spec.frequency is not None:
                state_keys.add((spec.name, event.client_id))
            remembered_keys.update((spec.name, subject) for subject in subjects)
    states, rows = await repository.decision_reads(
        session, states=state_keys, cancellations=remembered_keys
    )
    by_client: dict[str, dict[str, FrequencyState]] = {}
    for (letter, client), state in states.items():
        by_client.setdefault(client, {})[letter] = state
    plans = []
    for event, gathered in items:
        mine = by_client.get(event.client_id, {})
        plans.append(
            decide_from(
                event,
                gathered,
                states=mine,
                cancellations=rows,
                config=config,
                now=now,
                catalog=catalog,
            )
        )
    return plans


async def apply_many(session: Db, plans: Sequence[Plan], *, now: datetime) -> dict[Any, Applied]:
    """``apply`` for the plans of events of distinct clients, every write in one statement
    (``repository.write_plans``). Applied per event id."""
    remembered: list[dict[str, Any]] = []
    requests: list[dict[str, Any]] = []
    states: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    for plan in plans:
        event = plan.event
        for c in plan.cancellations:
            for name in c.letters:
                remembered.append(
                    {
                        "letter": name,
                        "subject": c.subject,
                        "occurred_at": event.occurred_at,
                        "event_id": event.id,
                        "event_type": event.type,
                    }
                )
                requests.append(
                    {
                        "letter": name,
                        "client_id": c.value if c.match == "client" else None,
                        "contract_id": c.value if c.match == "contract" else None,
                        "occurred_at": event.occurred_at,
                        "event_id": event.id,
                        "reason": f"cancelled by {event.type}",
                    }
                )
        states += [state_row(s) for s in plan.states]
        for p in plan.letters:
            row = _row(p, event_id=event.id, now=now)
            row["context"] = json_text(p.context)
            rows.append(row)
    written = await repository.write_plans(
        session, remembered=remembered, cancels=requests, states=states, letters=rows, now=now
    )
    out = {plan.event.id: Applied(created=[], due_now=[], cancelled=[]) for plan in plans}
    for letter_id, event_id in written.cancelled:
        out[event_id].cancelled.append(letter_id)
    for letter_id, event_id, status, at in written.inserted:
        out[event_id].created.append(letter_id)
        if status == LetterStatus.scheduled and at <= now:
            out[event_id].due_now.append(letter_id)
    return out


def json_text(value: Any) -> str:
    """JSON for a jsonb column bound as text (what SQLAlchemy's JSONB type would store)."""
    return orjson.dumps(value, default=_json_default).decode()


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
