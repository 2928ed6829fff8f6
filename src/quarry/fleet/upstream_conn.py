"""One upstream HTTP/1.1 connection of the IDE proxy's client: asyncio in, llhttp parsing.

``_Connection`` is the ``asyncio.Protocol`` of one pooled connection. Its transport
callbacks feed ``httptools.HttpResponseParser`` (llhttp) directly with what the
socket delivered, the parser's callbacks fill the current exchange's state (status,
headers, body chunks, complete), and the request side waits on one future per wait
with one timer: no stream layer, no lock, no buffer besides the body chunks not yet
taken. Reading pauses above ``_HIGH_WATER`` buffered bytes, so a slow client holds
the upstream back; writing waits while the transport asks (``pause_writing``).

The error hierarchy lives here too (the connection raises it); the pool in
``quarry.fleet.upstream_client`` re-exports it, and is what callers import.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections import deque
from collections.abc import AsyncIterable
from dataclasses import dataclass
from typing import cast

import httptools

_HIGH_WATER = 256 * 1024  # buffered response bytes above which reading pauses


class UpstreamError(Exception):
    """An exchange with the upstream failed."""


class ConnectFailed(UpstreamError):
    """Refused or unreachable: nothing was sent, so trying again is safe."""


class UpstreamTimeout(UpstreamError):
    """The upstream (or a free connection) did not come in time."""


class ConnectTimeout(UpstreamTimeout):
    pass


class PoolTimeout(UpstreamTimeout):
    pass


class ReadTimeout(UpstreamTimeout):
    pass


class WriteTimeout(UpstreamTimeout):
    pass


class ProtocolFailure(UpstreamError):
    """The upstream's bytes are not a valid HTTP/1.1 response."""


class ConnectionBroke(UpstreamError):
    """The connection closed or reset before the response ended."""


@dataclass(frozen=True, slots=True)
class Origin:
    scheme: str  # "http" or "https"
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float
    read: float  # for the response head, then between body chunks
    write: float
    pool: float  # for a free connection when ``max_connections`` are open


