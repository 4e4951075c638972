"""``letters.reset`` waits for work still running on the bench database before its TRUNCATE: a
drain worker stopped mid-round leaves its gateway call running, and the TRUNCATE deadlocked
with the log provider's copy (a provider crash that opened the breaker for the next round)."""

from __future__ import annotations

import threading
import time

import asyncpg

from bench.env import Database
from bench.letters import wait_until_idle

_CLAIM = """
INSERT INTO gateway.messages (id, idempotency_key, request_hash, request, channel, action,
    provider, recipient, status)
VALUES (gen_random_uuid(), 'k-1', 'h', '{}', 'email', 'send', 'log', 'a@example.com', $1)
"""


def test_an_open_transaction_and_an_unanswered_message_are_waited_for(libpq_url: str) -> None:
    db = Database(libpq_url)
    assert wait_until_idle(db, timeout=5) < 1.0  # nothing running: no wait

    db.sql(_CLAIM, "in_progress")  # a gateway call not answered yet
    assert wait_until_idle(db, timeout=0.5) >= 0.5
    db.sql("UPDATE gateway.messages SET status = 'accepted'")
    assert wait_until_idle(db, timeout=5) < 1.0

    opened, release = threading.Event(), threading.Event()

    def hold() -> None:  # a session in the middle of a transaction, like a gateway call
        import asyncio

        async def go() -> None:
            conn = await asyncpg.connect(libpq_url)
            try:
                tx = conn.transaction()
                await tx.start()
                await conn.execute("SELECT 1")
                opened.set()
                await asyncio.to_thread(release.wait, 30)
                await tx.rollback()
            finally:
                await conn.close()

        asyncio.run(go())

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert opened.wait(10)
        started = time.monotonic()
        threading.Timer(0.6, release.set).start()
        waited = wait_until_idle(db, timeout=10)
        assert waited >= 0.5
        assert time.monotonic() - started < 9
    finally:
        release.set()
        thread.join()
