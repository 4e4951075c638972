"""Render the letter catalog as Markdown: ``python -m notifier.letters.catalog_doc --write``.

docs/letters.md is generated from the declarations, so it cannot drift from the code (a test
fails while it is stale).
"""

from __future__ import annotations

import json
import sys
from datetime import time, timedelta
from pathlib import Path
from typing import Any

from notifier.letters.catalog import AnySpec, Catalog
from notifier.letters.definitions import LETTERS
from notifier.letters.timing import After, AtLocalTime, Immediately, Timing

DOC = Path(__file__).resolve().parents[5] / "docs" / "letters.md"

HEADER = """# Letter catalog

Generated from `services/notifier/src/notifier/letters/definitions.py` (and `integrations.py`) by
`uv run python -m notifier.letters.catalog_doc --write` — do not edit by hand.

Every number is a typed parameter: the defaults below live in code; operators override them per
letter with `PATCH /v1/config/letters/{name}` (validated, audited) and switch letters on and off.
Scheduled letters respect quiet hours (default 21:00-09:00 recipient local time) unless a letter's
`respect_quiet_hours` is false; a letter not sent `expires_after` its due time ends `expired`.
Cancellation is race-proof (docs/decisions/0020): once a cancelling event committed, no letter it
cancels is sent, and an older trigger arriving later is stored as `cancelled`.

`channel` says what is sent: `email` letters are rendered from the notifier's templates
(`letters/templates/<letter>/<locale>/`); the others are integration letters composed by their
provider (seeds 000-002: `esp` campaign triggers, `newsletter` and `crm` actions): their gateway
message (action, recipient, lists, campaign, properties) is decided with the letter and stored in
its context as `message` (the dry run shows it). Suppressions do not stop `newsletter` and `crm`
actions (an unsubscribed address must still be unsubscribed or marked as spam).

A repeating letter is a series: when an occurrence ends (sent, failed, skipped or expired) the
next one is scheduled one interval after its due time (origin `repeat`), until one of its
cancelling events; an occurrence whose cancelling event came while it was being written is
cancelled when due (docs/decisions/0099).

| letter | channel | trigger | when | cancelled by | rule |
|---|---|---|---|---|---|
"""


def _duration(value: timedelta, *, hours: bool = False) -> str:
    """``1 day``, ``3 days``, or ``24 h`` with ``hours``; other values as timedelta prints them."""
    if value.seconds == 0 and not hours:
        return f"{value.days} day" if value.days == 1 else f"{value.days} days"
    if value.seconds % 3600 == 0:
        return f"{value.days * 24 + value.seconds // 3600} h"
    return str(value)


def _value(value: Any) -> str:
    if isinstance(value, timedelta):
        return _duration(value)
    if isinstance(value, time):
        return value.strftime("%H:%M")
    if isinstance(value, dict | list):
        return f"`{json.dumps(value, ensure_ascii=False)}`"
    return "—" if value is None else str(value)


def _timing(timing: Timing) -> str:
    if isinstance(timing, Immediately):
        return "immediately"
    if isinstance(timing, After):
        return f"+{_duration(timing.delay)}"
    if isinstance(timing, AtLocalTime):
        return f"+{timing.days} days, {timing.at.strftime('%H:%M')} local"
    raise TypeError(timing)


def _rule(spec: AnySpec) -> str:
    parts = []
    if spec.frequency is not None:
        parts.append("once per crossing, re-armed above the level")
        interval = spec.frequency.min_interval(spec.default_params())
        if interval is not None:
            parts.append(f"at most once per {_duration(interval, hours=True)} per client")
    if spec.recheck is not None:
        parts.append("re-checked at send: " + ", ".join(sorted(spec.recheck.needs)))
    if spec.dedup is not None:
        parts.append("deduplicated per subject")
    if spec.sequence:
        parts.append(f"sequence `{spec.sequence}`")
    if spec.repeat is not None:
        every = spec.repeat(spec.default_params())
        if every is not None:
            parts.append(f"repeats every {_duration(every)} until cancelled")
    source = spec.outbound.external_id_from if spec.outbound is not None else None
    if source:
        parts.append(f"recipient's id: the provider id of the last sent {source}")
    return "; ".join(parts) or "—"


def _row(spec: AnySpec) -> str:
    triggers = ", ".join(
        f"`{t.event_type}`" + (f" ({t.label})" if t.label else "") for t in spec.triggers
    )
    cancels = ", ".join(f"`{e}` (same {m})" for e, m in spec.cancelled_by.items()) or "—"
    timing = _timing(spec.timing(spec.default_params()))
    channel = spec.channel if spec.rendered else f"{spec.channel}: `{spec.action}`"
    return f"| {spec.name} | {channel} | {triggers} | {timing} | {cancels} | {_rule(spec)} |"


def _description(model: type[Any], name: str) -> str:
    """A field's description, inherited from a parent model when a subclass re-declares it."""
    for cls in model.__mro__:
        field = getattr(cls, "model_fields", {}).get(name)
        if field is not None and field.description:
            return str(field.description)
    return ""


def _params(spec: AnySpec) -> list[str]:
    defaults = spec.default_params()
    lines = [f"### {spec.name}", "", spec.description, ""]
    lines += ["| parameter | default | meaning |", "|---|---|---|"]
    for name in spec.params.model_fields:
        desc = _description(spec.params, name).replace("|", "\\|")
        lines.append(f"| `{name}` | {_value(getattr(defaults, name))} | {desc} |")
    return [*lines, ""]


def render(catalog: Catalog = LETTERS) -> str:
    rows = [_row(spec) for spec in catalog]
    details = [line for spec in catalog for line in _params(spec)]
    return HEADER + "\n".join(rows) + "\n\n## Parameters\n\n" + "\n".join(details)


def main(argv: list[str]) -> int:
    text = render()
    if "--write" in argv:
        DOC.write_text(text)
        print(f"wrote {DOC}")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
