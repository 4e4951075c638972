"""Token storage without the web stack: the table mixin, hashing and the repository.

Models (imported by workers and CLIs too) and ``token_admin`` use this module; the FastAPI side
(:class:`notifier_common.auth.BearerAuth`) builds on it. Keeping FastAPI out of here keeps it out
of the worker processes (~7 MB of RSS each).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Protocol

from sqlalchemy import ARRAY, BigInteger, DateTime, Identity, String, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

ADMIN_SCOPE = "admin"
TOKEN_PREFIX = "ntf_"


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def new_token_secret(prefix: str = TOKEN_PREFIX) -> str:
    return prefix + secrets.token_urlsafe(32)


class TokenMixin:
    #: what the service's tokens start with (``ntf_`` notifier, ``gwt_`` gateway): tells an
    #: operator, and a secret scanner, which service a token belongs to. Tokens are looked up
    #: by hash, so a token made with an earlier prefix keeps working.
    token_prefix: ClassVar[str] = TOKEN_PREFIX

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
        raw = new_token_secret(getattr(self.model, "token_prefix", TOKEN_PREFIX))
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
