"""The pool under ``create_http_client`` (decision 0101), against real local servers: assignment
passes linear in the connections, an idle connection handed to one waiting request at a time,
asyncio locks, the keep-alive limit counted among idle connections, a full pool making room for
another origin, a cancelled waiting request leaving nothing behind. Each on asyncio and uvloop."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import httpcore
import httpx
import pytest
from httpcore._async.connection import AsyncHTTPConnection
from notifier_common.http import create_http_client
from notifier_common.httppool import AsyncioConnectionPool

from tests.common.test_netbackend import (
    Start,
    keep_alive,
    read_request,
    response,
    run_on,
)


class Gate:
    """A server handler that answers nothing until ``open`` (or until ``waiting`` requests
    have arrived), then answers every request on the connection with keep-alive."""

    def __init__(self, waiting: int | None = None) -> None:
        self.waiting = waiting
        self.arrived = 0
        self.opened = asyncio.Event()
        self._arrival = asyncio.Condition()

    def open(self) -> None:
        self.opened.set()

    async def arrivals(self, n: int) -> None:
        """Until ``n`` requests have arrived."""
        async with self._arrival:
            await self._arrival.wait_for(lambda: self.arrived >= n)

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (head := await read_request(reader)) is not None:
            async with self._arrival:
                self.arrived += 1
                self._arrival.notify_all()
            if self.waiting is not None and self.arrived >= self.waiting:
                self.opened.set()
            await self.opened.wait()
            writer.write(response(b"ok " + head.split(b" ")[1]))
            await writer.drain()


def pool_of(client: httpx.AsyncClient) -> AsyncioConnectionPool:
    pool = client._transport._pool  # type: ignore[attr-defined]
    assert isinstance(pool, AsyncioConnectionPool)
    return pool


def counting(monkeypatch: pytest.MonkeyPatch, owner: type, name: str) -> list[int]:
    """Count calls of ``owner.name`` (a method) from now on."""
    calls = [0]
    original = getattr(owner, name)

    def counted(self: object, *args: object) -> object:
        calls[0] += 1
        return original(self, *args)

    monkeypatch.setattr(owner, name, counted)
    return calls


async def open_connections(client: httpx.AsyncClient, url: str, n: int) -> None:
    """``n`` requests at once: ``n`` connections, idle afterwards."""
    answers = await asyncio.gather(*(client.get(f"{url}/warm{i}") for i in range(n)))
    assert all(a.status_code == 200 for a in answers)


async def an_assignment_pass_is_linear_in_the_connections(
    serve: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    n = 40
    server = await serve(Gate(waiting=n))
    async with create_http_client(max_connections=100) as client:
        await open_connections(client, server.url, n)
        assert len(pool_of(client).connections) == n
        idle_checks = counting(monkeypatch, AsyncHTTPConnection, "is_idle")
        assert (await client.get(f"{server.url}/one-more")).text == "ok /one-more"
    assert server.connections == n  # reused one of the idle connections
    # two passes (queued, released) of a few checks per connection; httpcore 1.0.9 lists
    # every connection once per idle connection: 2 * (n * n + ...) = 3,200+ checks
    assert idle_checks[0] <= 6 * n, idle_checks[0]


async def an_idle_connection_goes_to_one_waiting_request_at_a_time(
    serve: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    n = 12
    server = await serve(keep_alive)
    async with create_http_client(max_connections=1) as client:
        passes = counting(monkeypatch, AsyncioConnectionPool, "_assign_requests_to_connections")
        answers = await asyncio.gather(*(client.get(f"{server.url}/r{i}") for i in range(n)))
    assert [a.text for a in answers] == [f"you asked /r{i}" for i in range(n)]
    assert server.connections == 1
    # one pass when a request is queued, one when its response is closed; httpcore 1.0.9
    # gave the freed connection to every waiting request and ran a pass per loser
    assert passes[0] == 2 * n, passes[0]


async def connections_serialise_on_asyncio_locks(
    serve: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = await serve(keep_alive)
    async with create_http_client() as client:
        await client.get(f"{server.url}/x")
        [connection] = pool_of(client).connections
        assert isinstance(connection, AsyncHTTPConnection)
        assert type(connection._request_lock) is asyncio.Lock
        assert type(connection._connection._state_lock) is asyncio.Lock  # type: ignore[union-attr]


async def the_keep_alive_limit_counts_idle_connections(
    serve: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = Gate()
    fast, slow = await serve(keep_alive), await serve(gate)
    limits = httpx.Limits(max_connections=5, max_keepalive_connections=2)
    pool = AsyncioConnectionPool(max_connections=5, max_keepalive_connections=2)
    async with httpx.AsyncClient(limits=limits) as client:
        client._transport._pool = pool  # type: ignore[attr-defined]
        held = [asyncio.create_task(client.get(f"{slow.url}/held{i}")) for i in range(3)]
        await gate.arrivals(3)
        await asyncio.gather(client.get(f"{fast.url}/a"), client.get(f"{fast.url}/b"))
        # 3 busy + 2 idle: the 2 idle are within the keep-alive limit and stay (httpcore
        # 1.0.9 compared all 5 connections with the limit and closed both)
        assert len(pool.connections) == 5
        assert sum(c.is_idle() for c in pool.connections) == 2
        gate.open()
        await asyncio.gather(*held)
        assert sum(c.is_idle() for c in pool.connections) == 2  # the surplus idle closed


async def a_full_pool_closes_an_idle_connection_for_another_origin(
    serve: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = await serve(keep_alive), await serve(keep_alive)
    async with create_http_client(max_connections=1) as client:
        assert (await client.get(f"{first.url}/a")).text == "you asked /a"
        assert (await client.get(f"{second.url}/b")).text == "you asked /b"
        [connection] = pool_of(client).connections
        assert connection.can_handle_request(httpcore.URL(second.url).origin)


async def a_cancelled_waiting_request_leaves_nothing_queued(
    serve: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = Gate()
    server = await serve(gate)
    async with create_http_client(max_connections=1) as client:
        busy = asyncio.create_task(client.get(f"{server.url}/busy"))
        await gate.arrivals(1)
        waiting = asyncio.create_task(client.get(f"{server.url}/waiting"))
        await asyncio.sleep(0.05)
        assert len(pool_of(client)._requests) == 2
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        gate.open()
        assert (await busy).text == "ok /busy"
        assert pool_of(client)._requests == []
        assert (await client.get(f"{server.url}/after")).text == "ok /after"


Scenario = Callable[[Start, pytest.MonkeyPatch], Awaitable[None]]
SCENARIOS: list[Scenario] = [
    an_assignment_pass_is_linear_in_the_connections,
    an_idle_connection_goes_to_one_waiting_request_at_a_time,
    connections_serialise_on_asyncio_locks,
    the_keep_alive_limit_counts_idle_connections,
    a_full_pool_closes_an_idle_connection_for_another_origin,
    a_cancelled_waiting_request_leaves_nothing_queued,
]


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda f: f.__name__)
def test_scenario(scenario: Scenario, loop: str, monkeypatch: pytest.MonkeyPatch) -> None:
    run_on(loop, lambda serve: scenario(serve, monkeypatch))


def test_http2_and_proxies_are_refused() -> None:
    with pytest.raises(ValueError, match=r"HTTP/1\.1 only"):
        AsyncioConnectionPool(http2=True)
    with pytest.raises(ValueError, match="without a proxy"):
        AsyncioConnectionPool(proxy=httpcore.Proxy("http://proxy.test:3128"))
