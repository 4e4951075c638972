"""Request dependencies: sessions, long-lived objects from app.state, scoped tokens."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from notifier_common.auth import BearerAuth, Principal
from notifier_common.db import session_scope
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.messages.service import MessageService
from gateway.models import ApiToken
from gateway.providers.registry import ProviderRegistry
from gateway.resilience.breaker import CircuitBreaker
from gateway.settings import GatewaySettings

SCOPES = ("messages:write", "messages:read", "admin")


def get_sessionmaker(request: Request) -> async_sessionmaker[AsyncSession]:
    return request.app.state.sessionmaker


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One transaction per request, for routes that are one unit of work."""
    async with session_scope(get_sessionmaker(request)) as session:
        yield session


async def get_app_settings(request: Request) -> GatewaySettings:
    return request.app.state.settings


async def get_message_service(request: Request) -> MessageService:
    return request.app.state.message_service


async def get_registry(request: Request) -> ProviderRegistry:
    return request.app.state.registry


async def get_breaker(request: Request) -> CircuitBreaker:
    return request.app.state.breaker


auth = BearerAuth(ApiToken, get_sessionmaker)

Session = Annotated[AsyncSession, Depends(get_session)]
Settings = Annotated[GatewaySettings, Depends(get_app_settings)]
Messages = Annotated[MessageService, Depends(get_message_service)]
Registry = Annotated[ProviderRegistry, Depends(get_registry)]
Breaker = Annotated[CircuitBreaker, Depends(get_breaker)]
MessagesWriter = Annotated[Principal, Depends(auth.require("messages:write"))]
MessagesReader = Annotated[Principal, Depends(auth.require("messages:read"))]
Admin = Annotated[Principal, Depends(auth.require("admin"))]
