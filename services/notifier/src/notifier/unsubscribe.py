"""Signed unsubscribe links: ``{public_url}/v1/unsubscribe/{letter_id}.{sig}``.

``sig`` is the first 32 hex digits of HMAC-SHA256(secret_key, "<letter_id>:<recipient>"): the
link names only the letter, the recipient stays in the database, and the same letter always gets
the same link (a repeated send has the same body, so the gateway's idempotency holds). The
letter engine signs (``letters/drain.py``), the unsubscribe endpoints verify.
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEX = 32


def signature(secret_key: str, letter_id: int, recipient: str) -> str:
    mac = hmac.new(secret_key.encode(), f"{letter_id}:{recipient}".encode(), hashlib.sha256)
    return mac.hexdigest()[:SIGNATURE_HEX]


def token(secret_key: str, letter_id: int, recipient: str) -> str:
    return f"{letter_id}.{signature(secret_key, letter_id, recipient)}"


def link(public_url: str, secret_key: str, letter_id: int, recipient: str) -> str:
    return f"{public_url.rstrip('/')}/v1/unsubscribe/{token(secret_key, letter_id, recipient)}"


def parse(value: str) -> tuple[int, str] | None:
    """``(letter_id, sig)`` of a well-formed token, else None (nothing is looked up for it)."""
    letter_id, dot, sig = value.partition(".")
    if not dot or not letter_id.isascii() or not letter_id.isdigit() or len(letter_id) > 18:
        return None
    if len(sig) != SIGNATURE_HEX:
        return None
    return int(letter_id), sig


def verify(secret_key: str, letter_id: int, recipient: str, sig: str) -> bool:
    """Constant-time comparison of ``sig`` with the letter's own signature."""
    expected = signature(secret_key, letter_id, recipient)
    return hmac.compare_digest(expected.encode(), sig.encode("utf-8", "replace"))
