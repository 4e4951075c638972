"""One error base class with a status code, rendered as ``application/problem+json``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

if TYPE_CHECKING:  # the web stack is imported where it is used: workers raise these errors too
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

PROBLEM_JSON = "application/problem+json"


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str = Field("about:blank", examples=["about:blank"])
    title: str = Field(examples=["Not Found"])
    status: int = Field(examples=[404])
    detail: str | None = Field(None, examples=["letter 42 does not exist"])
    errors: list[dict[str, Any]] | None = Field(
        None, description="Field errors: loc (dotted path), msg, type."
    )


PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem, "content": {PROBLEM_JSON: {}}, "description": desc}
    for code, desc in {
        401: "Missing or invalid bearer token",
        403: "Token lacks the required scope",
        422: "Invalid request",
    }.items()
}


def problem_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    descriptions = {
        404: "Not found",
        409: "Conflict with the current state",
        413: "Request body too large",
        503: "Dependency unavailable",
    }
    out = dict(PROBLEM_RESPONSES)
    for code in codes:
        out[code] = {
            "model": Problem,
            "content": {PROBLEM_JSON: {}},
            "description": descriptions.get(code, "Error"),
        }
    return out


class AppError(Exception):
    status_code = 400
    title = "Bad Request"

    def __init__(self, detail: str, *, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors


class NotFound(AppError):
    status_code = 404
    title = "Not Found"


class Conflict(AppError):
    status_code = 409
    title = "Conflict"


class Unprocessable(AppError):
    status_code = 422
    title = "Unprocessable Content"


class Unauthorized(AppError):
    status_code = 401
    title = "Unauthorized"


class Forbidden(AppError):
    status_code = 403
    title = "Forbidden"


class PayloadTooLarge(AppError):
    status_code = 413
    title = "Content Too Large"


def problem(
    status: int, title: str, detail: str | None, errors: list[dict[str, Any]] | None = None
) -> JSONResponse:
    from fastapi.responses import JSONResponse

    body = Problem(status=status, title=title, detail=detail, errors=errors)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(
        body.model_dump(exclude_none=True),
        status_code=status,
        media_type=PROBLEM_JSON,
        headers=headers,
    )


#: SQLSTATEs of a value PostgreSQL refuses for a character in it: 22021
#: ``character_not_in_repertoire`` (U+0000 in a text parameter), 22P05
#: ``untranslatable_character`` (a ``\u0000`` escape in JSON for a jsonb column).
UNSTORABLE_TEXT_SQLSTATES = frozenset({"22021", "22P05"})


def is_unstorable_text(exc: BaseException) -> bool:
    """Whether PostgreSQL refused a character of a value (U+0000): SQLAlchemy's ``DBAPIError``
    around asyncpg's ``CharacterNotInRepertoireError`` / ``UntranslatableCharacterError``, or
    those raised by asyncpg itself. A lost connection or any other database error is not."""
    seen: BaseException | None = exc
    for _ in range(4):  # SQLAlchemy's error -> its ``orig`` (the adapter's) -> asyncpg's error
        if seen is None:
            break
        code = getattr(seen, "sqlstate", None)
        if isinstance(code, str):
            return code in UNSTORABLE_TEXT_SQLSTATES
        seen = getattr(seen, "orig", None) or seen.__cause__
    return False


def unstorable_text_problem() -> JSONResponse:
    """The 422 of a request whose value PostgreSQL refused (decision 0094): the safety net
    behind the ``string_nul`` validation of request fields (:mod:`notifier_common.text`)."""
    return problem(
        422,
        "Unprocessable Content",
        "the request holds a character the database cannot store (U+0000, NUL)",
    )


def install_error_handlers(app: FastAPI) -> None:
    import asyncpg
    from fastapi import Request
    from fastapi.exceptions import RequestValidationError
    from sqlalchemy.exc import DBAPIError
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from notifier_common.logging import get_logger

    log = get_logger("notifier_common.errors")

    async def on_app_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, AppError)
        return problem(exc.status_code, exc.title, exc.detail, exc.errors)

    async def on_validation(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = [
            {
                "loc": ".".join(str(p) for p in e["loc"]),
                "msg": e["msg"],
                "type": e["type"],
            }
            for e in exc.errors()
        ]
        return problem(422, "Unprocessable Content", "request validation failed", errors)

    async def on_http(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        return problem(exc.status_code, str(exc.detail), None)

    async def on_database_error(request: Request, exc: Exception) -> JSONResponse:
        """422 for a value PostgreSQL refused (U+0000); any other database error is raised
        again, unhandled as before (an app may install its own ``DBAPIError`` handler instead,
        which then calls :func:`is_unstorable_text` itself, as the gateway's does)."""
        if not is_unstorable_text(exc):
            raise exc
        log.warning(
            "database.unstorable_text",
            path=request.url.path,
            error=str(getattr(exc, "orig", None) or exc)[:200],
        )
        return unstorable_text_problem()

    app.add_exception_handler(AppError, on_app_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(DBAPIError, on_database_error)
    for refused in (
        asyncpg.exceptions.CharacterNotInRepertoireError,
        asyncpg.exceptions.UntranslatableCharacterError,
    ):  # raised as is where asyncpg is used directly (the events intake's driver)
        app.add_exception_handler(refused, on_database_error)
