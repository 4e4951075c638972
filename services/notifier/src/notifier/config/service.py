"""Configuration decisions: describe the catalog with effective settings; updates go through
the letter engine's audited ``settings_service`` (the one writer of ``letter_settings``)."""

from __future__ import annotations

from typing import Any

from notifier_common.errors import NotFound
from sqlalchemy.ext.asyncio import AsyncSession

from notifier.config.schemas import AuditOut, LetterConfigOut, LetterConfigPatch
from notifier.letters import rendering, settings_service
from notifier.letters.catalog import AnySpec
from notifier.letters.definitions import LETTERS
from notifier.letters.settings_service import EffectiveSettings
from notifier.operator import engine


def _spec(name: str) -> AnySpec:
    if name not in LETTERS:
        raise NotFound(f"letter {name!r} is not in the catalog")
    return LETTERS.get(name)


def describe(spec: AnySpec, eff: EffectiveSettings) -> LetterConfigOut:
    return LetterConfigOut(
        name=spec.name,
        description=spec.description,
        channel=spec.channel,
        action=spec.action,
        rendered=spec.rendered,
        triggers=sorted({t.event_type for t in spec.triggers}),
        cancelled_by=sorted(spec.cancelled_by),
        timing=engine.describe_timing(spec.name, eff.overrides) or "",
        enabled=eff.enabled,
        defaults=spec.default_params().model_dump(mode="json"),
        overrides=eff.overrides,
        effective=eff.params.model_dump(mode="json"),
        params_schema=spec.params.model_json_schema(),
        locales=rendering.available_locales(spec.template_name) if spec.rendered else [],
        updated_at=eff.updated_at,
        updated_by=eff.updated_by,
    )


async def list_letters(session: AsyncSession) -> list[LetterConfigOut]:
    settings = await settings_service.effective_all(session)
    return [describe(LETTERS.get(e.letter), e) for e in settings]


async def get_letter(session: AsyncSession, name: str) -> LetterConfigOut:
    spec = _spec(name)
    eff = (await settings_service.effective(session, [name]))[name]
    return describe(spec, eff)


async def update_letter(
    session: AsyncSession, name: str, patch: LetterConfigPatch, *, by: str
) -> LetterConfigOut:
    spec = _spec(name)
    eff = await settings_service.update(
        session,
        name,
        changed_by=by,
        enabled=patch.enabled,
        params=patch.params,
        reset_params=patch.reset_params,
    )
    return describe(spec, eff)


async def audit(session: AsyncSession, name: str, *, limit: int) -> list[AuditOut]:
    _spec(name)
    rows = await settings_service.audit_trail(session, name)
    return [AuditOut.model_validate(r) for r in rows[:limit]]


def parse_assignments(pairs: list[str]) -> dict[str, Any]:
    """CLI ``key=value`` pairs; values parsed as JSON when they are JSON, else kept as text."""
    import json

    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"expected key=value, got {pair!r}")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out
