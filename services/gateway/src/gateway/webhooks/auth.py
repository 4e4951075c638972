"""Per-provider webhook authentication: a shared secret header or an HMAC-SHA256 signature.

Signature header (default ``X-Webhook-Signature``): ``t=<unix seconds>,v1=<hex>`` where
``hex = HMAC_SHA256(secret, "<t>." + raw body)``; several ``v1=`` are accepted (key rotation);
``t`` must be within ``tolerance_seconds`` of now (replays of old bodies are refused).
"""

from __future__ import annotations

import hashlib
import hmac
import time

from gateway.settings import WebhookAuth


class WebhookAuthError(Exception):
    """The request does not prove it comes from the provider."""


def sign(secret: str, body: bytes, *, timestamp: int) -> str:
    """The header value a provider (or a test) sends."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def header_name(auth: WebhookAuth) -> str:
    if auth.header:
        return auth.header
    return "X-Webhook-Secret" if auth.scheme == "shared_secret" else "X-Webhook-Signature"


def verify(auth: WebhookAuth, header: str | None, body: bytes, *, now: float | None = None) -> None:
    if not header:
        raise WebhookAuthError(f"missing {header_name(auth)} header")
    if auth.scheme == "shared_secret":
        if not hmac.compare_digest(header.encode(), auth.secret.encode()):
            raise WebhookAuthError("wrong webhook secret")
        return
    parts = [p.strip().partition("=") for p in header.split(",")]
    stamps = [v for k, _, v in parts if k == "t"]
    signatures = [v for k, _, v in parts if k == "v1"]
    if len(stamps) != 1 or not stamps[0].isdigit() or not signatures:
        raise WebhookAuthError("malformed signature header")
    timestamp = int(stamps[0])
    if abs((now if now is not None else time.time()) - timestamp) > auth.tolerance_seconds:
        raise WebhookAuthError("signature timestamp outside the tolerance")
    expected = sign(auth.secret, body, timestamp=timestamp).rpartition("v1=")[2]
    if not any(hmac.compare_digest(expected, s) for s in signatures):
        raise WebhookAuthError("signature does not match")
