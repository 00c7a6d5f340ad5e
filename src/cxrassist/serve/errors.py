"""How the service answers problems: one JSON shape, ``{"error": code, "detail": one line}``, never a traceback.

Bad inputs get a 4xx naming the problem (the foundation's ``InputError`` message for unreadable images); a 500 is
only ever a bug, and even then it says nothing about the request's content.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from cxrassist.errors import (
    CxrError,
    DecompressionBombError,
    FileTooLargeError,
    InputError,
)

log = logging.getLogger(__name__)


class ApiError(Exception):
    """Raised by route code to answer ``status`` with ``{"error": code, "detail": detail}``."""

    def __init__(self, status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = headers


class UploadTooLarge(Exception):
    """The request body passed the configured upload limit while it was being read."""

    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self.limit = limit


def error_json(status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)


def too_large_detail(limit: int) -> str:
    return f"upload larger than the limit of {limit / 1024 / 1024:.1f} MB"


def input_error_status(exc: InputError) -> int:
    """413 for inputs refused for their size, 422 for every other unreadable image."""
    return 413 if isinstance(exc, (FileTooLargeError, DecompressionBombError)) else 422


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
}


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that give every error the same JSON shape."""

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_json(exc.status, exc.code, exc.detail, exc.headers)

    @app.exception_handler(UploadTooLarge)
    async def _too_large(_: Request, exc: UploadTooLarge) -> JSONResponse:
        return error_json(413, "too_large", too_large_detail(exc.limit))

    @app.exception_handler(InputError)
    async def _input_error(_: Request, exc: InputError) -> JSONResponse:
        return error_json(input_error_status(exc), type(exc).__name__, str(exc))

    @app.exception_handler(CxrError)
    async def _cxr_error(_: Request, exc: CxrError) -> JSONResponse:
        log.error("request failed: %s", type(exc).__name__)
        return error_json(503, type(exc).__name__, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if errors:
            first = errors[0]
            where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body",))
            detail = f"{where}: {first.get('msg', 'invalid value')}" if where else str(first.get("msg"))
        else:
            detail = "invalid request"
        return error_json(422, "invalid_request", detail)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
        detail = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        return error_json(exc.status_code, code, detail, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _bug(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error while answering a request")
        return error_json(500, "internal_error", f"internal error ({type(exc).__name__}); see the server log")
