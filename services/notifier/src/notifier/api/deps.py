"""Request dependencies: one session (one transaction) per request, clients from app.state."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from arq.connections import ArqRedis
from fastapi import Depends, Request
from notifier_common.auth import BearerAuth, Principal
from notifier_common.db import session_scope
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from notifier.models import ApiToken
from notifier.settings import NotifierSettings


def get_sessionmaker(request: Request) -> async_sessionmaker[AsyncSession]:
    return request.app.state.sessionmaker


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with session_scope(get_sessionmaker(request)) as session:
        yield session


def get_redis(request: Request) -> ArqRedis:
    return request.app.state.redis


def get_app_settings(request: Request) -> NotifierSettings:
    return request.app.state.settings


auth = BearerAuth(ApiToken, get_sessionmaker)

Session = Annotated[AsyncSession, Depends(get_session)]
Redis = Annotated[ArqRedis, Depends(get_redis)]
Settings = Annotated[NotifierSettings, Depends(get_app_settings)]
EventsWriter = Annotated[Principal, Depends(auth.require("events:write"))]
LettersReader = Annotated[Principal, Depends(auth.require("letters:read"))]
LettersWriter = Annotated[Principal, Depends(auth.require("letters:write"))]
ConfigWriter = Annotated[Principal, Depends(auth.require("config:write"))]
Admin = Annotated[Principal, Depends(auth.require("admin"))]
