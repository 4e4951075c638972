"""Gateway fixtures: settings with a counting test provider, the app, a client, tokens."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from gateway.app import create_app
from gateway.settings import GatewaySettings

from tests.gateway.fakes import CountingProvider

COUNTING = "tests.gateway.fakes:CountingProvider"

SettingsFactory = Callable[..., GatewaySettings]
GatewayToken = Callable[..., Awaitable[dict[str, str]]]


@pytest.fixture
def make_settings(database_url: str, redis_url: str) -> SettingsFactory:
    def make(**overrides: Any) -> GatewaySettings:
        values: dict[str, Any] = {
            "env": "test",
            "database_url": database_url,
            "redis_url": redis_url,
            "providers": {"log": {"kind": "log"}, "counting": {"kind": COUNTING}},
            "default_provider": "counting",
            "inflight_wait_seconds": 2.0,
            "inflight_poll_seconds": 0.02,
            "db_pool_size": 5,
        }
        values.update(overrides)
        return GatewaySettings(_env_file=None, **values)  # type: ignore[call-arg]

    return make


def log_gateway_settings(database_url: str, redis_url: str, **overrides: Any) -> GatewaySettings:
    """A real gateway on the test database whose only provider is ``log`` (the default), for
    tests outside tests/gateway that need the gateway itself: seed tokens, end to end."""
    values: dict[str, Any] = {
        "env": "test",
        "database_url": database_url,
        "redis_url": redis_url,
        "providers": {"log": {"kind": "log"}},
        "default_provider": "log",
    }
    values.update(overrides)
    return GatewaySettings(_env_file=None, **values)  # type: ignore[call-arg]


@asynccontextmanager
async def running(settings: GatewaySettings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


def client_for(application: FastAPI) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=application)
    return httpx.AsyncClient(transport=transport, base_url="http://gateway.test")


@pytest.fixture
def gateway_settings(
    make_settings: SettingsFactory, request: pytest.FixtureRequest
) -> GatewaySettings:
    """Parametrize indirectly with a dict: ``delay``/``outcome`` go to the counting provider,
    the other keys are settings overrides."""
    overrides = dict(getattr(request, "param", {}))
    counting = {k: overrides.pop(k) for k in ("delay", "outcome") if k in overrides}
    counting_conf = {"kind": COUNTING, **counting, **overrides.pop("counting", {})}
    return make_settings(providers={"log": {"kind": "log"}, "counting": counting_conf}, **overrides)


@pytest.fixture
async def app(gateway_settings: GatewaySettings) -> AsyncIterator[FastAPI]:
    async with running(gateway_settings) as application:
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(app) as c:
        yield c


@pytest.fixture
def counting(app: FastAPI) -> CountingProvider:
    provider = app.state.registry.get("counting").provider
    assert isinstance(provider, CountingProvider)
    return provider


@pytest.fixture
def gateway_token(database_url: str) -> GatewayToken:
    """``await gateway_token("messages:write")`` -> Authorization headers."""
    from gateway.tokens import create_token

    async def make(*scopes: str, name: str = "test") -> dict[str, str]:
        raw = await create_token(database_url, name=name, scopes=scopes)
        return {"Authorization": f"Bearer {raw}"}

    return make


@pytest.fixture
async def writer(gateway_token: GatewayToken) -> dict[str, str]:
    return await gateway_token("messages:write", "messages:read", name="notifier")


@pytest.fixture
async def admin(gateway_token: GatewayToken) -> dict[str, str]:
    return await gateway_token("admin", name="ops-alice")


def email(address: str = "alice@example.com", **extra: Any) -> dict[str, Any]:
    """A valid message body."""
    body: dict[str, Any] = {
        "channel": "email",
        "to": [{"address": address}],
        "subject": "Hello",
        "text": "Hi there",
    }
    body.update(extra)
    return body
