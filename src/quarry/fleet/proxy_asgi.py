"""The ASGI side of the IDE proxy: the client's body as a stream, and error answers.

Apart from ``quarry.fleet.proxy`` (the request flow and its failure policy) so that
module stays about forwarding; these pieces only speak ASGI to the client.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

from starlette.types import Receive, Scope, Send

from quarry.fleet.proxy_headers import request_id_of


class ClientGone(Exception):
    """The client disconnected while we were reading its request body."""


class UpstreamBroke(Exception):
    """The upstream failed mid-response; raised so the server aborts the connection."""


class RequestBody:
    """The client's request body as an async byte stream, read only when the
    upstream connection wants it; ``started`` tells whether a retry is still safe."""

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self.started = False
        self.done = False
        self.disconnected = False

    async def stream(self) -> AsyncIterator[bytes]:
        while not self.done:
            self.started = True
            message = await self._receive()
            if message["type"] == "http.disconnect":
                self.disconnected = True
                self.done = True
                raise ClientGone
            self.done = not message.get("more_body", False)
            chunk = message.get("body", b"")
            if chunk:
                yield chunk


async def wait_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


@dataclass(frozen=True)
class Failure:
    """An answer the proxy gives itself, as JSON: ``{"error": code, "message": ...}``."""

    status: int
    code: str
    message: str
    retry_after: int | None


async def send_failure(send: Send, failure: Failure, request_id: str) -> None:
    payload = json.dumps(
        {"error": failure.code, "message": failure.message}, separators=(",", ":")
    ).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        (b"x-request-id", request_id.encode("latin-1")),
    ]
    if failure.retry_after is not None:
        headers.append((b"retry-after", str(failure.retry_after).encode()))
    await send({"type": "http.response.start", "status": failure.status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


class UnconfiguredUpstream:
    """Stands in for the proxy on a serve replica started without
    ``QUARRY_IDE_UPSTREAM``: reads work, IdeOnly requests get a 503 that says why."""

    def __init__(self, retry_after_seconds: int) -> None:
        self.retry_after_seconds = retry_after_seconds

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def probe(self, path: str = "/healthz", limit: float = 2.0) -> str:
        return "not configured (QUARRY_IDE_UPSTREAM is unset)"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        failure = Failure(
            503,
            "factory_unavailable",
            "no Factory is configured for this replica: set QUARRY_IDE_UPSTREAM to the "
            "Factory's URL to serve IDE routes here",
            self.retry_after_seconds,
        )
        await send_failure(send, failure, request_id_of(scope))
