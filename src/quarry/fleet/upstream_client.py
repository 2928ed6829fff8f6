"""The IDE proxy's HTTP/1.1 client: a connection pool on asyncio, responses parsed by llhttp.

Why a purpose-built client instead of httpcore (which the proxy used before): a
py-spy profile of a serve replica under ``bench/proxy_bench.py`` put about half of its
per-request CPU inside httpcore and h11 (pure-Python HTTP/1.1 parsing, anyio locks,
request and response model objects, per-request set-up). A reverse proxy needs little
of that: it already holds the headers as byte pairs, it sends them as they are, and
it wants the status and headers, then the body chunk by chunk. So this client does
only that, and the replica's CPU per proxied request in that benchmark went from
1.9-2.4 ms (httpcore) to 0.9-1.2 ms (interleaved runs on one 2-core machine):

- responses are parsed by ``httptools.HttpResponseParser``, the binding to llhttp
  (the C parser of Node.js, and the one uvicorn parses our own requests with), fed
  straight from ``asyncio.Protocol.data_received`` (``quarry.fleet.upstream_conn``);
- the request head is one ``bytes`` write: the headers exactly as given, plus only
  the framing a streamed body needs (``Transfer-Encoding: chunked`` when the caller
  gave no ``Content-Length``); no default headers, no cookies, no ``HTTP(S)_PROXY``;
- one pool per process keeps idle keep-alive connections per upstream (LIFO,
  dropped after ``KEEPALIVE_EXPIRY`` idle, or when the upstream closed them or sent
  bytes nobody asked for), at most ``max_connections`` open in total; a request
  finding none free waits up to ``Timeouts.pool``;
- a reused connection that proves stale (it broke before any response byte came
  back) is retried once on a fresh connection, but only if no byte of the request
  body was taken from the caller: a body is never sent twice;
- a connection goes back to the pool only when its response was read to the end
  and the upstream keeps it alive; a response closed early closes its connection.

``https://`` upstreams get TLS from ``ssl.create_default_context()`` (certificate and
host name checked), unless the pool is given its own context.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Sequence

from quarry.fleet.upstream_conn import (
    ConnectFailed,
    ConnectionBroke,
    ConnectTimeout,
    Origin,
    PoolTimeout,
    ProtocolFailure,
    ReadTimeout,
    Timeouts,
    UpstreamError,
    UpstreamTimeout,
    WriteTimeout,
    _Connection,
    _expire,
)

__all__ = [
    "KEEPALIVE_EXPIRY",
    "ConnectFailed",
    "ConnectTimeout",
    "ConnectionBroke",
    "Origin",
    "PoolTimeout",
    "ProtocolFailure",
    "ReadTimeout",
    "Timeouts",
    "UpstreamError",
    "UpstreamPool",
    "UpstreamResponse",
    "UpstreamTimeout",
    "WriteTimeout",
]

KEEPALIVE_EXPIRY = 30.0

Headers = Sequence[tuple[bytes, bytes]]


def request_head(
    method: bytes, target: bytes, headers: Headers, has_body: bool
) -> tuple[bytes, int | None]:
    """The request line and headers as one buffer, and the body's declared length
    (``None``: the body goes chunked, and the head says so)."""
    sized: int | None = None
    parts = [method, b" ", target, b" HTTP/1.1\r\n"]
    for name, value in headers:
        parts += (name, b": ", value, b"\r\n")
        if has_body and len(name) == 14 and name.lower() == b"content-length":
            sized = int(value)
    if has_body and sized is None:
        parts.append(b"transfer-encoding: chunked\r\n")
    parts.append(b"\r\n")
    head = b"".join(parts)
    # Every CR and LF must be one of ours: a value with its own would split the head.
    lines = len(headers) + 2 + (1 if has_body and sized is None else 0)
    if head.count(b"\n") != lines or head.count(b"\r") != lines or b" " in target:
        raise ValueError("a request line or header contains CR, LF or a space in the target")
    return head, sized


class UpstreamResponse:
    """Status and headers as they came (order and case kept); the body via ``read``."""

    __slots__ = ("_conn", "_pool", "_timeout", "headers", "status")

    def __init__(self, conn: _Connection, pool: UpstreamPool, timeout: float) -> None:
        self.status = conn.status
        self.headers = conn.headers
        self._conn: _Connection | None = conn
        self._pool = pool
        self._timeout = timeout

    async def read(self) -> bytes:
        """The next body bytes (all that arrived, waiting for some); ``b""`` at the end."""
        conn = self._conn
        if conn is None:
            return b""
        try:
            data = await conn.read_body(self._timeout)
        except BaseException:
            self.close()
            raise
        if conn.drained:
            # The end is in: the connection can serve another request right away.
            self._conn = None
            self._pool._release(conn)
        return data

    async def aiter_body(self) -> AsyncIterator[bytes]:
        while chunk := await self.read():
            yield chunk

    def close(self) -> None:
        """Done with the response: a body not read to its end closes the connection."""
        conn, self._conn = self._conn, None
        if conn is not None:
            self._pool._discard(conn)

    async def aclose(self) -> None:
        self.close()


class UpstreamPool:
    """Keep-alive HTTP/1.1 connections to any number of origins, on the running loop."""

    def __init__(
        self,
        max_connections: int = 100,
        keepalive_expiry: float = KEEPALIVE_EXPIRY,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self.max_connections = max_connections
        self.keepalive_expiry = keepalive_expiry
        self._idle: dict[Origin, list[_Connection]] = {}
        self._open = 0  # connections holding a slot: connecting, busy or idle
        self._waiters: deque[asyncio.Future[bool]] = deque()
        self._ssl = ssl_context  # None: the system's defaults, made on first use
        self._closed = False

    @property
    def open_connections(self) -> int:
        return self._open

    async def request(
        self,
        origin: Origin,
        method: bytes,
        target: bytes,
        headers: Headers,
        body: AsyncIterable[bytes] | None = None,
        *,
        timeouts: Timeouts,
    ) -> UpstreamResponse:
        """Send one request; return once the response head is in (the body is not)."""
        head, sized = request_head(method, target, headers, body is not None)
        head_only = method == b"HEAD"
        retried = False
        while True:
            conn, reused = await self._acquire(origin, timeouts)
            try:
                await conn.exchange(head, body, sized, head_only, timeouts)
            except ConnectionBroke:
                self._discard(conn)
                if reused and not retried and not conn.got_bytes and not conn.body_pulled:
                    retried = True  # stale keep-alive: the upstream closed it meanwhile
                    continue
                raise
            except BaseException:
                self._discard(conn)
                raise
            response = UpstreamResponse(conn, self, timeouts.read)
            if conn.drained:
                response._conn = None  # no body (204, 304, empty): free it now
                self._release(conn)
            return response

    async def aclose(self) -> None:
        """Close idle connections; busy ones close when their response is done."""
        self._closed = True
        for idle in self._idle.values():
            for conn in idle:
                self._discard(conn)
        self._idle.clear()
        while self._waiters:
            self._wake_one()

    # -- slots -------------------------------------------------------------------------
    async def _acquire(self, origin: Origin, timeouts: Timeouts) -> tuple[_Connection, bool]:
        loop = asyncio.get_running_loop()
        deadline: float | None = None
        while True:
            if self._closed:
                raise UpstreamError("the upstream pool is closed")
            idle = self._idle.get(origin)
            if idle:
                now = time.monotonic()
                while idle:
                    conn = idle.pop()  # the most recently used: least likely closed
                    if (
                        conn.reusable
                        and not conn.closed
                        and (now - conn.idle_since < self.keepalive_expiry)
                    ):
                        return conn, True
                    self._discard(conn)
            if self._open < self.max_connections:
                self._open += 1
                try:
                    conn = await self._connect(origin, timeouts.connect)
                except BaseException:
                    self._open -= 1
                    self._wake_one()
                    raise
                conn.counted = True
                return conn, False
            if self._evict_idle():
                continue
            if deadline is None:
                deadline = loop.time() + timeouts.pool
            remaining = deadline - loop.time()
            if remaining <= 0 or await self._wait_for_slot(loop, remaining):
                raise PoolTimeout(
                    f"no free upstream connection in {timeouts.pool:g}s "
                    f"({self.max_connections} open)"
                )

    async def _wait_for_slot(self, loop: asyncio.AbstractEventLoop, limit: float) -> bool:
        """``True`` when ``limit`` passed before a slot or idle connection freed up."""
        waiter: asyncio.Future[bool] = loop.create_future()
        self._waiters.append(waiter)
        timer = loop.call_later(limit, _expire, waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and not waiter.result():
                self._wake_one()  # we were handed a slot we will not use: pass it on
            raise
        finally:
            timer.cancel()
            if not waiter.done() or waiter.result():
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(False)
                return

    def _evict_idle(self) -> bool:
        """Close the longest-idle connection of any origin to make room; ``False``
        when none is idle."""
        for idle in self._idle.values():
            if idle:
                self._discard(idle.pop(0))
                return True
        return False

    def _release(self, conn: _Connection) -> None:
        """A response read to its end: keep the connection if the upstream does."""
        if not conn.reusable or conn.closed or self._closed:
            self._discard(conn)
            return
        conn._reset()
        conn.idle_since = time.monotonic()
        self._idle.setdefault(conn.origin, []).append(conn)
        self._wake_one()

    def _discard(self, conn: _Connection) -> None:
        conn.close()
        if conn.counted:
            conn.counted = False
            self._open -= 1
            self._wake_one()

    # -- connecting --------------------------------------------------------------------
    async def _connect(self, origin: Origin, limit: float) -> _Connection:
        loop = asyncio.get_running_loop()
        tls = None
        if origin.scheme == "https":
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            tls = self._ssl
        where = f"{origin.host}:{origin.port}"
        try:
            async with asyncio.timeout(limit):
                _transport, conn = await loop.create_connection(
                    lambda: _Connection(origin),
                    origin.host,
                    origin.port,
                    ssl=tls,
                    server_hostname=origin.host if tls else None,
                )
        except TimeoutError as exc:  # before OSError: it is one
            raise ConnectTimeout(f"connecting to {where} took over {limit:g}s") from exc
        except OSError as exc:
            raise ConnectFailed(f"cannot connect to {where}: {exc}") from exc
        return conn
