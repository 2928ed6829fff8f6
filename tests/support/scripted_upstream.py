"""A scripted raw HTTP/1.1 upstream on real sockets, for the proxy client's tests.

The server runs in the test's own event loop and writes crafted responses (so
framing, stale connections and broken upstreams are exact), and counts the
connections it accepted (so reuse is observed from the server's side).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from quarry.fleet.upstream_client import Origin, Timeouts, UpstreamPool, UpstreamResponse

FAST = Timeouts(connect=5, read=5, write=5, pool=5)
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]


class Upstream:
    """A scripted server: ``handler(reader, writer, n)`` serves the n-th connection."""

    def __init__(self, handler: Handler, tls: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.tls = tls
        self.accepted = 0
        self.server: asyncio.Server | None = None
        self.origin = Origin("http", "127.0.0.1", 0)

    async def __aenter__(self) -> Upstream:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        port = self.server.sockets[0].getsockname()[1]
        if self.tls is None:
            self.origin = Origin("http", "127.0.0.1", port)
        else:
            self.origin = Origin("https", "localhost", port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            await self.handler(reader, writer, self.accepted)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


def run(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(asyncio.wait_for(main(), 30))


async def get(pool: UpstreamPool, up: Upstream, path: bytes = b"/", **kw: Any) -> UpstreamResponse:
    method = kw.pop("method", b"GET")
    headers = kw.pop("headers", [(b"Host", b"upstream")])
    return await pool.request(up.origin, method, path, headers, timeouts=kw.pop("t", FAST), **kw)


async def body_of(response: UpstreamResponse) -> bytes:
    return b"".join([chunk async for chunk in response.aiter_body()])


async def until(predicate: Callable[[], bool], what: str, limit: float = 10.0) -> None:
    """Wait on a condition with a deadline (the loop must run for it to change)."""
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def keep_answering(response: bytes) -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        while True:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(response)
            await writer.drain()

    return handler


class RecordingPool(UpstreamPool):
    """A pool that lets a test see its connections (to wait on their state)."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.connections: list[Any] = []

    async def _connect(self, origin: Origin, limit: float) -> Any:
        conn = await super()._connect(origin, limit)
        self.connections.append(conn)
        return conn
