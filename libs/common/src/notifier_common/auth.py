"""Scoped bearer tokens, stored hashed (SHA-256 of a 256-bit random secret).

Each service declares its own table with :class:`TokenMixin`; :class:`BearerAuth` turns a table
into FastAPI dependencies (401 without a valid token, 403 without the scope). The ``admin`` scope
grants every scope. Lookups are cached per process for ``cache_ttl`` seconds, so a revoked token
stops working within that time (documented in the README).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import ARRAY, BigInteger, DateTime, Identity, String, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from notifier_common.errors import Forbidden, Unauthorized

ADMIN_SCOPE = "admin"
TOKEN_PREFIX = "ntf_"


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def new_token_secret() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


class TokenMixin:
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list[str]] = mapped_column(ARRAY(String(50)))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)


class TokenModel(Protocol):
    id: Any
    name: Any
    token_hash: Any
    scopes: Any
    revoked_at: Any

    def __init__(self, **kwargs: Any) -> None: ...


@dataclass(frozen=True, slots=True)
class Principal:
    token_id: int
    name: str
    scopes: frozenset[str]

    def allows(self, scope: str) -> bool:
        return ADMIN_SCOPE in self.scopes or scope in self.scopes


class TokenRepository:
    def __init__(self, model: type[TokenModel]) -> None:
        self.model = model

    async def create(
        self, session: AsyncSession, *, name: str, scopes: Sequence[str]
    ) -> tuple[Any, str]:
        raw = new_token_secret()
        row = self.model(name=name, token_hash=hash_token(raw), scopes=sorted(set(scopes)))
        session.add(row)
        await session.flush()
        return row, raw

    async def find_active(self, session: AsyncSession, raw: str) -> Any | None:
        m: Any = self.model
        stmt = select(m).where(m.token_hash == hash_token(raw), m.revoked_at.is_(None))
        return (await session.execute(stmt)).scalar_one_or_none()

    async def revoke(self, session: AsyncSession, token_id: int) -> bool:
        m: Any = self.model
        stmt = (
            update(m)
            .where(m.id == token_id, m.revoked_at.is_(None))
            .values(revoked_at=datetime.now(UTC))
        )
        result: Any = await session.execute(stmt)
        return bool(result.rowcount)

    async def list(self, session: AsyncSession) -> list[Any]:
        m: Any = self.model
        return list((await session.execute(select(m).order_by(m.id))).scalars())


_bearer = HTTPBearer(auto_error=False, description="Scoped API token (`ntf_...`).")


class BearerAuth:
    def __init__(
        self,
        model: type[TokenModel],
        sessionmaker: Callable[[Request], async_sessionmaker[AsyncSession]],
        *,
        cache_ttl: float = 30.0,
    ) -> None:
        self.repository = TokenRepository(model)
        self._sessionmaker = sessionmaker
        self._cache: dict[str, tuple[float, Principal | None]] = {}
        self.cache_ttl = cache_ttl

    async def authenticate(self, request: Request, raw: str) -> Principal | None:
        now = time.monotonic()
        cached = self._cache.get(raw)
        if cached and cached[0] > now:
            return cached[1]
        async with self._sessionmaker(request)() as session:
            row = await self.repository.find_active(session, raw)
        principal = (
            Principal(token_id=row.id, name=row.name, scopes=frozenset(row.scopes)) if row else None
        )
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[raw] = (now + self.cache_ttl, principal)
        return principal

    def require(self, scope: str) -> Callable[..., Awaitable[Principal]]:
        async def dependency(
            request: Request,
            credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),
        ) -> Principal:
            if credentials is None:
                raise Unauthorized("missing bearer token")
            principal = await self.authenticate(request, credentials.credentials)
            if principal is None:
                raise Unauthorized("invalid or revoked token")
            if not principal.allows(scope):
                raise Forbidden(f"token {principal.name!r} lacks scope {scope!r}")
            request.state.principal = principal
            return principal

        dependency.__name__ = f"require_{scope.replace(':', '_')}"
        return dependency
