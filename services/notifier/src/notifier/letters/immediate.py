"""Coalesced immediate sends (docs/decisions/0041-coalesced-immediate-sends.md).

Events handled at about the same time each create a few letters that are due now. Instead of
one ``LetterSender.send_now`` (claim + one gateway call + record) per event, callers hand their
ids to the process's :class:`ImmediateSends`; every ``window`` seconds it sends the union of the
ids handed over since the last send (one call per ``max_batch`` ids; one send at a time, the
ids arriving meanwhile go into the next one), and each caller's ``send`` returns when the send
that carried its ids finished. A failed send is logged and left to the drain (the letters are
committed ``scheduled`` and due: the per-minute drain delivers them); ``send_now`` only claims
``scheduled`` rows, so nothing is sent twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from notifier_common.logging import get_logger

from notifier.letters.drain import LetterSender

log = get_logger("notifier.letters.immediate")


class ImmediateSends:
    def __init__(self, sender: LetterSender, *, window: float = 0.01, max_batch: int = 500):
        self.sender = sender
        self.window = window
        self.max_batch = max_batch
        self._ids: list[int] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._task: asyncio.Task[None] | None = None

    async def send(self, letter_ids: Sequence[int]) -> None:
        """Send these letters with the next coalesced batch; never raises for a failed send."""
        if not letter_ids:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._ids.extend(letter_ids)
        self._waiters.append(waiter)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())
        await asyncio.shield(waiter)

    async def aclose(self) -> None:
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        while self._ids:
            await asyncio.sleep(self.window)
            ids, self._ids = list(dict.fromkeys(self._ids)), []
            waiters, self._waiters = self._waiters, []
            try:
                for start in range(0, len(ids), self.max_batch):
                    await self._send(ids[start : start + self.max_batch])
            finally:
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_result(None)

    async def _send(self, ids: list[int]) -> None:
        try:
            await self.sender.send_now(ids)
        except Exception:  # committed and due: the drain delivers them
            log.exception("letters.immediate_send_failed", letters=len(ids))
