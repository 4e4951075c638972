"""Opaque keyset cursors: base64 of ``[sort_value, id]`` of the last row of a page."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Select, and_, or_

from notifier_common.errors import Unprocessable

T = TypeVar("T")
S = TypeVar("S", bound=Select[Any])


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


def decode_keyset_cursor(
    cursor: str | None, id_type: Callable[[str], T]
) -> tuple[datetime, T] | None:
    """``(timestamp, id)`` of a cursor, the id parsed by ``id_type`` (``int``, ``uuid.UUID``);
    None without a cursor; 422 for a malformed one."""
    if not cursor:
        return None
    at, last = decode_datetime_cursor(cursor)
    try:
        return at, id_type(last)
    except (TypeError, ValueError) as exc:
        raise Unprocessable("invalid cursor") from exc


def newest_first(
    stmt: S, ts: Any, id_: Any, *, after: tuple[datetime, Any] | None, limit: int
) -> S:
    """Order by ``(ts, id)`` descending, keyset after ``after`` (never OFFSET), ``limit`` rows."""
    if after is not None:
        at, last = after
        stmt = stmt.where(or_(ts < at, and_(ts == at, id_ < last)))
    return stmt.order_by(ts.desc(), id_.desc()).limit(limit)
