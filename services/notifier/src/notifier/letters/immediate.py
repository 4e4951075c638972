"""Coalesced immediate sends (docs/decisions/0041-coalesced-immediate-sends.md).

Events handled at about the same time each create a few letters that are due now. Instead of
one ``LetterSender.send_now`` (claim + one gateway call + record) per event, callers hand their
ids to the process's :class:`ImmediateSends`; after ``window`` seconds (0 by default, decision
0109: one group commit's letters already come in one call) it sends the union of the ids handed
over since the last send (one call per ``max_batch`` ids), and each caller's
``send`` returns when the send that carried its ids finished. Up to ``max_in_flight`` sends run
at once (decision 0078): with one at a time, every letter also waited for the gateway call
before it, ~0.5 s at 200 events/s; when all are busy the ids keep gathering into the next,
larger batch. Batches hold distinct letters, and ``send_now`` claims only ``scheduled`` rows,
so concurrent sends never send a letter twice. A failed send is logged and left to the drain
(the letters are committed ``scheduled`` and due: the per-minute drain delivers them).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from notifier_common.logging import get_logger

from notifier.letters.drain import LetterSender

log = get_logger("notifier.letters.immediate")


class ImmediateSends:
    def __init__(
        self,
        sender: LetterSender,
        *,
        window: float = 0.0,
        max_batch: int = 500,
        max_in_flight: int = 4,
    ):
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be >= 1")
        self.sender = sender
        self.window = window
        self.max_batch = max_batch
        self.max_in_flight = max_in_flight
        self._ids: list[int] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._task: asyncio.Task[None] | None = None
        self._in_flight: set[asyncio.Task[None]] = set()

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
        while self._in_flight:
            await asyncio.gather(*self._in_flight)

    async def _run(self) -> None:
        while self._ids:
            await asyncio.sleep(self.window)
            while len(self._in_flight) >= self.max_in_flight:
                await asyncio.wait(self._in_flight, return_when=asyncio.FIRST_COMPLETED)
            ids, self._ids = list(dict.fromkeys(self._ids)), []
            waiters, self._waiters = self._waiters, []
            task = asyncio.create_task(self._send_all(ids, waiters))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)

    async def _send_all(self, ids: list[int], waiters: list[asyncio.Future[None]]) -> None:
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
