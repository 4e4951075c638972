"""Batch ids from one random read (decision 0102): the same kind of id as ``uuid.uuid4()``."""

from __future__ import annotations

import re
import uuid

import pytest
from notifier_common.ids import random_hex, uuid4s


@pytest.mark.parametrize("n", [0, 1, 500])
def test_uuid4s_are_distinct_version_4_uuids(n: int) -> None:
    ids = uuid4s(n)
    assert len(ids) == len(set(ids)) == n
    assert all(i.version == 4 and i.variant == uuid.RFC_4122 for i in ids)


def test_uuid4s_use_every_random_byte_once() -> None:
    """Consecutive ids are cut from one read: no two share their random bits."""
    ids = uuid4s(1_000)
    assert len({i.int & ~(0xF << 76) & ~(0x3 << 62) for i in ids}) == 1_000


@pytest.mark.parametrize("n", [0, 1, 500])
def test_random_hex_is_n_distinct_32_digit_strings(n: int) -> None:
    values = random_hex(n)
    assert len(values) == len(set(values)) == n
    assert all(re.fullmatch(r"[0-9a-f]{32}", v) for v in values)
