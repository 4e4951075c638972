"""Settings base shared by every service.

Each service subclasses :class:`ServiceSettings` with its own env prefix (``NOTIFIER_``,
``GATEWAY_``). Values come from the environment or a ``.env`` file.
"""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Environment = Literal["development", "test", "production"]

#: Secrets that ship in code; refused when ``env == "production"``.
DEFAULT_SECRET = "change-me-in-production"


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", validate_default=True)

    env: Environment = Field("development", description="development | test | production")
    database_url: str = Field(
        "postgresql+asyncpg://postgres@127.0.0.1:5432/notifier",
        description="SQLAlchemy URL of the PostgreSQL database (asyncpg driver).",
    )
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Redis URL.")
    log_level: str = Field("INFO", description="Log level.")
    log_json: bool | None = Field(
        None, description="JSON logs; default: on in production, pretty console otherwise."
    )
    secret_key: str = Field(
        DEFAULT_SECRET, description="Secret used to sign tokens; must be set in production."
    )
    db_pool_size: int = Field(10, ge=1, description="SQLAlchemy pool size per process.")

    def _secrets(self) -> dict[str, str]:
        """Secret fields that must not keep their shipped default in production."""
        return {"secret_key": self.secret_key}

    @model_validator(mode="after")
    def _refuse_default_secrets(self) -> Self:
        if self.env == "production":
            bad = [name for name, value in self._secrets().items() if value == DEFAULT_SECRET]
            if bad:
                raise ValueError(
                    f"refusing to start in production with default secret(s): {', '.join(bad)}"
                )
        return self

    @property
    def json_logs(self) -> bool:
        return self.log_json if self.log_json is not None else self.env == "production"
