"""Request dependencies: one session (one transaction) per request, clients from app.state."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from arq.connections import ArqRedis
from fastapi import Depends, Query, Request
from notifier_common.auth import BearerAuth, Principal
from notifier_common.db import session_scope
from pydantic import AwareDatetime
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from notifier.config.integrations import Integrations
from notifier.models import ApiToken
from notifier.settings import NotifierSettings


def get_sessionmaker(request: Request) -> async_sessionmaker[AsyncSession]:
    return request.app.state.sessionmaker


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with session_scope(get_sessionmaker(request)) as session:
        yield session


# Dependencies are ``async def`` even when they only read app.state: FastAPI runs a plain ``def``
# dependency in its thread pool, a thread hop per request (~7 % of the intake's CPU).


async def get_redis(request: Request) -> ArqRedis:
    return request.app.state.redis


async def get_app_settings(request: Request) -> NotifierSettings:
    return request.app.state.settings


async def get_clients(request: Request) -> dict[str, Any]:
    """Shared clients started in the lifespan: ``gateway_http``, ``upstream_http``, ``gateway``,
    ``enrichment``, ``clock`` (see ``notifier.worker.start_clients``); tests may replace them."""
    clients: dict[str, Any] = request.app.state.clients
    return clients


async def get_integrations(request: Request) -> Integrations:
    """The gateway's operator side (switches, suppression lifts) on the shared gateway client."""
    return Integrations.of(await get_clients(request), await get_app_settings(request))


auth = BearerAuth(ApiToken, get_sessionmaker)

Session = Annotated[AsyncSession, Depends(get_session)]
Redis = Annotated[ArqRedis, Depends(get_redis)]
Settings = Annotated[NotifierSettings, Depends(get_app_settings)]
Clients = Annotated[dict[str, Any], Depends(get_clients)]
GatewayIntegrations = Annotated[Integrations, Depends(get_integrations)]
EventsWriter = Annotated[Principal, Depends(auth.require("events:write"))]
LettersReader = Annotated[Principal, Depends(auth.require("letters:read"))]
LettersWriter = Annotated[Principal, Depends(auth.require("letters:write"))]
ConfigWriter = Annotated[Principal, Depends(auth.require("config:write"))]
Admin = Annotated[Principal, Depends(auth.require("admin"))]

# time-range query parameters of the history endpoints: aware only (a naive time is 422)
Since = Annotated[AwareDatetime | None, Query(description="Inclusive lower bound (with tz).")]
Until = Annotated[AwareDatetime | None, Query(description="Exclusive upper bound (with tz).")]
