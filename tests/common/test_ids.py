"""Batch ids from one random read (decision 0102), led by the time (decision 0104)."""

from __future__ import annotations

import re
import time
import uuid

import pytest
from notifier_common.ids import ordered_hex, uuid7s


def ms() -> int:
    return time.time_ns() // 1_000_000


@pytest.mark.parametrize("n", [0, 1, 500])
def test_uuid7s_are_distinct_version_7_uuids_led_by_the_time(n: int) -> None:
    before = ms()
    ids = uuid7s(n)
    after = ms()
    assert len(ids) == len(set(ids)) == n
    assert all(i.version == 7 and i.variant == uuid.RFC_4122 for i in ids)
    assert all(before <= i.int >> 80 <= after for i in ids)


def test_uuid7s_use_every_random_bit_once() -> None:
    """Consecutive ids are cut from one read: their 74 random bits all differ, and are not all
    zero (a shift gone wrong would give the last ids none)."""
    ids = uuid7s(1_000)
    randoms = [(i.int >> 64 & 0xFFF) << 62 | i.int & (2**62 - 1) for i in ids]
    assert len(set(randoms)) == 1_000
    assert all(r for r in randoms)


def test_a_later_batch_sorts_after_an_earlier_one() -> None:
    first, first_hex = uuid7s(100), ordered_hex(100)
    time.sleep(0.002)
    second, second_hex = uuid7s(100), ordered_hex(100)
    assert max(first) < min(second)
    assert max(first_hex) < min(second_hex)


@pytest.mark.parametrize("n", [0, 1, 500])
def test_ordered_hex_is_n_distinct_32_digit_strings_led_by_the_time(n: int) -> None:
    before = ms()
    values = ordered_hex(n)
    after = ms()
    assert len(values) == len(set(values)) == n
    assert all(re.fullmatch(r"[0-9a-f]{32}", v) for v in values)
    assert all(before <= int(v[:12], 16) <= after for v in values)
