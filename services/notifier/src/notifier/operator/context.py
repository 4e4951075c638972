"""Building and rendering letter contexts for operator actions (manual send, resend --fresh,
preview, dry run) with the engine's own functions, so what an operator sees is what the drain
sends."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any, cast

from notifier_common.errors import AppError, Unprocessable
from notifier_common.events import AnyEvent, Payload, describe_errors, parse_event
from pydantic import BaseModel, ValidationError

from notifier.enrichment import UpstreamError, UpstreamNotFound
from notifier.letters import rendering
from notifier.letters.catalog import AnySpec, Facts, LetterParams
from notifier.letters.service import Enricher, PlanConfig, build_context, fetch_facts
from notifier.operator.schemas import Rendered

PREVIEW_UNSUBSCRIBE = "https://example.invalid/unsubscribe/preview"


class UpstreamUnavailableError(AppError):
    status_code = 503
    title = "Service Unavailable"


class OperatorTrigger(BaseModel):
    """Stands in for the triggering event of a letter an operator creates."""

    id: uuid.UUID
    type: str = "operator.manual"
    client_id: str
    occurred_at: datetime
    payload: Payload = Payload()


def operator_event(
    spec: AnySpec, *, client_id: str, payload: Mapping[str, Any], now: datetime
) -> AnyEvent:
    """The letter's triggering event (its first trigger's type) with an operator's payload,
    validated like any event: 422 naming ``body.event_payload.<field>`` otherwise."""
    event_type = spec.triggers[0].event_type
    try:
        return parse_event(
            {
                "id": uuid.uuid4(),
                "type": event_type,
                "occurred_at": now,
                "producer": "operator",
                "client_id": client_id,
                "payload": dict(payload),
            }
        )
    except ValidationError as exc:
        errors = [
            {**e, "loc": "body.event_payload" + e["loc"].removeprefix("payload")}
            for e in describe_errors(exc)
        ]
        raise Unprocessable(
            f"event_payload is not a valid {event_type} payload", errors=errors
        ) from exc


async def facts_for(
    enricher: Enricher,
    spec: AnySpec,
    *,
    client_id: str,
    contract_id: str | None,
    now: datetime,
    event: AnyEvent | None = None,
) -> Facts:
    """Fresh upstream data for a letter an operator creates, about ``event`` (built by
    ``operator_event``) or a stand-in without payload."""
    trigger = event or OperatorTrigger(id=uuid.uuid4(), client_id=client_id, occurred_at=now)
    try:
        facts = await fetch_facts(enricher, cast(Any, trigger), [spec])
        if "contract" in spec.enrichments and contract_id:
            facts = Facts(
                event=facts.event,
                client=facts.client,
                balance=facts.balance,
                contract=await enricher.contract(contract_id, fresh=True),
            )
    except UpstreamNotFound as exc:
        raise Unprocessable(f"upstream does not know it: {exc}") from exc
    except UpstreamError as exc:
        raise UpstreamUnavailableError(f"upstream unavailable: {exc}") from exc
    return facts


def context_for(
    spec: AnySpec, facts: Facts, params: LetterParams, config: PlanConfig
) -> dict[str, Any]:
    return build_context(spec, facts, params, config)


def merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Deep merge of JSON objects: nested objects merge, everything else replaces."""
    out = dict(base)
    for key, value in overrides.items():
        current = out.get(key)
        if isinstance(current, Mapping) and isinstance(value, Mapping):
            out[key] = merge(current, value)
        else:
            out[key] = value
    return out


def require_templates(spec: AnySpec) -> None:
    """422 for an integration letter: its provider composes it, there is nothing to render."""
    if not spec.rendered:
        raise Unprocessable(
            f"{spec.name} is an integration letter ({spec.channel}: {spec.action}) composed by "
            "its provider: it has no templates to render; its gateway message is the "
            "context's `message` (shown by the dry run)"
        )


def render(
    spec: AnySpec, locale: str, context: Mapping[str, Any], *, letter_id: int | None
) -> Rendered:
    """Render as the drain would (letter id and unsubscribe link filled in); 422 on error
    and for an integration letter (it has no templates: its provider composes it)."""
    require_templates(spec)
    variables = dict(context)
    variables["letter"] = {"name": spec.name, "id": letter_id}
    links = variables.get("links")
    variables["links"] = {
        **(links if isinstance(links, Mapping) else {}),
        "unsubscribe_url": PREVIEW_UNSUBSCRIBE,
    }
    try:
        out = rendering.render(spec.template_name, locale, variables)
    except rendering.TemplateRenderError as exc:
        raise Unprocessable(f"render error: {exc}") from exc
    return Rendered(subject=out.subject, html=out.html, text=out.text)


def try_render(
    spec: AnySpec, locale: str, context: Mapping[str, Any]
) -> tuple[Rendered | None, str | None]:
    try:
        return render(spec, locale, context, letter_id=None), None
    except Unprocessable as exc:
        return None, exc.detail
