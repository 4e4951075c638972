"""The HTTP/1.1 pool under ``create_http_client`` (decision 0106), against real local servers
that misbehave on purpose: keep-alive reuse and expiry, a peer that closes idle connections,
limits and waiting in line, timeouts, refused connections, large, chunked and close-delimited
bodies, interim and HEAD answers, TLS, and respx still intercepting. Each scenario on asyncio
and on uvloop (the worker's loop)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from unittest import mock

import httpcore
import httpx
import pytest
import respx
import uvloop
from notifier_common import h1pool
from notifier_common.h1pool import Http1Pool
from notifier_common.http import AsyncioTransport, create_http_client, direct_pool

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


def test_the_shared_client_sends_through_the_pool() -> None:
    """Guards the wiring: an httpx upgrade that stops using ``_pool`` must fail here."""
    client = create_http_client(max_connections=7)
    transport = client._transport
    assert isinstance(transport, AsyncioTransport)
    assert isinstance(transport._pool, Http1Pool)
    assert transport._pool._max_connections == 7


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


async def a_peer_that_closes_right_after_answering_is_not_reused(serve: Start) -> None:
    """No ``Connection: close``, and the FIN right behind the answer: the loop has not read
    it yet when the next request looks for a connection; the socket says so (httpcore asked
    the same way)."""

    async def abrupt(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if await read_request(reader) is not None:
            writer.write(response(b"once"))
            await writer.drain()

    server = await serve(abrupt)
    async with create_http_client() as client:
        got = [(await client.get(f"{server.url}/{i}")).text for i in range(50)]
    assert got == ["once"] * 50
    assert server.connections == 50


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


def pool_of(client: httpx.AsyncClient) -> Http1Pool:
    pool = client._transport._pool  # type: ignore[attr-defined]
    assert isinstance(pool, Http1Pool)
    return pool


def client_with(**limits: float | int | None) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=AsyncioTransport(limits=httpx.Limits(**limits)))  # type: ignore[arg-type]


class Gate:
    """A server handler that answers nothing until ``open``, then answers every request on the
    connection with keep-alive; ``arrivals(n)`` waits until ``n`` requests came in."""

    def __init__(self) -> None:
        self.arrived = 0
        self.opened = asyncio.Event()
        self._arrival = asyncio.Condition()

    def open(self) -> None:
        self.opened.set()

    async def arrivals(self, n: int) -> None:
        async with self._arrival:
            await self._arrival.wait_for(lambda: self.arrived >= n)

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (head := await read_request(reader)) is not None:
            async with self._arrival:
                self.arrived += 1
                self._arrival.notify_all()
            await self.opened.wait()
            writer.write(response(b"ok " + head.split(b" ")[1]))
            await writer.drain()


@contextlib.asynccontextmanager
async def one_busy_connection(
    serve: Start, client_timeout: float = 5.0
) -> AsyncIterator[tuple[Gate, Server, httpx.AsyncClient, asyncio.Task[httpx.Response]]]:
    """A client with one connection, taken by a request (``/busy``) that the server holds
    until ``gate.open()``."""
    gate = Gate()
    server = await serve(gate)
    async with create_http_client(max_connections=1, timeout=client_timeout) as client:
        busy = asyncio.create_task(client.get(f"{server.url}/busy"))
        await gate.arrivals(1)
        yield gate, server, client, busy


async def requests_beyond_the_limit_wait_in_line_for_the_connection(serve: Start) -> None:
    server = await serve(keep_alive)
    async with create_http_client(max_connections=1) as client:
        answers = await asyncio.gather(*(client.get(f"{server.url}/r{i}") for i in range(12)))
        assert pool_of(client).waiting == 0
    assert [a.text for a in answers] == [f"you asked /r{i}" for i in range(12)]
    assert server.connections == 1


async def a_full_pool_is_a_pool_timeout(serve: Start) -> None:
    async with one_busy_connection(serve) as (gate, server, client, busy):
        with pytest.raises(httpx.PoolTimeout):
            await client.get(f"{server.url}/late", timeout=httpx.Timeout(5.0, pool=0.1))
        assert pool_of(client).waiting == 0
        gate.open()
        assert (await busy).text == "ok /busy"
        assert (await client.get(f"{server.url}/after")).text == "ok /after"
    assert server.connections == 1


async def a_cancelled_waiting_request_leaves_nothing_queued(serve: Start) -> None:
    async with one_busy_connection(serve) as (gate, server, client, busy):
        waiting = asyncio.create_task(client.get(f"{server.url}/waiting"))
        await asyncio.sleep(0.05)
        assert pool_of(client).waiting == 1
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert pool_of(client).waiting == 0
        gate.open()
        assert (await busy).text == "ok /busy"
        assert (await client.get(f"{server.url}/after")).text == "ok /after"
    assert gate.arrived == 2  # the cancelled request was never sent


async def a_cancelled_exchange_closes_its_connection(serve: Start) -> None:
    gate = Gate()
    server = await serve(gate)
    async with create_http_client() as client:
        sent = asyncio.create_task(client.get(f"{server.url}/abandoned"))
        await gate.arrivals(1)
        sent.cancel()
        with pytest.raises(asyncio.CancelledError):
            await sent
        assert pool_of(client).connections == []  # its answer would come to the next request
        gate.open()
        assert (await client.get(f"{server.url}/next")).text == "ok /next"
    assert server.connections == 2


async def a_full_pool_closes_an_idle_connection_for_another_origin(serve: Start) -> None:
    first, second = await serve(keep_alive), await serve(keep_alive)
    async with create_http_client(max_connections=1) as client:
        assert (await client.get(f"{first.url}/a")).text == "you asked /a"
        assert (await client.get(f"{second.url}/b")).text == "you asked /b"
        [connection] = pool_of(client).connections
        assert connection.origin[2] == int(second.url.rsplit(":", 1)[1])


async def a_freed_connection_of_another_origin_makes_room_for_a_waiting_request(
    serve: Start,
) -> None:
    gate = Gate()
    held, other = await serve(gate), await serve(keep_alive)
    async with create_http_client(max_connections=1) as client:
        busy = asyncio.create_task(client.get(f"{held.url}/busy"))
        await gate.arrivals(1)
        waiting = asyncio.create_task(client.get(f"{other.url}/other"))
        await asyncio.sleep(0.05)
        gate.open()
        assert ((await busy).text, (await waiting).text) == ("ok /busy", "you asked /other")
        assert len(pool_of(client).connections) == 1


async def idle_connections_beyond_the_keep_alive_limit_are_closed(serve: Start) -> None:
    gate = Gate()
    server = await serve(gate)
    async with client_with(max_connections=5, max_keepalive_connections=2) as client:
        sent = [asyncio.create_task(client.get(f"{server.url}/r{i}")) for i in range(5)]
        await gate.arrivals(5)
        gate.open()
        await asyncio.gather(*sent)
        assert len(pool_of(client).connections) == 2
        await asyncio.gather(*(client.get(f"{server.url}/again{i}") for i in range(2)))
    assert server.connections == 5  # the two kept were reused


async def an_idle_connection_past_its_expiry_is_replaced(serve: Start) -> None:
    server = await serve(keep_alive)
    async with client_with(max_connections=5, keepalive_expiry=0.05) as client:
        await client.get(f"{server.url}/a")
        await client.get(f"{server.url}/b")
        assert server.connections == 1
        await asyncio.sleep(0.1)
        await client.get(f"{server.url}/c")
        assert len(pool_of(client).connections) == 1
    assert server.connections == 2


async def an_answer_with_connection_close_is_not_reused(serve: Start) -> None:
    async def closing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if await read_request(reader) is not None:
            writer.write(response(b"bye", close=True))
            await writer.drain()
            await asyncio.sleep(0.2)  # the client must not wait for our FIN to know

    server = await serve(closing)
    async with create_http_client() as client:
        assert [(await client.get(f"{server.url}/{i}")).text for i in range(3)] == ["bye"] * 3
    assert server.connections == 3


async def a_body_delimited_by_close_is_read_to_the_end(serve: Start) -> None:
    async def legacy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the ")
        await writer.drain()
        await asyncio.sleep(0.02)
        writer.write(b"end")
        await writer.drain()

    server = await serve(legacy)
    async with create_http_client() as client:
        assert (await client.get(f"{server.url}/")).text == "until the end"
        assert pool_of(client).connections == []


async def an_interim_answer_is_skipped(serve: Start) -> None:
    async def early_hints(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await read_request(reader) is not None:
            writer.write(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n")
            writer.write(response(b"final"))
            await writer.drain()

    server = await serve(early_hints)
    async with create_http_client() as client:
        got = [await client.get(f"{server.url}/{i}") for i in range(2)]
    assert [(g.status_code, g.text, "link" in g.headers) for g in got] == [
        (200, "final", False)
    ] * 2
    assert server.connections == 1


async def a_head_answer_ends_at_its_head(serve: Start) -> None:
    async def head_only(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await read_request(reader) is not None:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n")
            await writer.drain()

    server = await serve(head_only)
    async with create_http_client(timeout=1.0) as client:
        got = await client.head(f"{server.url}/")
    assert (got.status_code, got.headers["content-length"], got.content) == (200, "1234", b"")


async def a_chunked_request_body_is_framed(serve: Start) -> None:
    received: list[bytes] = []

    async def dechunk(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await read_request(reader)
        assert head is not None
        assert b"transfer-encoding: chunked" in head.lower()
        body = b""
        while (size := int((await reader.readuntil(b"\r\n")).strip(), 16)) > 0:
            body += await reader.readexactly(size)
            await reader.readexactly(2)
        await reader.readexactly(2)
        received.append(body)
        writer.write(response(b"got it"))
        await writer.drain()

    async def parts() -> AsyncIterator[bytes]:
        for part in (b"first ", b"", b"second ", b"third"):
            yield part

    server = await serve(dechunk)
    async with create_http_client() as client:
        got = await client.post(f"{server.url}/", content=parts())
    assert got.text == "got it"
    assert received == [b"first second third"]


async def a_connection_that_answers_twice_is_not_reused(serve: Start) -> None:
    async def chatty(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (head := await read_request(reader)) is not None:
            path = head.split(b" ")[1]
            writer.write(response(b"answer to " + path) + response(b"unasked"))
            await writer.drain()

    server = await serve(chatty)
    async with create_http_client() as client:
        got = [(await client.get(f"{server.url}/{i}")).text for i in range(2)]
    assert got == ["answer to /0", "answer to /1"]  # never "unasked"
    assert server.connections == 2


async def a_peer_that_closes_without_answering_is_a_protocol_error(serve: Start) -> None:
    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)

    server = await serve(mute)
    async with create_http_client() as client:
        with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
            await client.post(f"{server.url}/", content=b"{}")
        assert pool_of(client).connections == []


async def a_malformed_answer_is_a_protocol_error(serve: Start) -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 2OO OK\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(1)

    server = await serve(garbage)
    async with create_http_client() as client:
        with pytest.raises(httpx.RemoteProtocolError, match="malformed"):
            await client.get(f"{server.url}/")


async def an_oversized_answer_is_refused(serve: Start) -> None:
    body = b"y" * 4097

    async def huge(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(response(body))
        await writer.drain()

    server = await serve(huge)
    async with create_http_client() as client:
        with (
            mock.patch.object(h1pool, "MAX_RESPONSE_BYTES", 4096),
            pytest.raises(httpx.RemoteProtocolError, match="response over 4096 bytes"),
        ):
            await client.get(f"{server.url}/")
        with mock.patch.object(h1pool, "MAX_RESPONSE_BYTES", 4097):
            assert (await client.get(f"{server.url}/")).content == body


async def an_endless_head_is_cut_off(serve: Start) -> None:
    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nX-Padding: ")
        with contextlib.suppress(ConnectionError):
            for _ in range(64):
                writer.write(b"p" * 65536)
                await writer.drain()

    server = await serve(endless)
    async with create_http_client() as client:
        with (
            mock.patch.object(h1pool, "MAX_HEAD_BYTES", 256 * 1024),
            pytest.raises(httpx.RemoteProtocolError, match="response head over"),
        ):
            await client.get(f"{server.url}/")


async def the_read_timeout_counts_silence_not_the_whole_answer(serve: Start) -> None:
    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n")
        for byte in b"steady":
            await asyncio.sleep(0.05)
            writer.write(bytes([byte]))
            await writer.drain()

    server = await serve(trickle)
    async with create_http_client(timeout=0.15) as client:
        assert (await client.get(f"{server.url}/")).text == "steady"  # 0.3 s in all


async def one_exchanges_read_timer_never_reaches_the_next(serve: Start) -> None:
    """The first answer trickles past one read timeout (its timer re-arms at 0.4 s for 0.8 s,
    having seen 2 reads); the second, on the same connection, has seen 2 reads at 0.8 s too.
    A timer left over from the first would call that silence: it is cancelled with it."""
    steps = [[0.3, 0.2], [0.15, 0.2]]  # pauses before each later byte of answers 1 and 2

    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for pauses in steps:
            await read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n")
            for byte, pause in zip(b"ok", pauses, strict=True):
                await asyncio.sleep(pause)
                writer.write(bytes([byte]))
                await writer.drain()

    server = await serve(trickle)
    async with create_http_client(timeout=0.4) as client:
        got = [(await client.get(f"{server.url}/{i}")).text for i in range(2)]
    assert got == ["ok", "ok"]
    assert server.connections == 1


async def a_connection_handed_to_a_request_cancelled_meanwhile_comes_back(serve: Start) -> None:
    """The connection goes to the request waiting in line, which is cancelled before it runs
    again: the connection returns to the pool instead of staying taken for ever."""
    async with one_busy_connection(serve, client_timeout=2.0) as (gate, server, client, busy):
        pool = pool_of(client)
        waiting = asyncio.create_task(client.get(f"{server.url}/waiting"))
        while pool.waiting == 0:  # noqa: ASYNC110 - one loop turn at a time, on purpose
            await asyncio.sleep(0)
        given_back: list[object] = []
        give_back = pool._give_back

        def counted(handed: Any) -> None:
            given_back.append(handed)
            give_back(handed)

        pool._give_back = counted  # type: ignore[method-assign]
        gate.open()
        # the turn the answer came in, the connection was handed over: cancel before it runs
        while pool.waiting:  # noqa: ASYNC110 - one loop turn at a time, on purpose
            await asyncio.sleep(0)
        waiting.cancel()
        assert (await busy).text == "ok /busy"
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert len(given_back) == 1
        assert given_back[0] is not None
        assert (pool.waiting, pool._opening, len(pool._busy), pool._idle_count) == (0, 0, 0, 1)
        assert (await client.get(f"{server.url}/after")).text == "ok /after"
    assert server.connections == 1


async def the_books_balance_after_a_storm_of_requests_cancellations_and_closes(
    serve: Start,
) -> None:
    """300 requests over 2 origins through 4 connections; the servers answer after random
    pauses and sometimes close the connection after answering; a third of the requests are
    cancelled at random moments (waiting in line, connecting, or mid-exchange). Every request
    not cancelled gets its own answer, and afterwards nothing is left busy, opening or in
    line, and never more than 4 connections were open."""
    rng = random.Random(7)
    peak = [0]

    async def moody(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (head := await read_request(reader)) is not None:
            await asyncio.sleep(rng.random() * 0.01)
            close = rng.random() < 0.2
            writer.write(response(b"you asked " + head.split(b" ")[1], close=close))
            await writer.drain()
            if close:
                return

    servers = [await serve(moody), await serve(moody)]
    async with create_http_client(max_connections=4) as client:
        pool = pool_of(client)

        async def one(i: int) -> str:
            url = f"{servers[i % 2].url}/r{i}"
            return (await client.get(url)).text

        async def watch() -> None:
            while True:
                peak[0] = max(peak[0], pool._open_count())
                await asyncio.sleep(0.0005)

        watcher = asyncio.create_task(watch())
        tasks = [asyncio.create_task(one(i)) for i in range(300)]
        doomed = set(rng.sample(range(300), 100))
        for i in sorted(doomed, key=lambda _: rng.random()):
            await asyncio.sleep(rng.random() * 0.002)
            tasks[i].cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        watcher.cancel()
        for i, result in enumerate(results):
            if i in doomed and isinstance(result, asyncio.CancelledError):
                continue
            assert result == f"you asked /r{i}", (i, result)
        assert (pool.waiting, pool._opening, len(pool._busy)) == (0, 0, 0)
        assert pool._idle_count == sum(len(idle) for idle in pool._idle.values()) <= 4
        assert peak[0] <= 4
        assert (await client.get(f"{servers[0].url}/after")).text == "you asked /after"


async def an_unsupported_scheme_is_refused(serve: Start) -> None:
    async with create_http_client() as client:
        with pytest.raises(httpx.UnsupportedProtocol):
            await client.get("ftp://127.0.0.1/file")


SCENARIOS = [
    requests_reuse_one_keep_alive_connection,
    a_connection_the_peer_closed_while_idle_is_replaced,
    a_peer_that_closes_right_after_answering_is_not_reused,
    a_slow_answer_is_a_read_timeout,
    a_refused_connection_is_a_connect_error,
    a_connection_dropped_mid_body_is_a_read_error,
    a_large_body_arrives_whole_through_flow_control,
    a_chunked_answer_is_read,
    a_large_request_body_is_written_whole,
    a_peer_that_stops_reading_is_a_write_timeout,
    respx_still_intercepts_requests,
    requests_beyond_the_limit_wait_in_line_for_the_connection,
    a_full_pool_is_a_pool_timeout,
    a_cancelled_waiting_request_leaves_nothing_queued,
    a_cancelled_exchange_closes_its_connection,
    a_full_pool_closes_an_idle_connection_for_another_origin,
    a_freed_connection_of_another_origin_makes_room_for_a_waiting_request,
    idle_connections_beyond_the_keep_alive_limit_are_closed,
    an_idle_connection_past_its_expiry_is_replaced,
    an_answer_with_connection_close_is_not_reused,
    a_body_delimited_by_close_is_read_to_the_end,
    an_interim_answer_is_skipped,
    a_head_answer_ends_at_its_head,
    a_chunked_request_body_is_framed,
    a_connection_that_answers_twice_is_not_reused,
    a_peer_that_closes_without_answering_is_a_protocol_error,
    a_malformed_answer_is_a_protocol_error,
    an_oversized_answer_is_refused,
    an_endless_head_is_cut_off,
    the_read_timeout_counts_silence_not_the_whole_answer,
    one_exchanges_read_timer_never_reaches_the_next,
    a_connection_handed_to_a_request_cancelled_meanwhile_comes_back,
    the_books_balance_after_a_storm_of_requests_cancellations_and_closes,
    an_unsupported_scheme_is_refused,
]


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda f: f.__name__)
def test_scenario(scenario: Callable[[Start], Awaitable[None]], loop: str) -> None:
    """Each scenario on both loops: the worker runs on uvloop, whose transports do not subclass
    ``asyncio.Transport`` (an isinstance check once broke every connection there)."""
    run_on(loop, scenario)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A self-signed certificate for ``localhost`` (openssl), and its key."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = str(folder / "cert.pem"), str(folder / "key.pem")
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
            "-keyout", key, "-out", cert,
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


async def plain_text(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(response(b"not TLS", close=True))
    await writer.drain()


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_tls_is_verified_against_the_pools_context(loop: str, certificate: tuple[str, str]) -> None:
    cert, key = certificate
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    served.load_cert_chain(cert, key)
    trusting = ssl.create_default_context(cafile=cert)

    async def scenario(serve: Start) -> None:
        server = await serve(keep_alive)
        assert server.server is not None
        port = server.server.sockets[0].getsockname()[1]
        tls_server = await asyncio.start_server(server._handle, "127.0.0.1", 0, ssl=served)
        plain = (await serve(plain_text)).url.rsplit(":", 1)[1]
        tls_port = tls_server.sockets[0].getsockname()[1]
        try:
            async with Http1Pool(ssl_context=trusting) as pool:
                got = [
                    await pool.request(
                        b"GET", f"https://localhost:{tls_port}/tls{i}", headers=[(b"Host", b"x")]
                    )
                    for i in range(2)
                ]
                assert [g.content for g in got] == [b"you asked /tls0", b"you asked /tls1"]
                assert len(pool.connections) == 1
            async with create_http_client() as client:  # the system's roots: not ours
                with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                    await client.get(f"https://localhost:{tls_port}/")
            async with Http1Pool(ssl_context=trusting) as pool:  # TLS to a plain port
                with pytest.raises(httpcore.ConnectError):
                    await pool.request(b"GET", f"https://localhost:{plain}/", headers=[])
                with pytest.raises(httpcore.ConnectTimeout):  # a peer that never answers
                    await pool.request(
                        b"GET",
                        f"https://localhost:{port}/",
                        headers=[],
                        extensions={"timeout": {"connect": 0.2}},
                    )
        finally:
            tls_server.close()

    run_on(loop, scenario)


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_the_direct_pool_sends_through_the_same_connections(loop: str) -> None:
    bodies: list[bytes] = []

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (head := await read_request(reader)) is not None:
            lengths = [line for line in head.lower().split(b"\r\n") if b"content-length" in line]
            assert len(lengths) <= 1, head
            body = await reader.readexactly(int(lengths[0].split(b":")[1])) if lengths else b""
            bodies.append(body)
            writer.write(b"HTTP/1.1 503 Busy\r\nRetry-After: 7\r\nContent-Length: 4\r\n\r\nbusy")
            await writer.drain()

    async def scenario(serve: Start) -> None:
        server = await serve(echo)
        async with create_http_client() as client:
            direct = direct_pool(client)
            assert direct is not None
            posted = await direct.request(
                "POST",
                f"{server.url}/v1/x?y=1",
                [(b"Host", b"here"), (b"Content-Length", b"2")],
                b"{}",
            )
            got = await direct.request("GET", f"{server.url}/v1/z", [(b"Host", b"here")])
            assert (await client.get(f"{server.url}/via-httpx")).status_code == 503
        assert (posted.status, posted.retry_after, posted.text) == (503, "7", "busy")
        assert got.status == 503
        assert bodies == [b"{}", b"", b""]
        assert server.connections == 1

    run_on(loop, scenario)
