"""Typed application errors with stable codes, and the one handler that renders them.

Every error response has the shape {"error": {"code": ..., "message": ..., "details": ...}}.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)


class AppError(Exception):
    status_code = 400
    code = "bad_request"

    def __init__(self, message: str, details: Any = None, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        if code is not None:
            self.code = code


class NotFound(AppError):
    status_code = 404
    code = "not_found"


class Conflict(AppError):
    status_code = 409
    code = "conflict"


class PayloadTooLarge(AppError):
    status_code = 413
    code = "payload_too_large"


class ValidationFailed(AppError):
    status_code = 422
    code = "validation_error"


class ServiceUnavailable(AppError):
    status_code = 503
    code = "service_unavailable"


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


def _validation_details(exc: RequestValidationError) -> list[dict[str, Any]]:
    details = []
    for err in exc.errors():
        # loc starts with where the value came from (body, query, path); the rest is the
        # field path as the client spelled it.
        loc = [str(part) for part in err.get("loc", ())]
        where, path = (loc[0], loc[1:]) if loc else ("body", [])
        details.append(
            {
                "field": ".".join(path) or where,
                "location": where,
                "message": err.get("msg", "invalid"),
            }
        )
    return details


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def _app_error(_: Request, exc: AppError) -> JSONResponse:
        return JSONResponse(
            error_body(exc.code, exc.message, exc.details), status_code=exc.status_code
        )

    @app.exception_handler(RequestValidationError)
    async def _request_invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = _validation_details(exc)
        summary = "; ".join(f"{d['field']}: {d['message']}" for d in details[:5])
        return JSONResponse(
            error_body("validation_error", f"Invalid request: {summary}", details),
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(
            error_body(code, str(exc.detail)), status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(DBAPIError)
    async def _database_down(_: Request, exc: DBAPIError) -> JSONResponse:
        if not exc.connection_invalidated and not isinstance(exc, OperationalError):
            log.exception("database error")
            return JSONResponse(
                error_body("internal_error", "An unexpected database error occurred."),
                status_code=500,
            )
        log.warning("database unavailable: %s", exc)
        return JSONResponse(
            error_body("database_unavailable", "The database is unavailable; try again shortly."),
            status_code=503,
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return JSONResponse(
            error_body("internal_error", "An unexpected error occurred; see the server log."),
            status_code=500,
        )
