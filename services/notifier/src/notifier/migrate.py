"""Run alembic programmatically (``notifier migrate``, tests, ``make run``)."""

from __future__ import annotations

import os
from pathlib import Path

from alembic import command
from alembic.config import Config


def find_alembic_ini() -> Path:
    candidates = []
    if env := os.environ.get("NOTIFIER_ALEMBIC_INI"):
        candidates.append(Path(env))
    candidates += [p / "alembic.ini" for p in (Path.cwd(), *Path.cwd().parents)]
    candidates += [p / "alembic.ini" for p in Path(__file__).resolve().parents]
    for path in candidates:
        if path.is_file() and (path.parent / "migrations" / "env.py").is_file():
            return path
    raise FileNotFoundError("alembic.ini with migrations/ not found; set NOTIFIER_ALEMBIC_INI")


def alembic_config(database_url: str) -> Config:
    cfg = Config(str(find_alembic_ini()))
    cfg.attributes["database_url"] = database_url
    return cfg


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(database_url), revision)


def check(database_url: str) -> None:
    command.check(alembic_config(database_url))
