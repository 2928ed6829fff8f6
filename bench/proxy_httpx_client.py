"""The IDE proxy's upstream client on httpx, for ``bench/proxy_bench.py`` to compare with.

Not used by Quarry: the proxy forwards with ``quarry.fleet.upstream_client`` because
this benchmark says it costs a third of httpx's CPU per request (docs/benchmarks.md).
It implements the same ``request``/``read``/``aclose`` surface as ``UpstreamPool`` so
a replica can be started with it swapped in, and it is what the proxy would use if
the hand-written client ever stops earning its place.

A reverse proxy forwards other people's requests, so the client must not behave like
a browser. httpx's ``AsyncClient`` is used in its lean configuration (one client per
process, a keep-alive connection pool, HTTP/1.1, ``trust_env=False``) with two things
turned off that a proxy must never do:

- **no cookie jar**: a shared client would store one user's ``Set-Cookie`` and send
  it with the next user's request; the jar's policy refuses every cookie (the
  ``Cookie`` header a client sent still passes through untouched);
- **no headers of its own**: requests are built as ``httpx.Request`` with exactly the
  headers the proxy gives and sent with ``client.send``, so the client's default
  ``Accept``, ``Accept-Encoding`` (which would make the Factory compress for a client
  that never asked), ``User-Agent`` and ``Connection`` are never merged in.

The response body is relayed raw (``aiter_raw``: no decompression, chunked framing
already removed by the parser). httpx exceptions are mapped to the proxy's
``UpstreamError`` hierarchy, which is what ``quarry.fleet.proxy`` decides on: a
refused connection may be retried, a timeout is a ``504``, anything else a ``503``.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from http.cookiejar import CookieJar, DefaultCookiePolicy

import httpx

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
    WriteTimeout,
)

KEEPALIVE_EXPIRY = 30.0

Headers = Sequence[tuple[bytes, bytes]]

# httpx logs every request at INFO: a line per proxied request is noise, and the
# replica's own access log already has it.
logging.getLogger("httpx").setLevel(logging.WARNING)


def _mapped(exc: httpx.TransportError) -> UpstreamError:
    """The proxy's error for an httpx transport error (the original is its cause)."""
    if isinstance(exc, httpx.ConnectTimeout):
        return ConnectTimeout(str(exc) or "connecting timed out")
    if isinstance(exc, httpx.ConnectError):
        return ConnectFailed(str(exc) or "cannot connect")
    if isinstance(exc, httpx.PoolTimeout):
        return PoolTimeout(str(exc) or "no free upstream connection")
    if isinstance(exc, httpx.ReadTimeout):
        return ReadTimeout(str(exc) or "the upstream did not answer in time")
    if isinstance(exc, httpx.WriteTimeout):
        return WriteTimeout(str(exc) or "the upstream did not take the request in time")
    if isinstance(exc, httpx.ProtocolError | httpx.DecodingError):
        return ProtocolFailure(str(exc) or "invalid HTTP/1.1 from the upstream")
    return ConnectionBroke(str(exc) or type(exc).__name__)


class _NoCookies(DefaultCookiePolicy):
    """Accept no cookie and return none: the client serves every user."""

    def set_ok(self, cookie: object, request: object) -> bool:
        return False

    def return_ok(self, cookie: object, request: object) -> bool:
        return False


class HttpxResponse:
    """Status and headers as they came (order and case kept); the body via ``read``."""

    __slots__ = ("_chunks", "_response", "headers", "status")

    def __init__(self, response: httpx.Response) -> None:
        self.status = response.status_code
        self.headers: list[tuple[bytes, bytes]] = list(response.headers.raw)
        self._response = response
        self._chunks: AsyncIterator[bytes] = response.aiter_raw()

    async def read(self) -> bytes:
        """The next body bytes; ``b""`` at the end."""
        try:
            async for chunk in self._chunks:
                if chunk:
                    return chunk
        except httpx.TransportError as exc:
            raise _mapped(exc) from exc
        return b""

    async def aclose(self) -> None:
        """Done with the response: a body not read to its end closes the connection."""
        await self._response.aclose()


class HttpxPool:
    """One ``httpx.AsyncClient`` per process: keep-alive connections to any origin."""

    def __init__(
        self,
        max_connections: int = 100,
        keepalive_expiry: float = KEEPALIVE_EXPIRY,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self._client = httpx.AsyncClient(
            http1=True,
            http2=False,
            limits=httpx.Limits(
                max_connections=max_connections,
                max_keepalive_connections=max_connections,
                keepalive_expiry=keepalive_expiry,
            ),
            # The system's trust store, as ``ssl`` gives it (not certifi's bundle).
            verify=ssl_context or ssl.create_default_context(),
            trust_env=False,  # no HTTP(S)_PROXY, no .netrc: the upstream is configured
            follow_redirects=False,  # a redirect is the client's to follow
            cookies=CookieJar(policy=_NoCookies()),
        )

    async def request(
        self,
        origin: Origin,
        method: bytes,
        target: bytes,
        headers: Headers,
        body: AsyncIterable[bytes] | None = None,
        *,
        timeouts: Timeouts,
    ) -> HttpxResponse:
        """Send one request; return once the response head is in (the body is not)."""
        url = httpx.URL(
            scheme=origin.scheme,
            host=origin.host,
            port=origin.port,
            raw_path=target,
        )
        request = httpx.Request(
            method.decode("ascii"),
            url,
            headers=list(headers),
            content=body,
            extensions={
                "timeout": {
                    "connect": timeouts.connect,
                    "read": timeouts.read,
                    "write": timeouts.write,
                    "pool": timeouts.pool,
                }
            },
        )
        try:
            response = await self._client.send(request, stream=True)
        except httpx.TransportError as exc:
            raise _mapped(exc) from exc
        return HttpxResponse(response)

    async def aclose(self) -> None:
        await self._client.aclose()
