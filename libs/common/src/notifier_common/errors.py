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


def install_error_handlers(app: FastAPI) -> None:
    from fastapi import Request
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException as StarletteHTTPException

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

    app.add_exception_handler(AppError, on_app_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
