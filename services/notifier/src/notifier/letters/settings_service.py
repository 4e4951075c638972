"""Effective letter settings: code defaults + database overrides, and audited updates.

Public for the operator API: :func:`effective`, :func:`effective_all`, :func:`update`,
:func:`audit_trail`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from notifier_common.errors import NotFound, Unprocessable
from notifier_common.logging import get_logger
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from notifier.enrichment.cache import SingleFlightCache
from notifier.letters import repository
from notifier.letters.catalog import AnySpec, Catalog, LetterParams
from notifier.letters.definitions import LETTERS
from notifier.models import LetterSetting, LetterSettingAudit

log = get_logger("notifier.letters.settings")


@dataclass(frozen=True)
class EffectiveSettings:
    letter: str
    enabled: bool
    params: LetterParams  # typed, defaults + overrides
    overrides: dict[str, Any]  # what the database holds (JSON)
    updated_at: datetime | None = None
    updated_by: str | None = None


def _effective(spec: AnySpec, row: LetterSetting | None) -> EffectiveSettings:
    if row is None:
        return EffectiveSettings(spec.name, True, spec.default_params(), {})
    try:
        params = spec.parse_params(row.params)
    except ValidationError:  # an override that no longer validates (code changed): defaults
        log.error("letters.settings_invalid", letter=spec.name, overrides=row.params)
        params = spec.default_params()
    return EffectiveSettings(
        spec.name, row.enabled, params, dict(row.params), row.updated_at, row.updated_by
    )


async def effective(
    session: AsyncSession, names: Sequence[str], *, catalog: Catalog = LETTERS
) -> dict[str, EffectiveSettings]:
    """Effective settings of these letters in one query."""
    rows = await repository.settings_rows(session, list(names))
    return {n: _effective(catalog.get(n), rows.get(n)) for n in names}


async def effective_all(
    session: AsyncSession, *, catalog: Catalog = LETTERS
) -> list[EffectiveSettings]:
    rows = await repository.settings_rows(session)
    return [_effective(spec, rows.get(spec.name)) for spec in catalog]


def _snapshot(enabled: bool, params: Mapping[str, Any]) -> dict[str, Any]:
    return {"enabled": enabled, "params": dict(params)}


def validate_overrides(spec: AnySpec, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The overrides normalised to JSON; raises :class:`Unprocessable` with field errors."""
    try:
        typed = spec.parse_params(overrides)
    except ValidationError as exc:
        errors = [
            {
                "loc": "params." + ".".join(str(p) for p in e["loc"]),
                "msg": e["msg"],
                "type": e["type"],
            }
            for e in exc.errors(include_url=False)
        ]
        raise Unprocessable(f"invalid parameters for {spec.name}", errors=errors) from exc
    as_json = typed.model_dump(mode="json")
    return {key: as_json[key] for key in overrides}


async def update(
    session: AsyncSession,
    letter: str,
    *,
    changed_by: str,
    enabled: bool | None = None,
    params: Mapping[str, Any] | None = None,
    reset_params: bool = False,
    catalog: Catalog = LETTERS,
) -> EffectiveSettings:
    """Switch a letter and/or change its parameter overrides, with an audit row.

    ``params`` is merged into the stored overrides (``reset_params`` drops them first); the
    result is validated against the letter's typed parameters. Unknown letter -> NotFound;
    invalid parameters -> Unprocessable (nothing written).

    A switch alone (no ``params``, no ``reset_params``) keeps the stored overrides as they are:
    one stored before a rule it breaks existed (e.g. a negative duration) is already ignored by
    the reads (:func:`_effective`: defaults), and must not stop an operator from switching the
    letter off. Any ``params`` change validates the whole merged result, stored values included.
    """
    if letter not in catalog:
        raise NotFound(f"letter {letter!r} does not exist")
    spec = catalog.get(letter)
    current = await repository.setting_for_update(session, letter)
    old = _snapshot(current.enabled, current.params) if current is not None else None
    base: dict[str, Any] = {} if reset_params or current is None else dict(current.params)
    if params is None and not reset_params:
        merged = base
    else:
        merged = validate_overrides(spec, {**base, **(params or {})})
    new_enabled = enabled if enabled is not None else (current.enabled if current else True)
    row = await repository.upsert_setting(
        session, letter=letter, enabled=new_enabled, params=merged, updated_by=changed_by
    )
    new = _snapshot(new_enabled, merged)
    if new != old:
        await repository.insert_setting_audit(
            session, letter=letter, changed_by=changed_by, old=old, new=new
        )
    log.info("letters.settings_updated", letter=letter, changed_by=changed_by, new=new)
    return _effective(spec, row)


async def audit_trail(session: AsyncSession, letter: str) -> list[LetterSettingAudit]:
    return await repository.setting_audit(session, letter)


class SettingsCache:
    """Effective settings of every letter, read from the database at most once per ``ttl``
    seconds per process (single-flight), for the worker's event processing.

    Staleness: an update made through the operator API (:func:`update`) is used by event
    processing at most ``ttl`` seconds later (``NOTIFIER_LETTER_SETTINGS_CACHE_SECONDS``,
    default 5). ``ttl=0`` reads on every call. The drain and the operator API read the database.
    """

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        ttl: float,
        catalog: Catalog = LETTERS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.catalog = catalog
        self._cache: SingleFlightCache[dict[str, EffectiveSettings]] = SingleFlightCache(
            ttl=ttl, max_entries=1, clock=clock
        )

    async def get(self) -> dict[str, EffectiveSettings]:
        return await self._cache.get("all", self._load)

    def invalidate(self) -> None:
        self._cache.invalidate("all")

    async def _load(self) -> dict[str, EffectiveSettings]:
        async with self.sessionmaker() as session:
            settings = await effective_all(session, catalog=self.catalog)
        return {s.letter: s for s in settings}
