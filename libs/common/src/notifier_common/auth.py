"""Scoped bearer tokens, stored hashed (SHA-256 of a 256-bit random secret).

Each service declares its own table with :class:`TokenMixin`; :class:`BearerAuth` turns a table
into FastAPI dependencies (401 without a valid token, 403 without the scope). The ``admin`` scope
grants every scope. Lookups are cached per process for ``cache_ttl`` seconds, so a revoked token
stops working within that time (documented in the README).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from notifier_common.errors import Forbidden, Unauthorized
from notifier_common.tokens import (  # re-exported: the public names of this module before
    ADMIN_SCOPE,
    TOKEN_PREFIX,
    Principal,
    TokenMixin,
    TokenModel,
    TokenRepository,
    hash_token,
    new_token_secret,
)

__all__ = [
    "ADMIN_SCOPE",
    "TOKEN_PREFIX",
    "BearerAuth",
    "Principal",
    "TokenMixin",
    "TokenModel",
    "TokenRepository",
    "hash_token",
    "new_token_secret",
]

_bearer = HTTPBearer(
    auto_error=False, description="Scoped API token (`ntf_...` notifier, `gwt_...` gateway)."
)


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
