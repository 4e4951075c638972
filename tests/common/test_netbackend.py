"""The asyncio network backend under ``create_http_client`` (decision 0075), against real local
servers that misbehave on purpose: keep-alive reuse, a peer that closes idle connections,
timeouts, refused connections, large and chunked bodies, and respx still intercepting."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import httpx
import pytest
import respx
import uvloop
from notifier_common.http import AsyncioTransport, create_http_client
from notifier_common.netbackend import AsyncioBackend

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


Start = Callable[[Handler], Awaitable["Server"]]


async def read_request(reader: asyncio.StreamReader) -> bytes | None:
    """One request head (the tests send bodyless GETs); None at EOF."""
    try:
        return await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None


def response(body: bytes, *, close: bool = False) -> bytes:
    head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\nContent-Type: text/plain\r\n"
    if close:
        head += "Connection: close\r\n"
    return head.encode() + b"\r\n" + body


class Server:
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer)
        finally:
            writer.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"


async def run_with_servers(scenario: Callable[[Start], Awaitable[None]]) -> None:
    started: list[Server] = []

    async def start(handler: Handler) -> Server:
        server = Server(handler)
        server.server = await asyncio.start_server(server._handle, "127.0.0.1", 0)
        started.append(server)
        return server

    try:
        await scenario(start)
    finally:
        for server in started:
            assert server.server is not None
            server.server.close()


def run_on(loop: str, scenario: Callable[[Start], Awaitable[None]]) -> None:
    """``scenario`` with its servers on a new ``asyncio`` or ``uvloop`` event loop."""
    factory = uvloop.new_event_loop if loop == "uvloop" else asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(run_with_servers(scenario))


async def keep_alive(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while (head := await read_request(reader)) is not None:
        path = head.split(b" ")[1]
        writer.write(response(b"you asked " + path))
        await writer.drain()


def test_the_shared_client_runs_on_the_asyncio_backend() -> None:
    """Guards the wiring: an httpx upgrade that stops using ``_pool`` must fail here."""
    client = create_http_client()
    transport = client._transport
    assert isinstance(transport, AsyncioTransport)
    assert isinstance(transport._pool._network_backend, AsyncioBackend)


async def requests_reuse_one_keep_alive_connection(serve: Start) -> None:
    server = await serve(keep_alive)
    async with create_http_client(base_url=server.url) as client:
        answers = [(await client.get(f"/r{i}")).text for i in range(5)]
    assert answers == [f"you asked /r{i}" for i in range(5)]
    assert server.connections == 1


async def a_connection_the_peer_closed_while_idle_is_replaced(serve: Start) -> None:
    async def one_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if await read_request(reader) is not None:
            writer.write(response(b"once"))  # keep-alive promised, then closed while idle
            await writer.drain()

    server = await serve(one_then_close)
    async with create_http_client(base_url=server.url) as client:
        first = await client.get("/a")
        await asyncio.sleep(0.05)  # the FIN arrives while the connection sits in the pool
        second = await client.get("/b")
    assert (first.text, second.text) == ("once", "once")
    assert server.connections == 2


async def a_slow_answer_is_a_read_timeout(serve: Start) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(5)

    server = await serve(silent)
    async with create_http_client(base_url=server.url, timeout=0.2) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.get("/")


async def a_refused_connection_is_a_connect_error(serve: Start) -> None:
    server = await serve(keep_alive)
    url = server.url
    assert server.server is not None
    server.server.close()
    await server.server.wait_closed()
    async with create_http_client(base_url=url) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get("/")


async def a_connection_dropped_mid_body_is_a_read_error(serve: Start) -> None:
    async def truncated(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part")
        await writer.drain()

    server = await serve(truncated)
    async with create_http_client(base_url=server.url) as client:
        with pytest.raises(httpx.RemoteProtocolError):  # h11: the peer closed mid-body
            await client.get("/")


async def a_large_body_arrives_whole_through_flow_control(serve: Start) -> None:
    body = bytes(range(256)) * 8192  # 2 MiB: reading pauses above the high-water mark

    async def large(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(response(body))
        await writer.drain()

    server = await serve(large)
    async with create_http_client(base_url=server.url) as client:
        got = await client.get("/")
    assert got.content == body


async def a_chunked_answer_is_read(serve: Start) -> None:
    async def chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for part in (b"hello ", b"chunked ", b"world"):
            writer.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
            await writer.drain()
            await asyncio.sleep(0.01)
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    server = await serve(chunked)
    async with create_http_client(base_url=server.url) as client:
        got = await client.get("/")
    assert got.text == "hello chunked world"


async def a_large_request_body_is_written_whole(serve: Start) -> None:
    sent = b"x" * (3 * 1024 * 1024)
    received: list[int] = []

    async def sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await read_request(reader)
        assert head is not None
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        received.append(len(await reader.readexactly(length)))
        writer.write(response(b"ok"))
        await writer.drain()

    server = await serve(sink)
    async with create_http_client(base_url=server.url) as client:
        got = await client.post("/", content=sent)
    assert got.text == "ok"
    assert received == [len(sent)]


async def a_peer_that_stops_reading_is_a_write_timeout(serve: Start) -> None:
    """Writes return at once while the transport takes them; once its buffer is full the
    write waits for the peer, within the write timeout."""

    async def deaf(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(5)

    server = await serve(deaf)
    timeout = httpx.Timeout(5.0, write=0.3)
    async with create_http_client(base_url=server.url) as client:
        with pytest.raises(httpx.WriteTimeout):
            await client.post("/", content=b"x" * (64 * 1024 * 1024), timeout=timeout)


async def respx_still_intercepts_requests(serve: Start) -> None:
    async with create_http_client() as client:
        with respx.mock(assert_all_called=True) as router:
            router.get("http://upstream.test/x").respond(json={"ok": True})
            got = await client.get("http://upstream.test/x")
    assert got.json() == {"ok": True}


SCENARIOS = [
    requests_reuse_one_keep_alive_connection,
    a_connection_the_peer_closed_while_idle_is_replaced,
    a_slow_answer_is_a_read_timeout,
    a_refused_connection_is_a_connect_error,
    a_connection_dropped_mid_body_is_a_read_error,
    a_large_body_arrives_whole_through_flow_control,
    a_chunked_answer_is_read,
    a_large_request_body_is_written_whole,
    a_peer_that_stops_reading_is_a_write_timeout,
    respx_still_intercepts_requests,
]


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda f: f.__name__)
def test_scenario(scenario: Callable[[Start], Awaitable[None]], loop: str) -> None:
    """Each scenario on both loops: the worker runs on uvloop, whose transports do not subclass
    ``asyncio.Transport`` (an isinstance check once broke every connection there)."""
    run_on(loop, scenario)
