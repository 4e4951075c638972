"""The enrichment client's direct GET on the shared client's httpcore pool (decision 0076)
against real local sockets: the request it writes, and httpcore's own errors (not httpx's)
classified as transient."""

from __future__ import annotations

import asyncio
import json

import pytest
from notifier.enrichment import EnrichmentClient, UpstreamUnavailable
from notifier_common.http import create_http_client

PROFILE = {
    "id": "c 1",
    "name": "Northwind",
    "locale": "en",
    "timezone": "Europe/London",
    "emails": ["ops@northwind.example"],
    "payment_type": "prepaid",
    "service": "taxi",
    "cabinet_url": "https://corp.example.com/c1",
}


async def no_sleep(_delay: float) -> None:
    return None


async def test_the_direct_get_sends_host_accept_and_the_quoted_path() -> None:
    heads: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heads.append(await reader.readuntil(b"\r\n\r\n"))
        body = json.dumps(PROFILE).encode()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with create_http_client(timeout=2.0) as http:
            client = EnrichmentClient(
                http,
                clients_url=f"http://127.0.0.1:{port}",
                billing_url=f"http://127.0.0.1:{port}",
                cache_ttl=0,
                sleep=no_sleep,
            )
            assert client._core is not None  # the direct path, not httpx's
            profile = await client.client("c 1")
    finally:
        server.close()
    assert profile.name == "Northwind"
    request_line, *header_lines = heads[0].decode().split("\r\n")
    assert request_line == "GET /v1/clients/c%201 HTTP/1.1"
    headers = {k.lower(): v for k, _, v in (h.partition(": ") for h in header_lines if h)}
    assert headers["host"] == f"127.0.0.1:{port}"
    assert headers["accept"] == "application/json"


async def test_a_refused_connection_is_transient_after_the_retries() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    async with create_http_client(timeout=2.0) as http:
        client = EnrichmentClient(
            http,
            clients_url=f"http://127.0.0.1:{port}",
            billing_url=f"http://127.0.0.1:{port}",
            retries=1,
            cache_ttl=0,
            sleep=no_sleep,
        )
        with pytest.raises(UpstreamUnavailable, match=r"transport error \(ConnectError"):
            await client.client("c1")


async def test_a_silent_upstream_is_a_transient_timeout() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with create_http_client(timeout=0.2) as http:
            client = EnrichmentClient(
                http,
                clients_url=f"http://127.0.0.1:{port}",
                billing_url=f"http://127.0.0.1:{port}",
                retries=0,
                cache_ttl=0,
                sleep=no_sleep,
            )
            with pytest.raises(UpstreamUnavailable, match=r"timeout \(ReadTimeout\)"):
                await client.client("c1")
    finally:
        server.close()
