"""``X-Request-Id``: accepted from the caller (or the proxy) or generated, set as the
logging context for the request, echoed on the response, and stored on runs the
request creates so the worker logs the same id for that run."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from quarry.core.logs import REQUEST_ID, accept_request_id

HEADER = b"x-request-id"


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = None
        for key, value in scope.get("headers", ()):
            if key == HEADER:
                given = bytes(value).decode("latin-1")
                break
        request_id = accept_request_id(given)
        encoded = request_id.encode()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", ()) if h[0] != HEADER]
                message["headers"] = [*headers, (HEADER, encoded)]
            await send(message)

        token = REQUEST_ID.set(request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            REQUEST_ID.reset(token)
