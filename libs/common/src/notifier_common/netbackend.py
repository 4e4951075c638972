"""httpcore's network layer on plain asyncio transports instead of anyio (decision 0075).

httpx runs its connection pool (httpcore) over anyio. On asyncio every read and write then
opens an anyio cancel scope, and every reuse of a pooled connection asks anyio for the raw
socket, which rebuilds a dict of attribute getters (``getpeername`` included) to answer
``is_readable``. In the notifier worker that was ~5 % of all CPU for ~1 upstream GET per event.
This backend keeps httpx's client and httpcore's pool and HTTP/1.1 parsing (h11) as they are and
replaces only the byte stream underneath: a protocol with a buffer, ``asyncio.timeout`` only when
a read or a write actually has to wait, and ``is_readable`` answered from the buffer (an idle
keep-alive connection that received bytes or EOF is stale, exactly what httpcore asks).

It is used by :func:`notifier_common.http.create_http_client`; respx still intercepts requests,
since it patches httpcore's ``AsyncConnectionPool`` itself.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Coroutine, Iterable
from typing import Any, cast

import httpcore

SocketOption = (
    tuple[int, int, int] | tuple[int, int, bytes | bytearray] | tuple[int, int, None, int]
)

HIGH_WATER = 256 * 1024  # bytes buffered before reading from the socket pauses


class _Protocol(asyncio.Protocol):
    """Receives bytes into a buffer for one reader (httpcore reads a connection from one task
    at a time) and tracks write flow control."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.eof = False
        self.error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._write_paused = False
        self._drain: asyncio.Future[None] | None = None
        self._read_paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > HIGH_WATER and self.transport is not None:
            self.transport.pause_reading()
            self._read_paused = True
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return False  # let the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self.error = exc
        self._wake()
        self._write_paused = False
        self._wake_drain(exc)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake_drain(None)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _wake_drain(self, exc: Exception | None) -> None:
        drain = self._drain
        if drain is not None and not drain.done():
            if exc is None:
                drain.set_result(None)
            else:
                drain.set_exception(exc)

    async def wait_readable(self) -> None:
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def take(self, max_bytes: int) -> bytes:
        data = bytes(self.buffer[:max_bytes])
        del self.buffer[:max_bytes]
        if self._read_paused and len(self.buffer) <= HIGH_WATER // 4 and self.transport:
            self._read_paused = False
            self.transport.resume_reading()
        return data

    @property
    def write_paused(self) -> bool:
        return self._write_paused

    async def drain(self) -> None:
        if not self._write_paused:
            return
        self._drain = asyncio.get_running_loop().create_future()
        try:
            await self._drain
        finally:
            self._drain = None


class AsyncioStream(httpcore.AsyncNetworkStream):
    def __init__(self, transport: asyncio.Transport, protocol: _Protocol) -> None:
        self._transport = transport
        self._protocol = protocol

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        protocol = self._protocol
        if not protocol.buffer and not protocol.eof:
            try:
                async with asyncio.timeout(timeout):
                    while not protocol.buffer and not protocol.eof:
                        await protocol.wait_readable()
            except TimeoutError as exc:
                raise httpcore.ReadTimeout(str(exc) or "read timed out") from exc
        if protocol.buffer:
            return protocol.take(max_bytes)
        if protocol.error is not None:
            raise httpcore.ReadError(str(protocol.error)) from protocol.error
        return b""

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        protocol = self._protocol
        if self._transport.is_closing() or protocol.error is not None:
            raise httpcore.WriteError("connection closed")
        try:
            self._transport.write(buffer)
            if not protocol.write_paused:  # the usual case: no timer, no task lookup
                return
            async with asyncio.timeout(timeout):
                await protocol.drain()
        except TimeoutError as exc:
            raise httpcore.WriteTimeout(str(exc) or "write timed out") from exc
        except (OSError, RuntimeError) as exc:
            raise httpcore.WriteError(str(exc)) from exc

    async def aclose(self) -> None:
        self._transport.close()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                transport = await loop.start_tls(
                    self._transport, self._protocol, ssl_context, server_hostname=server_hostname
                )
        except TimeoutError as exc:
            self._transport.close()
            raise httpcore.ConnectTimeout(str(exc) or "TLS handshake timed out") from exc
        except (OSError, ssl.SSLError) as exc:
            self._transport.close()
            raise httpcore.ConnectError(str(exc)) from exc
        if transport is None:  # pragma: no cover - only when the transport closed meanwhile
            raise httpcore.ConnectError("connection closed during the TLS handshake")
        return AsyncioStream(transport, self._protocol)

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            # Asked of idle pooled connections: bytes or EOF where no response is expected mean
            # the peer closed it (or broke the protocol): httpcore then drops the connection.
            protocol = self._protocol
            return bool(protocol.buffer) or protocol.eof
        if info == "ssl_object":
            return self._transport.get_extra_info("ssl_object")
        if info == "client_addr":
            return self._transport.get_extra_info("sockname")
        if info == "server_addr":
            return self._transport.get_extra_info("peername")
        if info == "socket":
            return self._transport.get_extra_info("socket")
        return None


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        local = (local_address, 0) if local_address else None
        connecting = loop.create_connection(_Protocol, host, port, local_addr=local)
        return await _connected(connecting, timeout, socket_options)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        connecting = asyncio.get_running_loop().create_unix_connection(_Protocol, path)
        return await _connected(connecting, timeout, socket_options)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


async def _connected(
    connecting: Coroutine[Any, Any, tuple[asyncio.Transport, _Protocol]],
    timeout: float | None,
    options: Iterable[SocketOption] | None,
) -> AsyncioStream:
    """Await a loop connection with httpcore's timeout and errors, then apply socket options."""
    try:
        async with asyncio.timeout(timeout):
            transport, protocol = await connecting
    except TimeoutError as exc:
        raise httpcore.ConnectTimeout(str(exc) or "connect timed out") from exc
    except OSError as exc:
        raise httpcore.ConnectError(str(exc)) from exc
    if options:
        sock: socket.socket = transport.get_extra_info("socket")
        for option in options:
            sock.setsockopt(*option)
    return AsyncioStream(transport, protocol)
