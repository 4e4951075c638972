"""The claims of the drain and the immediate send: due letters locked for the sending transaction.

The claim is the row lock (decision 0103, as the immediate send's since decision 0090): the
drain's transaction locks a batch of due rows (``FOR UPDATE SKIP LOCKED``: rows another drain
lane, an immediate send or a cancel holds are passed over), sends them and records the results
before it commits. No ``sending`` version of the row is written; a crash rolls the transaction
back and the letters are due again. Rows an earlier version left ``sending`` (its claim
committed with a lease) are taken once their lease ran out.

Due rows are taken in ``(send_at, id)`` order, and a drain pass continues after the last row it
locked (``after``, decision 0105): from the front, every batch would step again over the rows
the other lanes and workers hold and over the entries of the rows sent moments ago (not yet
removable while any of those transactions is open): ~3 times the server CPU per row taken
with 4 batches in flight.

Contexts come back as JSON text, decoded by :func:`loads_exact` (decision 0065): through the
engine's jsonb codec each was decoded by stdlib ``json.loads`` (~10 % of the drain worker's
CPU in the issue 7 profile); orjson is used unless the text holds a run of 19 or more digits,
where the standard library decodes it, so an integer beyond 64 bits stays an exact ``int``
(orjson would make it a float, decision 0058).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import fields
from datetime import datetime
from typing import Any

import orjson
from notifier_common.db import DriverStatement
from sqlalchemy import BigInteger, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from notifier.letters.repository import Claimed

#: ``Claimed``'s fields in order, the context as text (both branches of the claim select them)
_COLUMNS = """l.id, l.letter, l.client_id, l.contract_id, l.channel, l.recipient, l.locale,
        CAST(l.context AS text), l.attempts, l.send_at, l.expires_at"""
#: due rows in ``ix_letters_due``'s order; ``{after}``: nothing, or where a pass continues
_DUE = """SELECT {columns}
    FROM notifier.letters AS l
    WHERE l.status = 'scheduled' AND l.send_at <= :now{after}
    ORDER BY l.send_at, l.id
    LIMIT :limit
    FOR UPDATE SKIP LOCKED""".replace("{columns}", _COLUMNS)
#: from the front, with the rows an earlier version left ``sending`` past their lease
_LOCK_DUE = text(
    """
WITH due AS (
    {due}
), stale AS (
    SELECT {columns}
    FROM notifier.letters AS l
    WHERE l.status = 'sending' AND l.lease_until <= :now
    ORDER BY l.lease_until
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
)
SELECT * FROM due UNION ALL SELECT * FROM stale
""".replace("{due}", _DUE.replace("{after}", "")).replace("{columns}", _COLUMNS)
)
#: the due rows after a pass's last locked one (decision 0105)
_LOCK_DUE_AFTER = text(
    _DUE.replace(
        "{after}",
        "\n        AND (l.send_at, l.id)"
        " > (CAST(:after_send_at AS timestamptz), CAST(:after_id AS bigint))",
    )
)
#: the immediate send's claim (decision 0090): these letters, if still scheduled and due
_LOCK_DUE_IDS = text(
    """
SELECT {columns}
FROM notifier.letters AS l
WHERE l.id = ANY(:ids) AND l.status = 'scheduled' AND l.send_at <= :now
ORDER BY l.id
FOR UPDATE SKIP LOCKED
""".replace("{columns}", _COLUMNS)
).bindparams(bindparam("ids", type_=ARRAY(BigInteger())))
#: the claims run on asyncpg's connection of the session's transaction (decision 0107)
_LOCK_DUE_ON_DRIVER = DriverStatement.of(_LOCK_DUE)
_LOCK_DUE_AFTER_ON_DRIVER = DriverStatement.of(_LOCK_DUE_AFTER)
_LOCK_DUE_IDS_ON_DRIVER = DriverStatement.of(_LOCK_DUE_IDS)
_CONTEXT = [f.name for f in fields(Claimed)].index("context")


#: a due row's place in the drain's order: ``(send_at, id)``
DueKey = tuple[datetime, int]


async def lock_due(
    session: AsyncSession, *, now: datetime, limit: int, after: DueKey | None = None
) -> list[Claimed]:
    """Lock up to ``limit`` letters due at ``now`` for this transaction, oldest first, each
    context decoded by :func:`loads_exact`; the caller sends and records them before it
    commits (``LetterSender.drain``).

    Without ``after``, from the front, with as many rows left ``sending`` past their lease; with
    it, only due rows after that key: rows before it (passed over while another transaction held
    them, or written since) are found by the next scan from the front."""
    if after is None:
        return _claimed(await _LOCK_DUE_ON_DRIVER.fetch(session, {"now": now, "limit": limit}))
    params = {"now": now, "limit": limit, "after_send_at": after[0], "after_id": after[1]}
    return _claimed(await _LOCK_DUE_AFTER_ON_DRIVER.fetch(session, params))


def last_key(claimed: Sequence[Claimed]) -> DueKey:
    """The greatest ``(send_at, id)`` among locked rows (the next scan's ``after``)."""
    return max((c.send_at, c.id) for c in claimed)


async def lock_due_ids(
    session: AsyncSession, ids: Sequence[int], *, now: datetime
) -> list[Claimed]:
    """Lock these letters for this transaction if still scheduled and due (the immediate-send
    path, decision 0090): rows another transaction holds (a drain's batch, a cancel) are
    skipped; the caller sends and records them before it commits."""
    return _claimed(await _LOCK_DUE_IDS_ON_DRIVER.fetch(session, {"ids": list(ids), "now": now}))


def _claimed(rows: Iterable[Any]) -> list[Claimed]:
    """Rows in ``Claimed``'s field order, built positionally (``Claimed(**row._mapping)`` was
    3-4 % of the drain's CPU, decision 0058), each context decoded by :func:`loads_exact`."""
    at = _CONTEXT
    out = []
    for row in rows:
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
