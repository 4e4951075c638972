"""Letters an operator creates: manual send of a catalog letter and resend of a letter.

Both write new ``scheduled`` rows due now (origin ``manual`` / ``resend``, ``created_by`` = the
token name). The API then enqueues a ``send_letters`` job after its commit (operator/dispatch.py)
so a worker sends them at once, through the same delivery path as every letter (gateway
suppressions and integration switches always apply); the per-minute drain is the safety net.
A bypassed manual send records ``context.operator.bypass_conditions``, which the send-time
recheck honours.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from notifier_common.errors import Conflict, NotFound, Unprocessable
from notifier_common.logging import get_logger
from sqlalchemy.ext.asyncio import AsyncSession

from notifier.letters import settings_service
from notifier.letters.catalog import AnySpec, Facts, LetterParams
from notifier.letters.definitions import LETTERS
from notifier.letters.service import (
    Enricher,
    PlanConfig,
    addressees,
    event_locale,
    outbound_message,
)
from notifier.letters.settings_service import EffectiveSettings
from notifier.models import Letter, LetterOrigin, LetterStatus
from notifier.operator import context as ctx
from notifier.operator import repository
from notifier.operator.schemas import ConditionOut, LetterOut, SendRequest, SendResult

log = get_logger("notifier.operator")

RESENDABLE = frozenset(
    {
        LetterStatus.sent,
        LetterStatus.failed,
        LetterStatus.cancelled,
        LetterStatus.skipped,
        LetterStatus.expired,
    }
)


def _catalog_spec(name: str) -> AnySpec:
    if name not in LETTERS:
        raise Unprocessable(
            f"letter {name!r} is not in the catalog",
            errors=[
                {"loc": "body.letter", "msg": "not a configured letter", "type": "value_error"}
            ],
        )
    return LETTERS.get(name)


async def _switched_on(session: AsyncSession, spec: AnySpec) -> EffectiveSettings:
    """The letter's effective settings; a letter switched off in the config answers 409 (a
    manual send or resend of it would only end ``skipped`` at the drain)."""
    eff = (await settings_service.effective(session, [spec.name]))[spec.name]
    if not eff.enabled:
        raise Conflict(f"letter {spec.name} is switched off; enable it first")
    return eff


def evaluate_condition(spec: AnySpec, facts: Facts, params: LetterParams) -> ConditionOut:
    """The letter's condition on current data; a balance rule checks the level now (the
    crossing and frequency state belong to events and are not touched)."""
    try:
        reason = spec.condition(facts, params)
        if reason is None and spec.frequency is not None:
            if facts.balance is None:
                reason = "balance unknown"
            else:
                level = spec.frequency.level(facts)
                amount = facts.balance.amount
                below = amount <= level if spec.frequency.inclusive else amount < level
                if not below:
                    reason = f"balance {amount} is not below the level {level}"
    except Exception as exc:  # a condition that needs event data cannot judge a manual send
        reason = f"condition cannot be evaluated without an event: {type(exc).__name__}"
    return ConditionOut(name=f"{spec.name}.condition", passed=reason is None, reason=reason)


def _row(
    spec: AnySpec,
    *,
    client_id: str,
    contract_id: str | None,
    recipient: str,
    locale: str,
    context: dict[str, Any],
    origin: LetterOrigin,
    by: str,
    now: datetime,
    resend_of: int | None = None,
) -> dict[str, Any]:
    return {
        "event_id": None,
        "letter": spec.name,
        "client_id": client_id,
        "contract_id": contract_id,
        "channel": spec.channel,
        "recipient": recipient,
        "locale": locale,
        "context": context,
        "status": LetterStatus.scheduled,
        "triggered_at": now,
        "send_at": now,
        "expires_at": None,
        "dedup_key": None,
        "origin": origin,
        "created_by": by,
        "resend_of": resend_of,
        "created_at": now,
        "updated_at": now,
    }


async def manual_send(
    session: AsyncSession,
    req: SendRequest,
    *,
    enricher: Enricher,
    config: PlanConfig,
    by: str,
    now: datetime,
) -> SendResult:
    spec = _catalog_spec(req.letter)
    eff = await _switched_on(session, spec)
    event = None
    if req.event_payload is not None:
        event = ctx.operator_event(
            spec, client_id=req.client_id, payload=req.event_payload, now=now
        )
    elif not spec.rendered:
        raise Unprocessable(
            f"{spec.name} is built from its {spec.triggers[0].event_type} event: give that "
            "event's payload as event_payload",
            errors=[{"loc": "body.event_payload", "msg": "required", "type": "missing"}],
        )
    facts = await ctx.facts_for(
        enricher, spec, client_id=req.client_id, contract_id=req.contract_id, now=now, event=event
    )
    condition = evaluate_condition(spec, facts, eff.params)
    if not condition.passed:
        if not req.bypass_conditions:
            raise Conflict(f"condition not met: {condition.reason} (bypass_conditions to force)")
        condition = condition.model_copy(update={"bypassed": True})
    base = ctx.context_for(spec, facts, eff.params, config)
    locale = facts.client.locale if facts.client is not None else event_locale(facts.event)
    created: list[Letter] = []
    cid = req.contract_id or (facts.contract.id if facts.contract else None)
    for to in addressees(spec, facts, eff.params):
        context = base
        if not spec.rendered:
            context = {**base, "message": outbound_message(spec, facts, eff.params, to)}
        context = ctx.merge(context, req.context_overrides or {})
        context["operator"] = {"by": by, "bypass_conditions": req.bypass_conditions}
        if spec.rendered:
            ctx.render(spec, locale, context, letter_id=None)
        row = _row(
            spec,
            client_id=req.client_id,
            contract_id=cid,
            recipient=to.address,
            locale=locale,
            context=context,
            origin=LetterOrigin.manual,
            by=by,
            now=now,
        )
        created.append(await repository.insert_letter(session, row))
    log.info("operator.manual_send", letter=spec.name, client_id=req.client_id, by=by)
    return SendResult(
        letters=[LetterOut.model_validate(letter) for letter in created], condition=condition
    )


async def resend(
    session: AsyncSession,
    letter_id: int,
    *,
    fresh: bool,
    enricher: Enricher,
    config: PlanConfig,
    by: str,
    now: datetime,
) -> LetterOut:
    """A new letter linked by ``resend_of``, from the stored snapshot or fresh enrichment,
    to the same recipient. Pending letters (scheduled / sending) and letters switched off in
    the config answer 409."""
    original = await repository.get_letter(session, letter_id, lock=True)
    if original is None:
        raise NotFound(f"letter {letter_id} does not exist")
    if original.status not in RESENDABLE:
        raise Conflict(
            f"letter {letter_id} is {original.status.value}: it is still pending; "
            "cancel it or wait for it to finish"
        )
    spec = _catalog_spec(original.letter)
    eff = await _switched_on(session, spec)
    context = dict(original.context or {})
    if fresh and not spec.rendered:
        raise Unprocessable(
            f"{spec.name} is an integration letter: it is resent with its stored message "
            "(fresh re-fetches the data of templated letters)"
        )
    if fresh:
        facts = await ctx.facts_for(
            enricher,
            spec,
            client_id=original.client_id,
            contract_id=original.contract_id,
            now=now,
        )
        rebuilt = ctx.context_for(spec, facts, eff.params, config)
        rebuilt["event"] = context.get("event", rebuilt["event"])  # keep what triggered it
        context = rebuilt
    context["operator"] = {"by": by, "resend_of": letter_id, "fresh": fresh}
    if spec.rendered:
        ctx.render(spec, original.locale, context, letter_id=None)
    row = _row(
        spec,
        client_id=original.client_id,
        contract_id=original.contract_id,
        recipient=original.recipient,
        locale=original.locale,
        context=context,
        origin=LetterOrigin.resend,
        by=by,
        now=now,
        resend_of=original.id,
    )
    letter = await repository.insert_letter(session, row)
    log.info("operator.resend", letter_id=letter_id, new_letter_id=letter.id, by=by, fresh=fresh)
    return LetterOut.model_validate(letter)
