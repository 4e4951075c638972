"""Dry run of an event and template preview: the engine's read-only ``plan()`` plus rendering.
Nothing is written to the database and nothing is enqueued; enrichment over HTTP is read-only.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from notifier_common.errors import NotFound, Unprocessable
from notifier_common.events import AnyEvent
from sqlalchemy.ext.asyncio import AsyncSession

from notifier.enrichment import UpstreamError, UpstreamNotFound
from notifier.events import service as events_service
from notifier.letters import service as engine_service
from notifier.letters import settings_service
from notifier.letters.catalog import AnySpec
from notifier.letters.definitions import LETTERS
from notifier.letters.service import Decision, Enricher, Plan, PlanConfig
from notifier.letters.service import PlannedLetter as EnginePlanned
from notifier.letters.timing import send_at
from notifier.models import LetterStatus
from notifier.operator import context as ctx
from notifier.operator import repository
from notifier.operator.engine import recipient_zone
from notifier.operator.schemas import (
    CancelledLetter,
    ConditionOut,
    DryRunResult,
    PlannedLetter,
    PreviewRequest,
    PreviewResult,
)


def parse(body: Any) -> AnyEvent:
    """The event, validated as ``POST /v1/events`` validates it: a U+0000 in any string is a
    ``string_nul`` field error here too, not a query PostgreSQL refuses (decision 0094)."""
    checked = events_service.validate(body)
    if checked.event is None:
        raise Unprocessable("invalid event", errors=checked.errors)
    return checked.event


async def dry_run(
    session: AsyncSession, body: Any, *, enricher: Enricher, config: PlanConfig, now: datetime
) -> DryRunResult:
    event = parse(body)
    notes: list[str] = []
    try:
        plan = await engine_service.plan(session, event, enricher=enricher, config=config, now=now)
    except UpstreamNotFound as exc:
        raise Unprocessable(f"the event would fail: upstream does not know it: {exc}") from exc
    except UpstreamError as exc:
        raise ctx.UpstreamUnavailableError(f"upstream unavailable: {exc}") from exc
    scheduled = [await _planned(session, p, config=config, now=now) for p in plan.letters]
    planned_names = {p.letter for p in plan.letters}
    skipped = [_not_planned(d) for d in plan.decisions if d.letter not in planned_names]
    for d in plan.decisions:
        if d.kind == "cancelled_earlier":
            notes.append(f"{d.letter}: {d.reason}")
    if plan.states:
        notes.append("frequency state would change: " + ", ".join(s.letter for s in plan.states))
    return DryRunResult(
        event_type=event.type,
        client_id=event.client_id,
        would_schedule=scheduled + skipped,
        would_cancel=await _cancellations(session, plan),
        notes=notes,
    )


def _decision_condition(d: Decision) -> ConditionOut:
    return ConditionOut(name=f"{d.letter}.{d.kind}", passed=d.kind == "planned", reason=d.reason)


async def _planned(
    session: AsyncSession, p: EnginePlanned, *, config: PlanConfig, now: datetime
) -> PlannedLetter:
    spec = LETTERS.get(p.letter)
    eff = (await settings_service.effective(session, [spec.name]))[spec.name]
    tz = recipient_zone(p.context)
    before = send_at(p.triggered_at, spec.timing(eff.params), tz=tz, quiet=None, not_before=now)
    preview, error, message = None, None, p.context.get("message")
    if spec.rendered:
        preview, error = ctx.try_render(spec, p.locale, p.context)
    cancelled = p.status == LetterStatus.cancelled
    return PlannedLetter(
        letter=p.letter,
        action="skip" if cancelled else ("send_now" if p.send_at <= now else "schedule"),
        recipient=p.recipient,
        channel=p.channel,
        locale=p.locale,
        planned_at=before,
        send_at=p.send_at,
        quiet_hours_shift=before != p.send_at,
        expires_at=p.expires_at,
        conditions=[ConditionOut(name=f"{p.letter}.condition", passed=True)],
        reason=p.cancel_reason,
        preview=preview,
        render_error=error,
        message=message,
    )


def _not_planned(d: Decision) -> PlannedLetter:
    return PlannedLetter(
        letter=d.letter, action="skip", conditions=[_decision_condition(d)], reason=d.reason
    )


async def _cancellations(session: AsyncSession, plan: Plan) -> list[CancelledLetter]:
    out: list[CancelledLetter] = []
    for c in plan.cancellations:
        rows = await repository.pending_matching(
            session,
            letters=c.letters,
            column="client_id" if c.match == "client" else "contract_id",
            value=c.value,
            occurred_at=plan.event.occurred_at,
        )
        out += [
            CancelledLetter(
                id=r.id,
                letter=r.letter,
                client_id=r.client_id,
                send_at=r.send_at,
                reason=f"cancelled by {plan.event.type}",
            )
            for r in rows
        ]
    return out


def _preview_spec(name: str) -> AnySpec:
    if name not in LETTERS:
        raise NotFound(f"letter {name!r} is not in the catalog")
    return LETTERS.get(name)


async def preview(
    session: AsyncSession,
    letter: str,
    req: PreviewRequest,
    *,
    enricher: Enricher,
    config: PlanConfig,
    now: datetime,
) -> PreviewResult:
    """Render a letter for a client's current data (or only the given context) and locale."""
    spec = _preview_spec(letter)
    ctx.require_templates(spec)
    base: dict[str, Any] = {}
    locale = req.locale or "en"
    if req.client_id is not None:
        eff = (await settings_service.effective(session, [spec.name]))[spec.name]
        facts = await ctx.facts_for(
            enricher, spec, client_id=req.client_id, contract_id=req.contract_id, now=now
        )
        base = ctx.context_for(spec, facts, eff.params, config)
        assert facts.client is not None  # templated letters need the client
        locale = req.locale or facts.client.locale
    context = ctx.merge(base, req.context_overrides)
    rendered = ctx.render(spec, locale, context, letter_id=None)
    resolved = locale if locale in {"ru", "en"} else "en"
    return PreviewResult(
        letter=spec.name, locale=resolved, context=context, **rendered.model_dump()
    )
