"""Random ids for a whole batch from one read of the OS's random source (decision 0102).

``uuid.uuid4()`` reads 16 bytes with a ``getrandom`` system call per id: the gateway made two
per message (its row id and the ``log`` provider's message id), ~2 % of its CPU in the drain.
Same source (``os.urandom``), same bits, one call per batch."""

from __future__ import annotations

import os
import uuid


def uuid4s(n: int) -> list[uuid.UUID]:
    """``n`` random (version 4) UUIDs, as ``uuid.uuid4()`` makes them."""
    raw = os.urandom(16 * n)
    return [uuid.UUID(bytes=raw[i : i + 16], version=4) for i in range(0, 16 * n, 16)]


def random_hex(n: int) -> list[str]:
    """``n`` strings of 32 random hex digits (128 bits each, as ``uuid4().hex`` but all 128)."""
    digits = os.urandom(16 * n).hex()
    return [digits[i : i + 32] for i in range(0, 32 * n, 32)]
