"""Opaque keyset cursors: base64 of ``[sort_value, id]`` of the last row of a page."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any

from notifier_common.errors import Unprocessable


def encode_cursor(sort_value: datetime | int | str, row_id: Any) -> str:
    value = sort_value.isoformat() if isinstance(sort_value, datetime) else sort_value
    raw = json.dumps([value, str(row_id)], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[Any, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value, row_id = json.loads(base64.urlsafe_b64decode(padded))
    except (ValueError, TypeError) as exc:
        raise Unprocessable(
            "invalid cursor",
            errors=[{"loc": "query.cursor", "msg": "malformed cursor", "type": "value_error"}],
        ) from exc
    return value, row_id


def decode_datetime_cursor(cursor: str) -> tuple[datetime, str]:
    value, row_id = decode_cursor(cursor)
    try:
        return datetime.fromisoformat(value), row_id
    except (TypeError, ValueError) as exc:
        raise Unprocessable("invalid cursor") from exc
