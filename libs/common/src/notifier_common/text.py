"""Request strings PostgreSQL can store: U+0000 (NUL) is refused at validation (decision 0094).

PostgreSQL's ``text`` and ``jsonb`` cannot hold U+0000; a value with one that reaches a query
fails there (SQLSTATE 22021 or 22P05). Request bodies (:class:`NoNulModel`) and query
parameters (``Annotated[str | None, Query(...), NoNul]``) refuse it, so the caller gets a 422
naming the field, with the error type and message of ``POST /v1/events`` (``string_nul``). The
safety net for values this misses is in :mod:`notifier_common.errors`.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import AfterValidator, BaseModel, field_validator
from pydantic_core import PydanticCustomError

NUL_ERROR_TYPE = "string_nul"
NUL_MESSAGE = "U+0000 (NUL) is not allowed in strings"

T = TypeVar("T")


def has_nul(value: object) -> bool:
    """Whether ``value`` is, or holds (list items, dict keys and values, nested), a string with
    U+0000."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(has_nul(k) or has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(has_nul(v) for v in value)
    return False


def refuse_nul(value: T) -> T:
    """``value`` unchanged, or a ``string_nul`` validation error when :func:`has_nul`."""
    if has_nul(value):
        raise PydanticCustomError(NUL_ERROR_TYPE, NUL_MESSAGE)
    return value


#: Validator metadata for parameters: ``Annotated[str | None, Query(max_length=100), NoNul]``.
#: Put it after the ``Query``/``Field``: constraints that follow a validator can no longer be
#: checked by the string schema itself (pydantic then words them "at most N items").
NoNul = AfterValidator(refuse_nul)


class NoNulModel(BaseModel):
    """Base of request bodies: no field (strings, and strings inside lists and dicts) may hold
    U+0000. Checked after each field's own validation, so its loc names the field."""

    @field_validator("*", mode="after")
    @classmethod
    def _refuse_nul(cls, value: Any) -> Any:
        return refuse_nul(value)
