"""Building and rendering letter contexts for operator actions (manual send, resend --fresh,
preview, dry run) with the engine's own functions, so what an operator sees is what the drain
sends."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any, cast

from notifier_common.errors import AppError, Unprocessable
from notifier_common.events import Payload
from pydantic import BaseModel

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


async def facts_for(
    enricher: Enricher,
    spec: AnySpec,
    *,
    client_id: str,
    contract_id: str | None,
    now: datetime,
) -> Facts:
    """Fresh upstream data for a letter an operator creates (no event)."""
    trigger = OperatorTrigger(id=uuid.uuid4(), client_id=client_id, occurred_at=now)
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


def render(
    spec: AnySpec, locale: str, context: Mapping[str, Any], *, letter_id: int | None
) -> Rendered:
    """Render as the drain would (letter id and unsubscribe link filled in); 422 on error."""
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
