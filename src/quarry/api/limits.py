"""Request limits: what one HTTP request may make the server read, on every route.

Refused with 413 and the limit named (``{"error": "payload_too_large", "limit":
"request_max_body_bytes", "max": 1048576, ...}``), before the route runs:

* a body over its cap: a declared ``Content-Length`` is refused before one byte of
  the body is read; a streamed (chunked) body is counted as it arrives and refused
  the moment it passes the cap. The cap is ``request_max_body_bytes``, except for a
  file write, whose cap follows the file API's own (``dataset_file_max_bytes`` as
  base64 in JSON: :func:`file_write_body_bytes`, which the route uses too);
* a query string over ``request_max_query_bytes`` (app control values travel there);
* a run request (``POST .../runs``, ``.../draft-runs``) with more than
  ``run_max_variables`` variables, or one whose JSON value is over
  ``run_variable_max_bytes`` — a run's variables are stored with it and served to
  everyone who views the run.

Pure ASGI (no request object, no buffering except a run request's capped body).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from quarry.core.settings import Settings

_FILE_WRITE = re.compile(r"^/api/v1/workspaces/[^/]+/files/.+")
_RUN_CREATE = re.compile(r"^/api/v1/workspaces/[^/]+/(?:runs|draft-runs)/?$")


def file_write_body_bytes(dataset_bytes: int) -> int:
    """The body cap of a file write: the largest file, base64 in JSON, plus room for
    the other fields."""
    return dataset_bytes * 4 // 3 + 65536


@dataclass(frozen=True)
class RequestLimits:
    body_bytes: int
    file_write_bytes: int
    query_bytes: int
    run_variables: int
    run_variable_bytes: int

    @classmethod
    def from_settings(cls, settings: Settings) -> RequestLimits:
        return cls(
            body_bytes=settings.request_max_body_bytes,
            file_write_bytes=file_write_body_bytes(settings.dataset_file_max_bytes),
            query_bytes=settings.request_max_query_bytes,
            run_variables=settings.run_max_variables,
            run_variable_bytes=settings.run_variable_max_bytes,
        )


class _TooLarge(Exception):
    def __init__(self, setting: str, limit: int, message: str) -> None:
        super().__init__(message)
        self.setting = setting
        self.limit = limit
        self.message = message


class RequestLimitsMiddleware:
    def __init__(self, app: ASGIApp, limits: RequestLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            self._check_head(scope)
        except _TooLarge as refused:
            await _refuse(send, refused)
            return
        path, method = scope.get("path", ""), scope.get("method", "GET")
        if method == "PUT" and _FILE_WRITE.match(path):
            cap, setting = self.limits.file_write_bytes, "dataset_file_max_bytes"
        else:
            cap, setting = self.limits.body_bytes, "request_max_body_bytes"
        declared, chunked = _framing(scope)
        if declared is not None and declared > cap:
            await _refuse(send, _body_too_large(setting, cap))
            return
        if method == "POST" and _RUN_CREATE.match(path):
            await self._run_request(scope, receive, send, cap, setting)
        elif chunked:
            await self._counted(scope, receive, send, cap, setting)
        else:  # no body, or a declared length the server holds the client to
            await self.app(scope, receive, send)

    def _check_head(self, scope: Scope) -> None:
        query = scope.get("query_string", b"")
        if len(query) > self.limits.query_bytes:
            limit = self.limits.query_bytes
            raise _TooLarge(
                "request_max_query_bytes",
                limit,
                f"query string of {len(query)} bytes is over {limit} bytes "
                "(limit request_max_query_bytes)",
            )

    async def _counted(
        self, scope: Scope, receive: Receive, send: Send, cap: int, setting: str
    ) -> None:
        """Run the route with a receive that refuses the body once it passes ``cap``;
        whatever the route then sends is dropped, and the 413 goes out instead."""
        seen = 0
        refused: _TooLarge | None = None
        started = False

        async def counting_receive() -> Message:
            nonlocal seen, refused
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > cap:
                    refused = _body_too_large(setting, cap)
                    raise refused
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused is not None:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except _TooLarge:
            pass
        except Exception:
            if refused is None:
                raise
        if refused is not None and not started:
            await _refuse(send, refused)

    async def _run_request(
        self, scope: Scope, receive: Receive, send: Send, cap: int, setting: str
    ) -> None:
        """Read the (capped) body, check its variables, and hand it on unchanged."""
        chunks: list[bytes] = []
        seen = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > cap:
                await _refuse(send, _body_too_large(setting, cap))
                return
            chunks.append(chunk)
            more = bool(message.get("more_body", False))
        body = b"".join(chunks)
        try:
            self._check_variables(body)
        except _TooLarge as refused:
            await _refuse(send, refused)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _check_variables(self, body: bytes) -> None:
        try:
            data = json.loads(body)
        except ValueError:
            return  # not JSON: the route says so
        variables = data.get("variables") if isinstance(data, dict) else None
        if not isinstance(variables, dict):
            return
        limits = self.limits
        if len(variables) > limits.run_variables:
            raise _TooLarge(
                "run_max_variables",
                limits.run_variables,
                f"{len(variables)} run variables is over {limits.run_variables} "
                "(limit run_max_variables)",
            )
        for name, value in variables.items():
            size = len(json.dumps(value, separators=(",", ":")))
            if size > limits.run_variable_bytes:
                raise _TooLarge(
                    "run_variable_max_bytes",
                    limits.run_variable_bytes,
                    f"run variable {str(name)[:100]!r} is {size} bytes of JSON, over "
                    f"{limits.run_variable_bytes} (limit run_variable_max_bytes)",
                )


def _framing(scope: Scope) -> tuple[int | None, bool]:
    """The declared ``Content-Length`` (if any) and whether the body is chunked."""
    length: int | None = None
    chunked = False
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            length = int(value) if value.isdigit() else None
        elif name == b"transfer-encoding":
            chunked = True
    return length, chunked


def _body_too_large(setting: str, cap: int) -> _TooLarge:
    return _TooLarge(setting, cap, f"request body over {cap} bytes (limit {setting})")


async def _refuse(send: Send, refused: _TooLarge) -> None:
    body = json.dumps(
        {
            "error": "payload_too_large",
            "message": refused.message,
            "limit": refused.setting,
            "max": refused.limit,
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
