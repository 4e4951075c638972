"""The notifier-api FastAPI application."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from arq.connections import RedisSettings, create_pool
from fastapi import FastAPI, Request
from notifier_common.db import create_engine, create_sessionmaker
from notifier_common.docs import install_docs
from notifier_common.errors import install_error_handlers
from notifier_common.logging import configure_logging
from notifier_common.ops import (
    Check,
    install_metrics_middleware,
    ops_router,
    postgres_check,
    redis_check,
)

from notifier.config.endpoints import router as config_router
from notifier.events.endpoints import router as events_router
from notifier.operator.endpoints import router as operator_router
from notifier.operator.endpoints import tools as operator_tools_router
from notifier.settings import NotifierSettings, get_settings
from notifier.suppressions.endpoints import operator_router as suppressions_router
from notifier.suppressions.endpoints import router as unsubscribe_router
from notifier.worker import start_clients

DESCRIPTION = """
Event-driven letters: producers publish typed events; the notifier decides which letters they
trigger, schedules or sends them through the delivery gateway, and cancels pending ones when the
reason goes away.

Authenticate with `Authorization: Bearer <token>`; create tokens with
`notifier token create --name NAME --scope SCOPE`. Errors are `application/problem+json`.
"""


def _checks(request: Request) -> dict[str, Check]:
    return {
        "postgres": postgres_check(request.app.state.engine),
        "redis": redis_check(request.app.state.redis),
    }


def create_app(settings: NotifierSettings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(level=settings.log_level, json=settings.json_logs)
        app.state.settings = settings
        app.state.engine = create_engine(
            settings.database_url, pool_size=settings.db_pool_size, app_name="notifier-api"
        )
        app.state.sessionmaker = create_sessionmaker(app.state.engine)
        app.state.redis = await create_pool(
            RedisSettings.from_dsn(settings.redis_url), default_queue_name=settings.queue_name
        )
        app.state.clients = {}  # shared httpx clients, gateway and enrichment (operator API)
        start_clients(app.state.clients, settings)
        try:
            yield
        finally:
            for name in ("gateway_http", "upstream_http"):
                await app.state.clients[name].aclose()
            await app.state.redis.aclose()
            await app.state.engine.dispose()

    app = FastAPI(
        title="notifier",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served by install_docs, without a CDN (decision 0100)
        redoc_url=None,  # a second UI from a CDN: /docs is the one (decision 0100)
    )
    install_docs(app)
    install_error_handlers(app)
    install_metrics_middleware(app, "notifier-api")
    app.include_router(ops_router(_checks))
    app.include_router(events_router)
    app.include_router(operator_router)
    app.include_router(operator_tools_router)
    app.include_router(config_router)
    app.include_router(suppressions_router)
    app.include_router(unsubscribe_router)
    return app
