"""Every error leaves as JSON with a stable code; internal details never leak."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from quarry.core.errors import QuarryError

log = logging.getLogger(__name__)


async def _quarry_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, QuarryError)
    if exc.status_code >= 500:
        log.error("%s: %s", exc.code, exc.message)
    return JSONResponse(exc.to_json(), status_code=exc.status_code)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = [
        {"parameter": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()
    ]
    return JSONResponse(
        {"error": "bad_request", "message": "invalid request parameters", "details": problems},
        status_code=400,
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(QuarryError, _quarry_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
