"""HTTP/1.1 keep-alive connections on asyncio protocols, parsed by httptools (decision 0106).

``create_http_client``'s transport sends every request through :class:`Http1Pool`: the
worker's upstream reads and gateway calls, the gateway's esp / crm / newsletter / webhook
providers. It replaces httpcore's pool and h11 connections under httpx (``AsyncHTTPTransport``
keeps httpx's request building, TLS context and error mapping). Measured as client CPU per
upstream GET against the stub, 16 in flight: httpcore's pool with h11 ~470 µs, aiohttp ~180 µs,
this ~110 µs (a bare protocol ~50 µs). h11 is a pure-Python state machine and httpcore's pool
walks every connection several times per request; here a request takes the newest idle
connection of its origin from a list, writes its head and body in one ``transport.write``, and
waits on one future that httptools' C parser (llhttp, uvicorn's request parser) resolves.

What it does, as httpcore did for the same requests:

- **Keep-alive.** A connection goes back to its origin's idle list after a whole response that
  keeps it alive; an idle connection older than ``keepalive_expiry``, or one the peer closed
  (seen by the loop, or still unread in the socket: one ``poll`` per reuse, as httpcore), is
  dropped before use. At most ``max_keepalive_connections`` stay idle.
- **Limits.** At most ``max_connections`` open or opening; a request beyond them waits in FIFO
  order (up to the ``pool`` timeout) for a connection of its origin to come free, or for a slot
  (an idle connection of another origin is closed to make one).
- **Timeouts** from the request's ``timeout`` extension: ``connect`` (TCP and TLS handshake),
  ``write`` (only when the peer stops reading and the transport's buffer is full), ``read``
  (the longest silence while waiting for the response), ``pool``.
- **Errors** are httpcore's exceptions (``ConnectError``, ``ConnectTimeout``, ``ReadTimeout``,
  ``WriteTimeout``, ``PoolTimeout``, ``ReadError``, ``RemoteProtocolError``,
  ``UnsupportedProtocol``), which httpx maps to its own. A peer that closes a connection after
  the request was written and before any answer is ``RemoteProtocolError`` (no silent re-send
  of a request that may have been acted on); a cancelled or failed exchange closes its
  connection.
- **Bodies.** Request bodies with ``Content-Length`` or ``Transfer-Encoding: chunked`` (framed
  here). Responses by length, chunked, or until close; 1xx interim answers are skipped; a HEAD
  answer ends at its head (that connection is then closed). A response is read whole (at most
  :data:`MAX_RESPONSE_BYTES` of body after at most :data:`MAX_HEAD_BYTES` of head): the
  product's calls exchange JSON documents, none streams.

Not here: HTTP/2, proxies (``direct_pool`` and httpx's mounts handle a proxied client apart),
upgrades. respx intercepts once ``HTTPCoreMocker.add_targets`` names :class:`Http1Pool`
(``tests/conftest.py``): it then patches ``handle_async_request`` here as it does on httpcore's
pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import ssl
from collections import deque
from typing import Any

import httpcore
import httptools

#: a response body larger than this is refused (``RemoteProtocolError``): every call this
#: product makes exchanges JSON documents of kilobytes
MAX_RESPONSE_BYTES = 64 * 1024 * 1024

#: bytes that may arrive before a response's head is complete (httptools buffers a header
#: until it ends, without a limit of its own): a peer sending an endless head is cut off
MAX_HEAD_BYTES = 1024 * 1024

#: request bodies are written in pieces of about this size, each waiting while the peer reads
_WRITE_PIECE = 256 * 1024

_DEFAULT_PORTS = {b"http": 80, b"https": 443}

Origin = tuple[bytes, bytes, int]


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: one exchange at a time, its response parsed as it arrives."""

    def __init__(self, origin: Origin) -> None:
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.idle_since = 0.0
        self.loop = asyncio.get_running_loop()
        # the exchange in progress
        self.waiter: asyncio.Future[httpcore.Response] | None = None
        self.head_only = False
        self.status = 0
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.size = 0
        self.answered = False  # a (non-interim) response head arrived
        self.reads = 0
        self.keep_alive = False
        self.drained: asyncio.Future[None] | None = None
        self.paused = False
        self.timer: asyncio.TimerHandle | None = None
        self.fd = -1
        self.head_bytes = 0

    # ---- the exchange ------------------------------------------------------------------------

    async def exchange(
        self, request: httpcore.Request, timeouts: dict[str, float | None]
    ) -> httpcore.Response:
        transport = self.transport
        assert transport is not None
        self.waiter = waiter = self.loop.create_future()
        self.head_only = request.method == b"HEAD"
        self.keep_alive = False
        self.status, self.reason, self.answered, self.size, self.reads = 0, b"", False, 0, 0
        self.head_bytes = 0
        self.headers, self.body = [], []

        chunked = False
        close = False
        head = [request.method, b" ", request.url.target, b" HTTP/1.1\r\n"]
        for name, value in request.headers:
            head += (name, b": ", value, b"\r\n")
            lowered = name.lower()
            if lowered == b"transfer-encoding":
                chunked = value.lower() == b"chunked"
            elif lowered == b"connection":
                close = value.lower() == b"close"
        head.append(b"\r\n")
        pending = b"".join(head)
        async for chunk in request.stream:  # type: ignore[union-attr]
            if not chunk:
                continue
            if chunked:
                chunk = b"%x\r\n%b\r\n" % (len(chunk), chunk)
            pending += chunk
            if len(pending) >= _WRITE_PIECE:
                await self._write(pending, timeouts.get("write"))
                pending = b""
        if chunked:
            pending += b"0\r\n\r\n"
        await self._write(pending, timeouts.get("write"))

        read_timeout = timeouts.get("read")
        if read_timeout is not None:
            self.timer = self.loop.call_later(read_timeout, self._silence, waiter, read_timeout, 0)
        try:
            response = await waiter
        finally:
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None
            self.waiter = None
        if close:
            self.keep_alive = False
        return response

    def _finish(self, keep_alive: bool) -> None:
        """The answer is whole: hand it to the exchange (later bytes cannot change it)."""
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        self.keep_alive = keep_alive
        waiter.set_result(
            httpcore.Response(
                self.status,
                headers=self.headers,
                content=b"".join(self.body),
                extensions={"http_version": b"HTTP/1.1", "reason_phrase": self.reason},
            )
        )
        self.headers, self.body = [], []

    async def _write(self, data: bytes, write_timeout: float | None) -> None:
        if self.closed or self.transport is None:
            raise httpcore.WriteError("the connection was closed before the request was written")
        self.transport.write(data)
        if not self.paused:
            return
        self.drained = self.loop.create_future()
        try:
            async with asyncio.timeout(write_timeout):
                await self.drained
        except TimeoutError:
            raise httpcore.WriteTimeout(f"the peer read nothing for {write_timeout} s") from None
        finally:
            self.drained = None

    def _silence(
        self, waiter: asyncio.Future[httpcore.Response], timeout: float, seen: int
    ) -> None:
        """Called ``timeout`` after the request was written, then again while data comes."""
        if waiter is not self.waiter or waiter.done():
            return
        if self.reads != seen:
            self.timer = self.loop.call_later(timeout, self._silence, waiter, timeout, self.reads)
            return
        waiter.set_exception(httpcore.ReadTimeout(f"no answer for {timeout} s"))

    def _fail(self, exc: Exception) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    # ---- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        self.fd = sock.fileno() if sock is not None else -1

    def has_unread_bytes(self) -> bool:
        """Whether the socket holds bytes (or the peer's FIN) the loop has not read yet: an
        idle connection that the peer closed the moment it answered looks alive until the
        loop's next read. One ``poll`` with no wait, as httpcore asks on every reuse."""
        if self.fd < 0:
            return False
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        return bool(poller.poll(0))

    def data_received(self, data: bytes) -> None:
        self.reads += 1
        if self.waiter is None:  # an idle connection has nothing to say: unusable from now on
            self.keep_alive = False
            self.close()
            return
        if not self.answered:
            self.head_bytes += len(data)
            if self.head_bytes > MAX_HEAD_BYTES:
                self._fail(
                    httpcore.RemoteProtocolError(f"response head over {MAX_HEAD_BYTES} bytes")
                )
                self.close()
                return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(httpcore.RemoteProtocolError(f"malformed response: {exc}"))
            self.close()
        except httptools.HttpParserUpgrade:
            self._fail(httpcore.RemoteProtocolError("the peer switched protocols"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        if self.answered and self._delimited_by_close():
            self._finish(keep_alive=False)
        elif self.answered:
            waiter.set_exception(
                httpcore.RemoteProtocolError("the peer closed the connection mid-response")
            )
        elif exc is not None:
            waiter.set_exception(httpcore.ReadError(f"connection lost: {exc}"))
        else:
            waiter.set_exception(
                httpcore.RemoteProtocolError("Server disconnected without sending a response.")
            )
        if self.drained is not None and not self.drained.done():
            self.drained.set_result(None)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        if self.drained is not None and not self.drained.done():
            self.drained.set_result(None)

    def _delimited_by_close(self) -> bool:
        if self.status in (204, 304):
            return False
        for name, value in self.headers:
            lowered = name.lower()
            if lowered == b"content-length" or (
                lowered == b"transfer-encoding" and b"chunked" in value.lower()
            ):
                return False
        return True

    # ---- httptools callbacks -----------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.waiter is None or self.waiter.done():  # a second answer to one request
            self.keep_alive = False
            self.close()

    def on_status(self, status: bytes) -> None:
        self.reason = status

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200:
            return  # interim (100 Continue, 103 Early Hints): the real answer follows
        self.status = status
        self.answered = True
        if self.head_only:  # the head is the whole answer; the parser would wait for a body
            self._finish(keep_alive=False)

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.size > MAX_RESPONSE_BYTES:
            self._fail(httpcore.RemoteProtocolError(f"response over {MAX_RESPONSE_BYTES} bytes"))
            self.close()
            return
        self.body.append(body)

    def on_message_complete(self) -> None:
        if not self.answered:  # an interim answer ended: forget its headers
            self.headers, self.reason = [], b""
            return
        # asked here: llhttp forgets the answer's Connection header once the message is done
        self._finish(keep_alive=self.parser.should_keep_alive())


class Http1Pool:
    """Keep-alive HTTP/1.1 connections per origin (see the module's docstring)."""

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext | None = None,
        max_connections: int | None = 100,
        max_keepalive_connections: int | None = None,
        keepalive_expiry: float | None = None,
    ) -> None:
        self._ssl_context = ssl_context
        self._max_connections = max_connections if max_connections is not None else 1 << 30
        self._max_keepalive = (
            max_keepalive_connections
            if max_keepalive_connections is not None
            else self._max_connections
        )
        self._keepalive_expiry = keepalive_expiry
        self._idle: dict[Origin, list[_Connection]] = {}
        self._idle_count = 0
        self._busy: set[_Connection] = set()
        self._opening = 0
        self._waiters: deque[tuple[Origin, asyncio.Future[_Connection | None]]] = deque()
        self._closed = False
        self._origins: dict[str, tuple[bytes, bytes, int | None]] = {}

    @property
    def connections(self) -> list[_Connection]:
        """Open connections, busy then idle (for tests and diagnostics)."""
        return [*self._busy, *(c for idle in self._idle.values() for c in idle)]

    @property
    def waiting(self) -> int:
        """Requests waiting for a connection."""
        return len(self._waiters)

    def _open_count(self) -> int:
        return len(self._busy) + self._idle_count + self._opening

    # ---- the request ---------------------------------------------------------------------------

    async def request(
        self,
        method: bytes,
        url: str,
        *,
        headers: list[tuple[bytes, bytes]],
        content: bytes | None = None,
        extensions: dict[str, Any] | None = None,
    ) -> httpcore.Response:
        """One whole exchange, as httpcore's ``request()``: ``headers`` carry ``Host``;
        ``Content-Length`` is added for ``content`` unless they carry it."""
        if content is not None and not any(k.lower() == b"content-length" for k, _ in headers):
            headers = [*headers, (b"Content-Length", b"%d" % len(content))]
        response = await self.handle_async_request(
            httpcore.Request(
                method, self._url(url), headers=headers, content=content, extensions=extensions
            )
        )
        try:
            await response.aread()
        finally:
            await response.aclose()
        return response

    def _url(self, url: str) -> httpcore.URL:
        """``url`` parsed, its origin once (urllib's parse of the whole URL cost ~6 µs per
        request)."""
        slash = url.find("/", url.find("://") + 3)
        base, target = (url, "/") if slash < 0 else (url[:slash], url[slash:])
        origin = self._origins.get(base)
        if origin is None:
            parsed = httpcore.URL(base + "/")
            origin = (parsed.scheme, parsed.host, parsed.port)
            if len(self._origins) < 256:
                self._origins[base] = origin
        scheme, host, port = origin
        return httpcore.URL(scheme=scheme, host=host, port=port, target=target.encode("ascii"))

    async def handle_async_request(self, request: httpcore.Request) -> httpcore.Response:
        url = request.url
        scheme = url.scheme
        if scheme not in _DEFAULT_PORTS:
            raise httpcore.UnsupportedProtocol(f"unsupported URL scheme {scheme!r}")
        if not url.host:
            raise httpcore.UnsupportedProtocol("the URL has no host")
        if self._closed:
            raise RuntimeError("the HTTP pool is closed")
        origin = (scheme, url.host, url.port or _DEFAULT_PORTS[scheme])
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})

        connection = self._take_idle(origin) if not self._waiters else None
        if connection is None:
            connection = await self._acquire(origin, timeouts)
        self._busy.add(connection)
        try:
            response = await connection.exchange(request, timeouts)
        except BaseException:
            connection.close()
            self._release(connection)
            raise
        self._release(connection)
        return response

    async def _acquire(self, origin: Origin, timeouts: dict[str, float | None]) -> _Connection:
        """A connection for ``origin``: an idle one, a new one, or one handed over by a
        request that finished, after waiting in line for it."""
        if not self._waiters:
            if self._open_count() < self._max_connections:
                return await self._open(origin, timeouts.get("connect"))
            if self._close_an_idle_connection():
                return await self._open(origin, timeouts.get("connect"))
        waiter: asyncio.Future[_Connection | None] = asyncio.get_running_loop().create_future()
        entry = (origin, waiter)
        self._waiters.append(entry)
        timeout = timeouts.get("pool")
        try:
            async with asyncio.timeout(timeout):
                handed = await waiter
        except BaseException as exc:
            # cancelling this task cancelled the future too: it may still be in line
            if waiter.cancelled() or not waiter.done():
                waiter.cancel()
                with contextlib.suppress(ValueError):
                    self._waiters.remove(entry)
            elif waiter.exception() is None:
                self._give_back(waiter.result())  # handed over as we were cancelled
            if isinstance(exc, TimeoutError):
                raise httpcore.PoolTimeout(f"no connection free within {timeout} s") from None
            raise
        if handed is not None:
            return handed
        # a slot was handed over (counted as opening): open the connection in it
        self._opening -= 1
        return await self._open(origin, timeouts.get("connect"))

    def _give_back(self, handed: _Connection | None) -> None:
        if handed is None:
            self._opening -= 1
            self._wake()
        else:
            self._busy.add(handed)
            self._release(handed)

    async def _open(self, origin: Origin, connect_timeout: float | None) -> _Connection:
        scheme, host, port = origin
        self._opening += 1
        loop = asyncio.get_running_loop()
        hostname = host.decode("ascii")
        tls: ssl.SSLContext | None = None
        if scheme == b"https":
            tls = self._ssl_context or ssl.create_default_context()
        try:
            async with asyncio.timeout(connect_timeout):
                _, connection = await loop.create_connection(
                    lambda: _Connection(origin),
                    hostname,
                    port,
                    ssl=tls,
                    server_hostname=hostname if tls is not None else None,
                )
        except BaseException as exc:
            self._opening -= 1
            self._wake()
            if isinstance(exc, TimeoutError):
                raise httpcore.ConnectTimeout(
                    f"connecting to {hostname}:{port}: timed out"
                ) from None
            if isinstance(exc, OSError):  # ssl.SSLError included
                raise httpcore.ConnectError(f"connecting to {hostname}:{port}: {exc}") from exc
            raise
        self._opening -= 1
        self._busy.add(connection)  # counted as opening until now: the count never dips
        return connection

    def _take_idle(self, origin: Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        if not idle:
            return None
        expiry = self._keepalive_expiry
        now = asyncio.get_running_loop().time() if expiry is not None else 0.0
        if expiry is not None and now - idle[0].idle_since > expiry:  # the oldest first
            stale = idle.pop(0)
            self._idle_count -= 1
            stale.close()
        while idle:
            connection = idle.pop()
            self._idle_count -= 1
            if (
                connection.closed
                or (expiry is not None and now - connection.idle_since > expiry)
                or connection.has_unread_bytes()
            ):
                connection.close()
                continue
            return connection
        return None

    def _close_an_idle_connection(self) -> bool:
        for idle in self._idle.values():
            if idle:
                idle.pop(0).close()
                self._idle_count -= 1
                return True
        return False

    def _release(self, connection: _Connection) -> None:
        """The exchange on ``connection`` ended: hand it over, keep it idle, or close it."""
        self._busy.discard(connection)
        reusable = connection.keep_alive and not connection.closed and not self._closed
        if reusable:
            for i, (origin, waiter) in enumerate(self._waiters):
                if origin == connection.origin and not waiter.done():
                    del self._waiters[i]
                    self._busy.add(connection)
                    waiter.set_result(connection)
                    return
            if self._waiters or self._idle_count >= self._max_keepalive:
                reusable = False  # the slot serves another origin's request or is over the limit
        if not reusable:
            connection.close()
            self._wake()
            return
        connection.idle_since = asyncio.get_running_loop().time()
        self._idle.setdefault(connection.origin, []).append(connection)
        self._idle_count += 1

    def _wake(self) -> None:
        """A slot came free: the first waiting request may open a connection in it."""
        while self._waiters and self._open_count() < self._max_connections:
            _, waiter = self._waiters.popleft()
            if waiter.done():
                continue
            self._opening += 1
            waiter.set_result(None)

    async def aclose(self) -> None:
        self._closed = True
        for connection in self.connections:
            connection.close()
        self._idle.clear()
        self._idle_count = 0
        while self._waiters:
            _, waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(httpcore.PoolTimeout("the HTTP pool was closed"))

    async def __aenter__(self) -> Http1Pool:
        return self

    async def __aexit__(self, *args: Any) -> None:
        await self.aclose()