def _expire(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(True)


class _Connection(asyncio.Protocol):
    """One upstream connection: transport callbacks feed llhttp, whose callbacks fill
    the current exchange's state; the request side waits on ``_waiter``."""

    def __init__(self, origin: Origin) -> None:
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.counted = False  # holds one of the pool's ``max_connections`` slots
        self.idle_since = 0.0
        self.reusable = True
        self.closed = False
        self._parser = httptools.HttpResponseParser(self)
        self._loop = asyncio.get_running_loop()
        self._waiter: asyncio.Future[bool] | None = None
        self._writable: asyncio.Future[bool] | None = None
        self._write_paused = False
        self._reading_paused = False
        self._reset()

    def _reset(self) -> None:
        self.busy = False
        self.got_bytes = False  # any byte of a response arrived
        self.body_pulled = False  # the request body iterator was started
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_done = False
        self.complete = False
        self._head_only = False
        self._interim = False  # parsing a 1xx response that is skipped
        self._extra = False  # parsing bytes after the response: ignored
        self._framed = False  # Content-Length or chunked: EOF before the end is a break
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._error: UpstreamError | None = None

    # -- transport callbacks -----------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport; they implement it.
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        if not self.busy or self.complete:
            # Bytes nobody asked for: this connection's framing can no longer be trusted.
            self.reusable = False
            if not self.busy and self.transport is not None:
                self.transport.close()
            return
        self.got_bytes = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(self._error or ProtocolFailure("the upstream switched protocols unasked"))
        except httptools.HttpParserError as exc:
            if self.complete:
                self.reusable = False
            else:
                self._fail(ProtocolFailure(f"malformed response from the upstream: {exc}"))
        if self._buffered > _HIGH_WATER and not self._reading_paused and self.transport:
            self._reading_paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self._ended(None)
        return False  # let the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        self._ended(exc)
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(False)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(False)

    def _ended(self, exc: Exception | None) -> None:
        self.closed = True
        self.reusable = False
        if self.busy and not self.complete and self._error is None:
            if self.head_done and not self._framed and exc is None:
                self.complete = True  # a body delimited by the end of the connection
            else:
                part = "body" if self.head_done else "head"
                why = f": {exc}" if exc else ""
                self._error = ConnectionBroke(
                    f"the upstream closed before the response {part} ended{why}"
                )
        self._wake()

    def _fail(self, error: UpstreamError) -> None:
        self._error = error
        self.reusable = False
        if self.transport is not None:
            self.transport.close()

    # -- llhttp callbacks (httptools calls them by name) --------------------------------
    def on_message_begin(self) -> None:
        if self.complete:
            self._extra = True  # a second response nobody asked for
            self.reusable = False

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._extra:
            return
        self.headers.append((name, value))
        if len(name) == 14 and name.lower() == b"content-length":
            self._framed = True
        elif len(name) == 17 and name.lower() == b"transfer-encoding":
            self._framed = value.rstrip().lower().endswith(b"chunked")

    def on_headers_complete(self) -> None:
        if self._extra:
            return
        status = self._parser.get_status_code()
        if status == 101:
            self._fail(ProtocolFailure("the upstream switched protocols unasked"))
            return
        if 100 <= status < 200:
            self._interim = True  # 100 Continue, 103 Early Hints: the real one follows
            self.headers = []
            self._framed = False
            return
        self.status = status
        self.head_done = True
        if self._head_only:
            # llhttp cannot be told the request was HEAD and would wait for the body a
            # Content-Length announces: end here, and never reuse the connection.
            self.complete = True
            self.reusable = False

    def on_body(self, body: bytes) -> None:
        if not self._head_only and not self._extra:
            self._chunks.append(body)
            self._buffered += len(body)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        if self.complete:
            return
        self.complete = True
        if not self._parser.should_keep_alive():
            self.reusable = False

    # -- the request side ---------------------------------------------------------------
    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(False)

    async def _wait(self, limit: float) -> bool:
        """Wait for the next transport event; ``True`` when ``limit`` passed first."""
        waiter: asyncio.Future[bool] = self._loop.create_future()
        self._waiter = waiter
        timer = self._loop.call_later(limit, _expire, waiter)
        try:
            return await waiter
        finally:
            timer.cancel()
            self._waiter = None

    async def _write(self, data: bytes, limit: float) -> None:
        transport = self.transport
        if self.closed or transport is None or transport.is_closing():
            raise self._error or ConnectionBroke("the upstream connection is closed")
        transport.write(data)
        if self._write_paused:
            writable: asyncio.Future[bool] = self._loop.create_future()
            self._writable = writable
            timer = self._loop.call_later(limit, _expire, writable)
            try:
                if await writable:
                    raise WriteTimeout(f"the upstream took no data for {limit:g}s")
            finally:
                timer.cancel()
                self._writable = None
            if self.closed:
                raise self._error or ConnectionBroke("the upstream closed while we wrote")

    async def exchange(
        self,
        head: bytes,
        body: AsyncIterable[bytes] | None,
        sized: int | None,
        head_only: bool,
        timeouts: Timeouts,
    ) -> None:
        """Send the request; return once the response head is in."""
        self.busy = True
        self._head_only = head_only
        await self._write(head, timeouts.write)
        if body is not None:
            try:
                await self._send_body(body, sized, timeouts.write)
            except ConnectionBroke:
                if not self.head_done:
                    raise
                # The upstream answered before taking the whole body (a 413, say) and
                # closed: its answer is the response.
                self.reusable = False
        while not self.head_done:
            if self._error is not None:
                raise self._error
            if await self._wait(timeouts.read):
                raise ReadTimeout(f"no response head from the upstream in {timeouts.read:g}s")

    async def _send_body(self, body: AsyncIterable[bytes], sized: int | None, limit: float) -> None:
        transport = self.transport
        if self.closed or transport is None or transport.is_closing():
            # Writing the head already failed: say so before taking any body byte.
            raise self._error or ConnectionBroke("the upstream connection is closed")
        sent = 0
        self.body_pulled = True
        async for chunk in body:
            if not chunk:
                continue
            sent += len(chunk)
            if sized is None:
                await self._write(b"%x\r\n%b\r\n" % (len(chunk), chunk), limit)
            elif sent > sized:
                raise ProtocolFailure("the request body is longer than its Content-Length")
            else:
                await self._write(chunk, limit)
        if sized is None:
            await self._write(b"0\r\n\r\n", limit)
        elif sent != sized:
            raise ProtocolFailure("the request body is shorter than its Content-Length")

    async def read_body(self, limit: float) -> bytes:
        """The body bytes buffered so far (waiting for some), ``b""`` at the end."""
        while True:
            chunks = self._chunks
            if chunks:
                data = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
                chunks.clear()
                self._buffered = 0
                if self._reading_paused and self.transport is not None and not self.closed:
                    self._reading_paused = False
                    self.transport.resume_reading()
                return data
            if self._error is not None:
                raise self._error
            if self.complete:
                return b""
            if await self._wait(limit):
                raise ReadTimeout(f"the upstream sent no body bytes for {limit:g}s")

    @property
    def drained(self) -> bool:
        return self.complete and not self._chunks

    def close(self) -> None:
        self.reusable = False
        if self.transport is not None:
            self.transport.close()
