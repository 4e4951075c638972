"""The gateway client's direct POST on the shared client's httpcore pool (decision 0102) over real
local sockets: answered by the real gateway app, no garbage left for the collector, and
httpcore's own errors classified as transient like httpx's."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import uvicorn
from notifier.gateway_client import GatewayClient, encode_message
from notifier_common.http import create_http_client

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def letters(n: int, *, html_size: int = 100) -> list[tuple[str, bytes]]:
    return [
        (
            f"letter-{i}",
            encode_message(
                f"letter-{i}",
                channel="email",
                address=f"c{i}@example.com",
                name="Клиент",
                subject="Баланс",
                html="<p>" + "ё" * html_size + "</p>",
                text="ё" * html_size,
                unsubscribe_url=f"https://n.example/u/{i}",
                metadata={"letter_id": i, "letter": "LowBalanceNotice", "client_id": f"c{i}"},
            ),
        )
        for i in range(n)
    ]


@contextlib.asynccontextmanager
async def serving(handle: Handler) -> AsyncIterator[str]:
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()


async def read_body(reader: asyncio.StreamReader) -> tuple[bytes, bytes] | None:
    """One request's head and body (by its Content-Length), None when the peer closed."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return head, await reader.readexactly(length)


def answer(status: int, body: bytes, *extra: bytes) -> bytes:
    head = [b"HTTP/1.1 %d X" % status, b"Content-Length: %d" % len(body), *extra]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


async def accept_all(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while (request := await read_body(reader)) is not None:
        keys = [i["idempotency_key"] for i in json.loads(request[1])["items"]]
        del request  # this server keeps nothing of a request while it waits for the next
        results = [{"idempotency_key": k, "outcome": "accepted"} for k in keys]
        writer.write(answer(200, json.dumps({"results": results}).encode()))
        await writer.drain()


async def test_the_direct_post_is_answered_by_the_real_gateway(
    database_url: str, redis_url: str
) -> None:
    from gateway.app import create_app
    from gateway.tokens import create_token

    from tests.gateway.conftest import log_gateway_settings

    token = await create_token(database_url, name="notifier", scopes=["messages:write"])
    app = create_app(log_gateway_settings(database_url, redis_url))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        serving_task = asyncio.create_task(server.serve(sockets=[sock]))
        try:
            while not server.started:  # noqa: ASYNC110 (uvicorn only has the flag)
                await asyncio.sleep(0.01)
            async with create_http_client(timeout=10.0) as http:
                client = GatewayClient(http, base_url=f"http://127.0.0.1:{port}", token=token)
                assert client._core is not None  # the direct path, not httpx's
                results = await client.send_encoded(letters(3))
        finally:
            server.should_exit = True
            await serving_task
    assert {k: (r.outcome, r.provider) for k, r in results.items()} == {
        f"letter-{i}": ("accepted", "log") for i in range(3)
    }
    assert all(r.provider_message_id and r.message_id for r in results.values())


async def test_a_call_leaves_nothing_for_the_garbage_collector() -> None:
    """Through httpx each call left ~40 objects in reference cycles (request, response, streams,
    events), freed only when a collection found them; the drain makes a call per 500 letters,
    the immediate sends one per few letters."""
    async with serving(accept_all) as url, create_http_client(timeout=10.0) as http:
        client = GatewayClient(http, base_url=url, token="t", batch_size=500)
        await client.send_encoded(letters(2))  # the connection exists before counting
        gc.collect()
        gc.disable()
        try:
            for _ in range(3):
                results = await client.send_encoded(letters(50))
            unreachable = gc.collect()
        finally:
            gc.enable()
    assert len(results) == 50
    assert unreachable == 0


async def test_a_gateway_error_is_transient_with_its_retry_after() -> None:
    async def busy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_body(reader)
        writer.write(answer(503, b"overloaded", b"Retry-After: 7"))
        await writer.drain()

    async with serving(busy) as url, create_http_client(timeout=5.0) as http:
        results = await GatewayClient(http, base_url=url, token="t").send_encoded(letters(2))
    assert {r.outcome for r in results.values()} == {"transient_error"}
    assert {(r.code, r.status_code, r.retry_after) for r in results.values()} == {
        ("gateway_http_503", 503, 7.0)
    }
    assert results["letter-0"].reason == "overloaded"


@pytest.mark.parametrize("peer", ["refused", "dropped"])
async def test_httpcore_errors_are_transient_for_every_item(peer: str) -> None:
    async def drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_body(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{")
        writer.close()

    async with serving(drop) as url, create_http_client(timeout=5.0) as http:
        if peer == "refused":
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                url = f"http://127.0.0.1:{sock.getsockname()[1]}"  # nobody listens
        results = await GatewayClient(http, base_url=url, token="t").send_encoded(letters(2))
    assert {(r.outcome, r.code) for r in results.values()} == {
        ("transient_error", "gateway_unreachable")
    }
