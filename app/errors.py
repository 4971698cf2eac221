"""Typed application errors with stable codes, and the one handler that renders them.

Every error response has the shape {"error": {"code": ..., "message": ..., "details": ...}}.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.exc import DBAPIError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.storage.base import StorageUnavailable

log = logging.getLogger(__name__)


class AppError(Exception):
    status_code = 400
    code = "bad_request"
    # Response headers the error needs (WWW-Authenticate on a 401, say).
    headers: dict[str, str] | None = None

    def __init__(
        self,
        message: str,
        details: Any = None,
        *,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        if code is not None:
            self.code = code
        if headers is not None:
            self.headers = headers


class Unauthorized(AppError):
    """No credential, or one that is unknown or revoked. Answered with `WWW-Authenticate`."""

    status_code = 401
    code = "unauthorized"
    headers = {"WWW-Authenticate": "Bearer"}


class Forbidden(AppError):
    status_code = 403
    code = "forbidden"


class NotFound(AppError):
    status_code = 404
    code = "not_found"


class Conflict(AppError):
    status_code = 409
    code = "conflict"


class PayloadTooLarge(AppError):
    status_code = 413
    code = "payload_too_large"


class TooManyRequests(AppError):
    """429; the instance's headers carry Retry-After."""

    status_code = 429
    code = "too_many_requests"


class ValidationFailed(AppError):
    status_code = 422
    code = "validation_error"


class ServiceUnavailable(AppError):
    status_code = 503
    code = "service_unavailable"


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


class ErrorInfo(BaseModel):
    code: str = Field(description="Stable machine-readable code.", examples=["not_found"])
    message: str = Field(description="What went wrong and what to do, for people.")
    details: Any = Field(
        None,
        description="Structured context (the field, row, limit, ...); for validation_error a "
        "list of {field, location, message}; null when there is none.",
    )


class ErrorResponse(BaseModel):
    """The one shape of every error response."""

    error: ErrorInfo


ERROR_SCHEMA = "ErrorResponse"
_ERROR_REF = f"#/components/schemas/{ERROR_SCHEMA}"
_VALIDATION_REF = "#/components/schemas/HTTPValidationError"


def install_openapi_errors(app: FastAPI) -> None:
    """Document the error shape in the app's OpenAPI: every 4xx/5xx response without a body
    schema gets ErrorResponse, and FastAPI's default 422 body (HTTPValidationError, which this
    app never sends: see `_request_invalid`) is replaced by it."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        fresh = app.openapi_schema is None
        schema = build()
        if fresh:
            _document_errors(schema)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _document_errors(schema: dict[str, Any]) -> None:
    error_content = {"application/json": {"schema": {"$ref": _ERROR_REF}}}
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            for status, response in operation.get("responses", {}).items():
                if status[:1] not in {"4", "5"}:
                    continue
                content = response.get("content", {}).get("application/json", {})
                if not content or content.get("schema", {}).get("$ref") == _VALIDATION_REF:
                    response["content"] = dict(error_content)
    schemas = schema.setdefault("components", {}).setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    definitions = ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(definitions.pop("$defs", {}))
    schemas[ERROR_SCHEMA] = definitions


def _line_and_column(document: Any, position: int) -> tuple[int, int]:
    """1-based line and column of character `position` in a JSON document (text or bytes)."""
    text = document.decode("utf-8", "replace") if isinstance(document, bytes) else str(document)
    before = text[:position]
    return before.count("\n") + 1, position - (before.rfind("\n") + 1) + 1


def _not_json_detail(err: dict[str, Any], document: Any) -> dict[str, Any]:
    """FastAPI reports a body that is not JSON as field "<character offset>": say where."""
    position = err["loc"][-1] if isinstance(err["loc"][-1], int) else 0
    line, column = _line_and_column(document, position)
    reason = (err.get("ctx") or {}).get("error") or "JSON decode error"
    return {
        "field": "body",
        "location": "body",
        "message": f"the body is not valid JSON: {reason} at line {line}, column {column}",
        "line": line,
        "column": column,
    }


def _validation_details(exc: RequestValidationError, content_type: str) -> list[dict[str, Any]]:
    details = []
    for err in exc.errors():
        # loc starts with where the value came from (body, query, path); the rest is the
        # field path as the client spelled it.
        loc = [str(part) for part in err.get("loc", ())]
        where, path = (loc[0], loc[1:]) if loc else ("body", [])
        if err.get("type") == "json_invalid":
            details.append(_not_json_detail(err, exc.body))
            continue
        message = err.get("msg", "invalid")
        if where == "body" and not path and "json" not in content_type:
            # The body was not read as JSON at all: the header is what is missing.
            message = (
                "send the body as JSON with the header `Content-Type: application/json` "
                f"(got {content_type or 'no Content-Type'})"
            )
        details.append({"field": ".".join(path) or where, "location": where, "message": message})
    return details


def app_error_response(exc: AppError) -> JSONResponse:
    return JSONResponse(
        error_body(exc.code, exc.message, exc.details),
        status_code=exc.status_code,
        headers=exc.headers,
    )


def database_error_response(exc: DBAPIError) -> JSONResponse:
    """503 database_unavailable (with Retry-After) when the database cannot be reached, 500
    for any other database error."""
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


def storage_error_response(exc: StorageUnavailable) -> JSONResponse:
    """503 storage_unavailable (with Retry-After): the object store cannot be used. The
    message names the store (never credentials); the log has the cause."""
    log.warning("object store unavailable: %s", exc)
    return JSONResponse(
        error_body(
            "storage_unavailable",
            f"The object store is unavailable; try again shortly. ({exc})",
        ),
        status_code=503,
        headers={"Retry-After": "10"},
    )


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StorageUnavailable)
    async def _storage_down(_: Request, exc: StorageUnavailable) -> JSONResponse:
        return storage_error_response(exc)

    @app.exception_handler(AppError)
    async def _app_error(_: Request, exc: AppError) -> JSONResponse:
        return app_error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _request_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        details = _validation_details(exc, content_type)
        summary = "; ".join(f"{d['field']}: {d['message']}" for d in details[:5])
        return JSONResponse(
            error_body("validation_error", f"Invalid request: {summary}", details),
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:
            # FastAPI's only 400: a body it cannot decode (bytes that are not UTF-8 JSON, a
            # broken form). Answered like any other invalid body: 422 validation_error.
            detail = {"field": "body", "location": "body", "message": str(exc.detail)}
            return JSONResponse(
                error_body("validation_error", f"Invalid request: body: {exc.detail}", [detail]),
                status_code=422,
            )
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(
            error_body(code, str(exc.detail)), status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(DBAPIError)
    async def _database_down(_: Request, exc: DBAPIError) -> JSONResponse:
        return database_error_response(exc)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return JSONResponse(
            error_body("internal_error", "An unexpected error occurred; see the server log."),
            status_code=500,
        )
