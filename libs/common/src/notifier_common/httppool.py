"""httpcore's connection pool with linear bookkeeping and asyncio's own locks (decision 0101).

``create_http_client``'s pool (HTTP/1.1, no proxy) is httpcore's ``AsyncConnectionPool`` with
three changes, each measured as CPU per upstream GET in the notifier worker's enrichment:

- **Assignment in one pass.** httpcore 1.0.9's ``_assign_requests_to_connections``, run when a
  request is queued and again when its response is closed, counts idle connections by listing
  every connection once per connection (``len([c.is_idle() for c in connections])``, O(n²)) and
  lists the available and the idle connections again for every queued request (O(n·m))
  (encode/httpcore#1035). Here each list is built once per pass. An idle connection goes to one
  queued request only (httpcore hands it to all of them; all but one then fail with
  ``ConnectionNotAvailable`` and queue again, each loss another pass), and a connection handed
  to a request is never the one closed to make room for another (encode/httpcore#1110). The
  surplus over ``max_keepalive_connections`` is counted among the idle connections, as
  documented (httpcore counted all of them; ``create_http_client`` keeps both limits equal, so
  nothing changes there).
- **No shield for nothing.** Closing the connections a pass dropped enters an anyio cancel
  scope even when there are none: skipped when there are none.
- **asyncio locks.** Each connection serialises its requests with anyio locks, whose every
  acquire asks sniffio for the running library, opens a cancel scope and yields to the loop.
  ``asyncio.Lock`` does the same job on the one loop this code runs on.

The pool's request path (``handle_async_request``) is httpcore's own, so respx, which patches
it on ``httpcore.AsyncConnectionPool``, still intercepts. The private names used here are
httpcore 1.0's; the tests in ``tests/common/test_http_pool.py`` fail if an upgrade moves them.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpcore
from httpcore._async.connection import AsyncHTTPConnection
from httpcore._async.http11 import AsyncHTTP11Connection
from httpcore._async.interfaces import AsyncConnectionInterface


class AsyncioConnectionPool(httpcore.AsyncConnectionPool):
    """An HTTP/1.1 pool without proxy, on asyncio (see the module's docstring)."""

    def __init__(self, **kwargs: Any) -> None:
        if kwargs.get("http2") or kwargs.get("proxy") is not None:
            raise ValueError("AsyncioConnectionPool speaks HTTP/1.1 only, without a proxy")
        super().__init__(**kwargs)

    def create_connection(self, origin: httpcore.Origin) -> AsyncConnectionInterface:
        return _Connection(
            origin=origin,
            ssl_context=self._ssl_context,
            keepalive_expiry=self._keepalive_expiry,
            http1=self._http1,
            http2=False,
            retries=self._retries,
            local_address=self._local_address,
            uds=self._uds,
            network_backend=self._network_backend,
            socket_options=self._socket_options,
        )

    def _assign_requests_to_connections(self) -> list[AsyncConnectionInterface]:
        closing: list[AsyncConnectionInterface] = []
        kept: list[AsyncConnectionInterface] = []
        for connection in self._connections:
            if connection.is_closed():
                continue
            if connection.has_expired():
                closing.append(connection)
            else:
                kept.append(connection)
        idle = [c for c in kept if c.is_idle()]
        surplus = len(idle) - self._max_keepalive_connections
        if surplus > 0:
            dropped = {id(c) for c in idle[:surplus]}
            closing += idle[:surplus]
            kept = [c for c in kept if id(c) not in dropped]
            idle = idle[surplus:]
        self._connections = kept

        # HTTP/1.1 only: a kept connection is available exactly when it is idle, and serves one
        # request at a time, so ``idle`` is both the reuse list and the list to make room from
        for request in [r for r in self._requests if r.is_queued()]:
            origin = request.request.url.origin
            reuse = next((c for c in idle if c.can_handle_request(origin)), None)
            if reuse is not None:
                idle.remove(reuse)
                request.assign_to_connection(reuse)
                continue
            if len(self._connections) >= self._max_connections:
                if not idle:
                    break  # the pool is full of busy connections: the rest wait for one
                spare = idle.pop(0)  # another origin's (one of this origin's would be reused)
                self._connections.remove(spare)
                closing.append(spare)
            connection = self.create_connection(origin)
            self._connections.append(connection)
            request.assign_to_connection(connection)
        return closing

    async def _close_connections(self, closing: list[AsyncConnectionInterface]) -> None:
        if closing:
            await super()._close_connections(closing)


class _HTTP11Connection(AsyncHTTP11Connection):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._state_lock = asyncio.Lock()  # type: ignore[assignment]


class _Connection(AsyncHTTPConnection):
    """httpcore's connection, with an asyncio lock and an HTTP/1.1 connection that has one."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._request_lock = asyncio.Lock()  # type: ignore[assignment]

    async def handle_async_request(self, request: httpcore.Request) -> httpcore.Response:
        # connect here (as httpcore does, under the request lock) so that the HTTP/1.1
        # connection is ours; httpcore's method then finds it and sends the request on it
        if self._connection is None and self.can_handle_request(request.url.origin):
            try:
                async with self._request_lock:
                    if self._connection is None:
                        stream = await self._connect(request)
                        self._connection = _HTTP11Connection(
                            origin=self._origin,
                            stream=stream,
                            keepalive_expiry=self._keepalive_expiry,
                        )
            except BaseException:
                self._connect_failed = True
                raise
        return await super().handle_async_request(request)
