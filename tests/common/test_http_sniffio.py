"""httpcore runs ``import sniffio`` on every request to learn the async library. Without sniffio
installed each of those imports failed after a search of sys.path (~0.5 ms of CPU per request,
decision 0044); installed, it is a sys.modules hit and the answer is asyncio."""

from __future__ import annotations

import sys

import httpcore._synchronization as sync


def test_sniffio_is_installed_so_the_per_request_import_is_a_cache_hit() -> None:
    import sniffio

    assert sys.modules["sniffio"] is sniffio


async def test_httpcore_sees_asyncio() -> None:
    assert sync.current_async_library() == "asyncio"
