"""Client of the gateway's two pull feeds: ``GET /v1/suppressions`` and ``GET /v1/status-changes``.

Both are oldest first with ``since`` and ``next_cursor`` (docs/gateway-api.md). The notifier
never imports gateway code; these models copy the fields it needs.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

T = TypeVar("T", bound=BaseModel)


class FeedUnavailable(Exception):
    """The gateway could not be read now; the next run tries again from the same watermark."""


class RemoteSuppression(BaseModel):
    model_config = ConfigDict(extra="ignore")

    address: str
    scope: str
    reason: str
    source: str
    detail: str | None = None
    created_at: datetime


class RemoteStatusChange(BaseModel):
    model_config = ConfigDict(extra="ignore")

    received_at: datetime
    idempotency_key: str
    status: str
    status_changed_at: datetime | None = None
    event: str | None = None  # delivered|bounced|complained|replayed (None: an older gateway)
    provider: str | None = None
    provider_message_id: str | None = None
    code: str | None = None
    reason: str | None = None


class _Page(BaseModel):
    model_config = ConfigDict(extra="ignore")

    items: list[dict[str, Any]]
    next_cursor: str | None = None


class GatewayFeeds:
    """One per process, on the shared gateway ``httpx.AsyncClient``."""

    def __init__(self, http: httpx.AsyncClient, *, base_url: str, token: str) -> None:
        self._http = http
        self._base = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"}

    async def suppressions(
        self, *, since: datetime | None, cursor: str | None, limit: int
    ) -> tuple[list[RemoteSuppression], str | None]:
        return await self._page("/v1/suppressions", RemoteSuppression, since, cursor, limit)

    async def status_changes(
        self, *, since: datetime | None, cursor: str | None, limit: int
    ) -> tuple[list[RemoteStatusChange], str | None]:
        return await self._page("/v1/status-changes", RemoteStatusChange, since, cursor, limit)

    async def _page(
        self, path: str, model: type[T], since: datetime | None, cursor: str | None, limit: int
    ) -> tuple[list[T], str | None]:
        params: dict[str, str | int] = {"limit": limit}
        if since is not None:
            params["since"] = since.isoformat()
        if cursor is not None:
            params["cursor"] = cursor
        try:
            response = await self._http.get(self._base + path, params=params, headers=self._headers)
        except httpx.HTTPError as exc:
            raise FeedUnavailable(f"{path}: {exc!r}"[:300]) from exc
        if response.status_code != 200:
            raise FeedUnavailable(f"{path}: HTTP {response.status_code} {response.text[:200]}")
        try:
            page = _Page.model_validate_json(response.content)
            return [model.model_validate(i) for i in page.items], page.next_cursor
        except ValidationError as exc:
            raise FeedUnavailable(f"{path}: unexpected body: {exc}"[:300]) from exc
