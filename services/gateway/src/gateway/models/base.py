from typing import Any

import orjson
from notifier_common.db import metadata_for
from sqlalchemy import Dialect, Text
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

SCHEMA = "gateway"


class Base(DeclarativeBase):
    metadata = metadata_for(SCHEMA)


class JsonText(TypeDecorator[dict[str, Any]]):
    """A JSON document stored as ``text``: the exact compact UTF-8 JSON the gateway wrote
    (decision 0055). Python sees a dict, as with JSONB; PostgreSQL neither parses nor rewrites
    it (JSONB parsing cost ~60-80 ms of server CPU per 500 letters, per table)."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: dict[str, Any] | None, dialect: Dialect) -> str | None:
        return None if value is None else orjson.dumps(value).decode()

    def process_result_value(self, value: str | None, dialect: Dialect) -> dict[str, Any] | None:
        return None if value is None else orjson.loads(value)
