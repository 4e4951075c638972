"""Webhook provider: a signed JSON POST to the recipient's URL (or the configured one).

Signature (Stripe-like): ``X-Notifier-Signature: t=<unix ts>,v1=<hex HMAC-SHA256(secret,
f"{ts}.{body}")>``; receivers check it with :func:`verify_signature`.

SSRF guard: http/https only; the host must be in ``allowed_hosts`` when that is set; the host is
resolved here and every address must be public (no private, loopback, link-local, multicast,
reserved ranges) unless ``allow_private``. The request then goes to the checked address (Host
header and TLS server name keep the original host), so a second DNS answer cannot redirect it.
Redirects are never followed.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from notifier_common.http import create_http_client
from notifier_common.logging import get_logger
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from gateway.providers import _http
from gateway.providers.base import Message, Provider, SendResult

log = get_logger("gateway.webhook")

SIGNATURE_HEADER = "X-Notifier-Signature"
TIMESTAMP_HEADER = "X-Notifier-Timestamp"
DELIVERY_HEADER = "X-Notifier-Delivery-Id"

Resolver = Callable[[str, int], Awaitable[list[str]]]


class WebhookConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    secret: SecretStr = Field(min_length=16, description="HMAC-SHA256 signing secret.")
    url: str | None = Field(None, description="Target when the recipient has no URL.")
    allowed_hosts: list[str] = Field(
        default_factory=list, description="Exact hosts or '*.example.com'; empty: any public."
    )
    allow_private: bool = Field(False, description="Allow private/loopback targets (dev only).")
    timeout: float = Field(10.0, gt=0)
    max_connections: int = Field(20, ge=1)


class TargetRefused(Exception):
    """The target URL is not one we may call."""


def sign(secret: str, body: bytes, *, timestamp: int) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify_signature(
    secret: str,
    header: str,
    body: bytes | str,
    tolerance_s: float = 300,
    *,
    now: float | None = None,
) -> bool:
    """True when ``header`` signs ``body`` with ``secret`` and its timestamp is recent."""
    raw = body.encode() if isinstance(body, str) else body
    parts = [item.strip().partition("=") for item in header.split(",")]
    timestamps = [value for key, _, value in parts if key == "t"]
    candidates = [value for key, _, value in parts if key == "v1"]
    if len(timestamps) != 1 or not candidates or not timestamps[0].isdigit():
        return False
    timestamp = int(timestamps[0])
    if abs((time.time() if now is None else now) - timestamp) > tolerance_s:
        return False
    expected = sign(secret, raw, timestamp=timestamp).rpartition("v1=")[2]
    return any(hmac.compare_digest(expected, candidate) for candidate in candidates)


async def resolve_host(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    return [str(info[4][0]) for info in infos]


def is_public_address(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


class WebhookProvider(Provider):
    kind = "webhook"

    def __init__(
        self, name: str, config: dict[str, Any], *, resolver: Resolver | None = None
    ) -> None:
        super().__init__(name, config)
        self.settings = _http.load_config(WebhookConfig, kind=self.kind, name=name, config=config)
        self._resolve = resolver or resolve_host
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        self._client = create_http_client(
            timeout=self.settings.timeout, max_connections=self.settings.max_connections
        )

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def send(self, message: Message) -> SendResult:
        client = self._client
        if client is None:
            raise RuntimeError(f"webhook provider {self.name!r} used before start()")
        targets = {r.address or self.settings.url for r in message.to}
        if len(targets) != 1 or None in targets:
            return SendResult.permanent(
                "invalid_recipient", "a webhook message needs exactly one target URL"
            )
        url = str(targets.pop())
        try:
            target, extensions = await self._checked_target(url)
        except TargetRefused as exc:
            log.warning("gateway.webhook_refused", provider=self.name, reason=str(exc))
            return SendResult.permanent("target_refused", str(exc))
        except OSError as exc:
            return SendResult.transient("transport", f"cannot resolve {url}: {exc}")
        return await self._post(client, message, url, target, extensions)

    async def _post(
        self,
        client: httpx.AsyncClient,
        message: Message,
        url: str,
        target: httpx.URL,
        extensions: dict[str, Any],
    ) -> SendResult:
        host = httpx.URL(url).netloc.decode("ascii")
        body = _body(message)
        timestamp = int(time.time())
        delivery_id = uuid.uuid4().hex
        headers = {
            "Content-Type": "application/json",
            "Host": host,
            SIGNATURE_HEADER: sign(
                self.settings.secret.get_secret_value(), body, timestamp=timestamp
            ),
            TIMESTAMP_HEADER: str(timestamp),
            DELIVERY_HEADER: delivery_id,
        }
        reply = await _http.request(
            client,
            "POST",
            str(target),
            content=body,
            headers=headers,
            extensions=extensions,
            follow_redirects=False,
        )
        if isinstance(reply, SendResult):
            log.warning("gateway.webhook_failed", provider=self.name, host=host, code=reply.code)
            return reply
        log.info("gateway.webhook_sent", provider=self.name, host=host, delivery_id=delivery_id)
        return SendResult.ok(delivery_id, status_code=reply.status_code)

    async def _checked_target(self, url: str) -> tuple[httpx.URL, dict[str, Any]]:
        """The URL to request (pinned to a checked address) and its request extensions."""
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL as exc:
            raise TargetRefused(f"invalid URL: {exc}") from exc
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise TargetRefused(f"only http(s) URLs with a host are allowed, not {url!r}")
        host = parsed.host.lower()
        if self.settings.allowed_hosts and not _host_allowed(host, self.settings.allowed_hosts):
            raise TargetRefused(f"host {host!r} is not in allowed_hosts")
        if self.settings.allow_private:
            return parsed, {}
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        addresses = [host] if _is_ip(host) else await self._resolve(host, port)
        if not addresses:
            raise TargetRefused(f"host {host!r} resolves to no address")
        refused = [a for a in addresses if not is_public_address(a)]
        if refused:
            raise TargetRefused(f"host {host!r} resolves to non-public address {refused[0]}")
        extensions = {"sni_hostname": host} if parsed.scheme == "https" else {}
        return parsed.copy_with(host=addresses[0]), extensions


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _host_allowed(host: str, allowed: list[str]) -> bool:
    for pattern in (p.lower() for p in allowed):
        if pattern.startswith("*.") and host.endswith(pattern[1:]):
            return True
        if host == pattern:
            return True
    return False


def _body(message: Message) -> bytes:
    payload = {
        "id": message.metadata.get("letter_id"),
        "subject": message.subject,
        "text": message.text,
        "html": message.html,
        "properties": message.properties,
        "metadata": message.metadata,
    }
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, default=str).encode()
