"""The drain's own claim query: contexts as JSON text, decoded exactly and fast (decision 0065).

Through the engine's jsonb codec each context was decoded by stdlib ``json.loads`` (~10 % of
the drain worker's CPU in the issue 7 profile). Here the repository's claim statement returns
``context::text`` and :func:`loads_exact` decodes it: orjson, unless the text holds
a run of 19 or more digits, where the standard library decodes it, so an integer beyond 64 bits
stays an exact ``int`` (orjson would make it a float, decision 0058).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import fields
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from notifier.letters import repository
from notifier.letters.repository import Claimed

#: ``repository``'s claim with the context returned as text: derived from its statement, so
#: the two cannot drift apart (the ``RETURNING`` list stays in ``Claimed``'s field order)
_CLAIM_DUE_SQL = repository._CLAIM_DUE_SQL.replace("l.context,", "CAST(l.context AS text),", 1)
if _CLAIM_DUE_SQL.count("CAST(l.context AS text)") != 1:  # pragma: no cover - loud at import
    raise RuntimeError("drain_sql: repository's claim no longer returns l.context")
_CONTEXT = [f.name for f in fields(Claimed)].index("context")


async def claim_due(
    session: AsyncSession,
    *,
    now: datetime,
    lease_until: datetime,
    token: uuid.UUID,
    limit: int,
) -> list[Claimed]:
    """Claim due scheduled letters and letters whose lease ran out (a crashed worker's): the
    repository's claim statement, with each context decoded by :func:`loads_exact`."""
    result = await session.execute(
        text(_CLAIM_DUE_SQL),
        {"now": now, "lease_until": lease_until, "token": token, "limit": limit},
    )
    at = _CONTEXT
    out = []
    for row in result:
        values = list(row)
        values[at] = loads_exact(values[at])
        out.append(Claimed(*values))
    return out


#: every ASCII digit to ``0``, every other byte to a space: 19 zeros in the translated text mean
#: "a run of 19+ digits somewhere" (in a number or inside a string: both are sent to ``json``)
_DIGITS_ONLY = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_LONG_RUN = b"0" * 19


def loads_exact(doc: str) -> Any:
    """``json.loads(doc)``, exactly, about twice as fast on letter contexts.

    orjson gives the same values as the standard library for JSON text as PostgreSQL writes it
    (no duplicate keys, no NaN, no lone surrogates) except integers outside 64 bits (and
    outside ``-2**63``), which it turns into floats. Such a literal has at least 19 digits in a
    row, so any text with a run of 19 digits is decoded by ``json``; so is anything orjson
    refuses (an error is then ``json``'s own). Floats are correctly rounded by both."""
    raw = doc.encode("utf-8", "surrogatepass")  # a lone surrogate: orjson refuses, json decodes
    if _LONG_RUN in raw.translate(_DIGITS_ONLY):
        return json.loads(doc)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(doc)
