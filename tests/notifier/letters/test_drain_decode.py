"""The drain's context decoding is exactly ``json.loads`` (decision 0065)."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from notifier.letters import drain_sql
from notifier.letters.drain_sql import loads_exact
from notifier_common.db import session_scope
from sqlalchemy import text

from tests.notifier.letters.conftest import Engine
from tests.notifier.letters.test_drain_pipeline import DUE, schedule_offer_reminders


def same(doc: str) -> None:
    expected = json.loads(doc)
    got = loads_exact(doc)
    assert got == expected
    assert _shape(got) == _shape(expected)  # same types all the way down (int stays int)


def _shape(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(v) for v in value]
    return (type(value).__name__, repr(value))


@pytest.mark.parametrize(
    "doc",
    [
        "{}",
        "null",
        '{"n": 18446744073709551615, "m": -9223372036854775808}',  # orjson's own range
        '{"n": 18446744073709551616}',  # 2**64: orjson would give a float
        '{"n": -9223372036854775809}',
        f'{{"n": {2**70}, "list": [1, {-(2**200)}]}}',
        '{"n": 9999999999999999999}',  # 19 digits, in range of u64
        '{"n": -9999999999999999999}',  # 19 digits, below -2**63
        '{"n": 1' + "0" * 400 + "}",
        '{"x": 1' + "0" * 400 + ".5}",  # json: inf; orjson refuses
        '{"s": "12345678901234567890123"}',  # a long digit run inside a string
        '{"f": 0.1, "g": -2.5, "h": 123456789012345678.5, "t": 1e-7}',
        '{"name": "Фирма «Ромашка» \\u00e9 \\ud83d\\ude00 \\n\\t\\"", "e": "\\u0000"}',
        '{"lone": "\\ud800"}',  # orjson refuses a lone surrogate, json keeps it
        '{"a": 1, "a": 2}',  # duplicates: json keeps the last, so does orjson
        "[true, false, null, 0, -0, 0.0, -0.0]",
    ],
)
def test_documents_decode_as_json_does(doc: str) -> None:
    same(doc)


def test_invalid_json_raises_json_error() -> None:
    with pytest.raises(json.JSONDecodeError):
        loads_exact('{"a": ')


def test_random_documents_decode_as_json_does() -> None:
    rng = random.Random(65)

    def number() -> str:
        digits = str(rng.randrange(10 ** rng.randint(1, 30)))
        sign = "-" if rng.random() < 0.3 else ""
        if rng.random() < 0.4:
            point = rng.randint(1, len(digits))
            return f"{sign}{digits[:point]}.{digits[point:] or '0'}"
        return sign + digits

    def value(depth: int) -> str:
        kind = rng.random()
        if depth < 3 and kind < 0.2:
            return "[" + ", ".join(value(depth + 1) for _ in range(rng.randint(0, 4))) + "]"
        if depth < 3 and kind < 0.4:
            items = (f'"k{i}": {value(depth + 1)}' for i in range(rng.randint(0, 5)))
            return "{" + ", ".join(items) + "}"
        if kind < 0.7:
            return number()
        return json.dumps("".join(rng.choice('ab1234567890 яё€"\\') for _ in range(20)))

    for _ in range(3000):
        same(value(0))


async def test_the_drain_claim_returns_the_stored_rows(
    letter_engine: Engine, upstream: Any
) -> None:
    """The drain's claim (context as text) returns the stored rows as the engine reads them:
    the contexts as its jsonb codec decodes them, the other columns unchanged."""
    await schedule_offer_reminders(letter_engine, upstream, 3)
    async with session_scope(letter_engine.sessionmaker) as session:
        await session.execute(
            text("UPDATE notifier.letters SET context = context || CAST(:extra AS jsonb)"),
            {"extra": json.dumps({"big": 2**70, "f": 0.1, "s": "1" * 25, "neg": -(2**64)})},
        )
        columns = "id, letter, client_id, contract_id, channel, recipient, locale, context, "
        columns += "attempts, send_at, expires_at"
        stored = {
            row[0]: tuple(row)
            for row in await session.execute(text(f"SELECT {columns} FROM notifier.letters"))
        }
    sender = letter_engine.sender
    async with session_scope(letter_engine.sessionmaker) as session:
        claimed = await drain_sql.lock_due(session, now=DUE, limit=sender.config.batch_size)
    assert sorted(c.id for c in claimed) == sorted(stored)
    for c in claimed:
        fields = (c.id, c.letter, c.client_id, c.contract_id, c.channel, c.recipient, c.locale)
        fields += (c.context, c.attempts, c.send_at, c.expires_at)
        assert fields == stored[c.id]
        assert _shape(c.context) == _shape(stored[c.id][7])
