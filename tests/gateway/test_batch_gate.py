"""BatchGate hands freed memory back once no batch is in flight (decision 0054)."""

from __future__ import annotations

import asyncio
import gc

import httpx
from gateway.app import BatchGate, _malloc_trim
from starlette.types import Receive, Scope, Send

from tests.gateway.conftest import SettingsFactory, running


class _Slow:
    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"].endswith(":batch"):
            await self.release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


async def test_memory_is_released_after_the_last_batch_in_flight_only() -> None:
    app = _Slow()
    releases: list[int] = []
    gate = BatchGate(app, limit=1, release_memory=lambda: releases.append(1))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=gate), base_url="http://t"
    ) as client:
        batches = [
            asyncio.create_task(client.post("/v1/messages:batch", content=b"{}")) for _ in range(3)
        ]
        await asyncio.sleep(0.05)
        await client.post("/v1/messages", content=b"{}")  # not a batch: no release
        assert releases == []

        app.release.set()
        await asyncio.gather(*batches)

    assert releases == [1]  # three batches (one handled, two waiting): released once, at the end


def test_malloc_trim_is_found_on_glibc() -> None:
    trim = _malloc_trim()
    assert trim is not None
    trim()


async def test_startup_objects_are_frozen_while_the_app_runs(
    make_settings: SettingsFactory,
) -> None:
    """Decision 0057: full garbage collections during a batch do not walk the objects alive
    after startup; shutting down hands them back to the collector."""
    gc.unfreeze()
    async with running(make_settings()):
        assert gc.get_freeze_count() > 0
    assert gc.get_freeze_count() == 0
