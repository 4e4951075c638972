"""The gateway FastAPI application."""

from __future__ import annotations

import asyncio
import ctypes
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import asyncpg
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from notifier_common.collector import collector_tuned, set_mmap_threshold
from notifier_common.db import create_engine, create_sessionmaker
from notifier_common.docs import install_docs
from notifier_common.errors import (
    install_error_handlers,
    is_unstorable_text,
    problem,
    unstorable_text_problem,
)
from notifier_common.logging import configure_logging, get_logger
from notifier_common.ops import (
    Check,
    install_metrics_middleware,
    ops_router,
    postgres_check,
    redis_check,
)
from redis.asyncio import Redis
from sqlalchemy.exc import DBAPIError
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.integrations.endpoints import router as providers_router
from gateway.messages.dispatch import Dispatcher
from gateway.messages.endpoints import InProgress
from gateway.messages.endpoints import router as messages_router
from gateway.messages.service import MessageService
from gateway.providers.registry import ProviderRegistry
from gateway.resilience.breaker import CircuitBreaker
from gateway.resilience.ratelimit import RateLimiter
from gateway.settings import GatewaySettings, get_settings
from gateway.suppressions.endpoints import router as suppressions_router
from gateway.webhooks.endpoints import router as webhooks_router

log = get_logger("gateway.app")

DESCRIPTION = """
The one place that talks to delivery providers (SMTP, ESP, newsletter, CRM, signed webhooks,
and a `log` provider). Every message carries an idempotency key: it reaches its provider once,
whatever retries happen upstream. Provider failures are classified (`transient_error`: retry
later with the same key; `permanent_error`: never retry). Provider webhooks turn bounces,
complaints and unsubscribes into suppressions.

Authenticate with `Authorization: Bearer <token>`; create tokens with
`gateway token create --name NAME --scope SCOPE` (scopes: `messages:write`, `messages:read`,
`admin`). Errors are `application/problem+json`. See docs/gateway-api.md.
"""


def _malloc_trim() -> Callable[[], object] | None:
    """glibc's ``malloc_trim(0)``: hands the free pages of the C heap back to the OS (None
    where the C library has no such function)."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    return lambda: trim(0)


class BatchGate:
    """At most ``limit`` ``POST /v1/messages:batch`` requests are read and handled at once.

    Waiting requests are not read (uvicorn stops reading a socket once 64 KiB are buffered), so
    the memory of batches in flight is bounded by the limit, not by how many the callers send
    at once; a process is CPU- or provider-bound well before the limit (decision 0051).

    When the last batch in flight (or waiting) is done, ``release_memory`` runs (glibc's
    ``malloc_trim``): the C heap keeps a batch's freed buffers otherwise, and the process
    would stay ~15-30 MB above its idle size after every drain (decision 0054). Not between
    batches: the next batch would fault the same pages in again."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        limit: int,
        release_memory: Callable[[], object] | None = _malloc_trim(),
    ) -> None:
        self.app = app
        self._slots = asyncio.Semaphore(limit)
        self._busy = 0  # batches handled or waiting for a slot
        self._release_memory = release_memory

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"].endswith("/messages:batch")
        ):
            await self.app(scope, receive, send)
            return
        self._busy += 1
        try:
            async with self._slots:
                await self.app(scope, receive, send)
        finally:
            self._busy -= 1
            if not self._busy and self._release_memory is not None:
                self._release_memory()


def _checks(request: Request) -> dict[str, Check]:
    return {
        "postgres": postgres_check(request.app.state.engine),
        "redis": redis_check(request.app.state.redis),
    }


def _install_gateway_error_handlers(app: FastAPI) -> None:
    async def on_in_progress(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, InProgress)
        response = problem(exc.status_code, exc.title, exc.detail)
        response.headers["Retry-After"] = str(max(1, round(exc.retry_after)))
        return response

    async def on_database_error(request: Request, exc: Exception) -> JSONResponse:
        if is_unstorable_text(exc):  # the database is up: it refused a value (decision 0094)
            log.warning("gateway.unstorable_text", path=request.url.path)
            return unstorable_text_problem()
        log.error("gateway.database_error", error=type(exc).__name__)
        return problem(
            503,
            "Service Unavailable",
            "a dependency (database) is unavailable; nothing was sent, retry later",
        )

    app.add_exception_handler(InProgress, on_in_progress)
    app.add_exception_handler(DBAPIError, on_database_error)
    # raised as they are by the statements run on asyncpg's connection (decision 0107)
    app.add_exception_handler(asyncpg.PostgresError, on_database_error)
    app.add_exception_handler(asyncpg.InterfaceError, on_database_error)
    app.add_exception_handler(OSError, on_database_error)


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(level=settings.log_level, json=settings.json_logs)
        if settings.malloc_mmap_threshold:
            set_mmap_threshold(settings.malloc_mmap_threshold)  # decision 0084
        app.state.settings = settings
        app.state.engine = create_engine(
            settings.database_url, pool_size=settings.db_pool_size, app_name="gateway"
        )
        app.state.sessionmaker = create_sessionmaker(app.state.engine)
        app.state.redis = Redis.from_url(settings.redis_url)
        registry = ProviderRegistry.from_settings(settings)
        app.state.registry = registry
        app.state.breaker = CircuitBreaker(app.state.redis, prefix=settings.redis_prefix)
        app.state.limiter = RateLimiter(app.state.redis, prefix=settings.redis_prefix)
        app.state.message_service = MessageService(
            sessionmaker=app.state.sessionmaker,
            dispatcher=Dispatcher(
                registry=registry,
                limiter=app.state.limiter,
                breaker=app.state.breaker,
                settings=settings,
            ),
            settings=settings,
        )
        try:
            await registry.start()  # stops what it started if one provider fails
            try:
                with collector_tuned():  # decisions 0057, 0061
                    yield
            finally:
                await registry.aclose()
        finally:
            await app.state.redis.aclose()
            await app.state.engine.dispose()

    app = FastAPI(
        title="notifier gateway",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served by install_docs, without a CDN (decision 0100)
        redoc_url=None,  # a second UI from a CDN: /docs is the one (decision 0100)
    )
    install_docs(app)
    install_error_handlers(app)
    _install_gateway_error_handlers(app)
    install_metrics_middleware(app, "gateway")
    app.add_middleware(BatchGate, limit=settings.max_concurrent_batches)
    app.include_router(ops_router(_checks))
    app.include_router(messages_router)
    app.include_router(providers_router)
    app.include_router(webhooks_router)
    app.include_router(suppressions_router)
    return app
