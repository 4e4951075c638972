"""ORM models of the ``gateway`` schema. Import every model module here (alembic reads it)."""

from gateway.models.base import Base
from gateway.models.token import ApiToken

__all__ = ["ApiToken", "Base"]
