"""A streaming reverse proxy: serve replicas send IdeOnly requests to the Factory.

Raw ASGI on purpose: request and response bodies are streamed chunk by chunk in both
directions (a server-sent event reaches the client when the upstream writes it, an
upload is never held in memory), and nothing of FastAPI sits on the path. One
``UpstreamPool`` per process (``quarry.fleet.upstream_client``) keeps keep-alive
connections to the upstream; it is opened by the application's lifespan (``start``)
and closed with it.

Why that purpose-built client and not httpcore (used before) or httpx (built on it):
the proxy is on the hot path of every IDE request, and a profile of a serve replica
under ``bench/proxy_bench.py`` put about half of its per-request CPU in httpcore and
h11 (pure-Python HTTP/1.1 parsing, anyio locks, request and response models). The
proxy already holds the headers as byte pairs and only needs them written out and a
response parsed; the client parses with llhttp (``httptools``, the parser uvicorn
itself uses), sends exactly the headers it is given, keeps no cookies and reads no
``HTTP(S)_PROXY`` from the environment, which is what a proxy needs anyway. Which
headers are forwarded, dropped and added is ``quarry.fleet.proxy_headers``.

Failure policy, from the client's side:

- a refused connection is retried with backoff for ``connect_retry_seconds`` (a
  Factory that scales to zero is starting; the first request after an idle period
  should succeed, not fail), but only while no byte of the request body has been
  read, so nothing is ever sent twice;
- the upstream still unreachable: ``503`` with ``Retry-After`` and a JSON error that
  names the Factory; no response head within the read timeout: ``504``;
- the upstream failing after the response started: the client connection is aborted
  (a truncated body must not look like a complete one).

The same class, with several upstreams, is the local fleet's round-robin front door
(``quarry.fleet.launcher``): a refused connection moves on to the next upstream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from prometheus_client import Counter
from starlette.types import Receive, Scope, Send

from quarry.core.metrics import PROXY_ERRORS, REGISTRY
from quarry.core.settings import Settings
from quarry.fleet.proxy_asgi import (
    ClientGone,
    Failure,
    RequestBody,
    UnconfiguredUpstream,
    UpstreamBroke,
    send_failure,
    wait_disconnect,
)
from quarry.fleet.proxy_headers import (
    content_length,
    forwarded_headers,
    has_body,
    header,
    request_id_of,
    strip_hop_by_hop,
)
from quarry.fleet.routes import RouteClass, classify
from quarry.fleet.upstream_client import (
    ConnectFailed,
    ConnectTimeout,
    Origin,
    Timeouts,
    UpstreamError,
    UpstreamPool,
    UpstreamResponse,
    UpstreamTimeout,
)

log = logging.getLogger(__name__)
IDE_ONLY = RouteClass.IDE_ONLY

PROXY_CONNECT_RETRIES = Counter(
    "quarry_proxy_connect_retries",
    "Refused connections the proxy retried (an upstream starting up).",
    registry=REGISTRY,
)

_RETRY_FIRST_DELAY = 0.05
_RETRY_MAX_DELAY = 1.0
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_CONNECT_ERRORS: tuple[type[Exception], ...] = (ConnectFailed, ConnectTimeout)


@dataclass(frozen=True)
class _Upstream:
    """One upstream base URL, parsed once: what every request to it reuses."""

    url: str
    origin: Origin
    prefix: bytes  # the base path, without a trailing slash
    host_header: bytes

    @classmethod
    def parse(cls, url: str) -> _Upstream:
        parts = urlsplit(url.rstrip("/"))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"an upstream must be an http(s) URL, got {url!r}")
        netloc = parts.netloc.rpartition("@")[2]  # never send userinfo as Host
        default_port = 443 if parts.scheme == "https" else 80
        return cls(
            url=url.rstrip("/"),
            origin=Origin(
                parts.scheme, parts.hostname.encode("idna").decode(), parts.port or default_port
            ),
            prefix=parts.path.rstrip("/").encode(),
            host_header=netloc.encode("idna"),
        )

    def target(self, path: bytes, query: bytes = b"") -> bytes:
        return self.prefix + path + (b"?" + query if query else b"")


@dataclass(frozen=True)
class ProxyConfig:
    """How to reach the upstream(s) and how long to wait for them."""

    upstreams: tuple[str, ...]
    connect_timeout: float = 5.0
    read_timeout: float = 120.0
    connect_retry_seconds: float = 10.0
    retry_after_seconds: int = 5
    max_connections: int = 100
    #: How the upstream is named in the 503 body (``the Factory (QUARRY_IDE_UPSTREAM=...)``).
    upstream_name: str = "the Factory"
    upstream_setting: str = "QUARRY_IDE_UPSTREAM"
    #: What the client should know besides "unavailable" (``{retry}``: Retry-After).
    unavailable_hint: str = "reads keep working on this replica, retry IDE requests in {retry}s"


class ReverseProxy:
    """Forward any HTTP request to one of ``config.upstreams``, streaming both ways."""

    def __init__(self, config: ProxyConfig) -> None:
        if not config.upstreams:
            raise ValueError("a reverse proxy needs at least one upstream")
        self.config = config
        self._pool: UpstreamPool | None = None
        self._next = 0
        self._bases = [_Upstream.parse(u) for u in config.upstreams]
        self._timeouts = Timeouts(
            connect=config.connect_timeout,
            read=config.read_timeout,
            write=config.read_timeout,
            pool=config.connect_timeout,
        )

    # -- lifecycle ---------------------------------------------------------------
    async def start(self) -> None:
        if self._pool is not None:
            return
        # HTTP/1.1, no retries of its own besides a stale keep-alive connection (the
        # connect-retry policy is ours, see ``_open``).
        self._pool = UpstreamPool(max_connections=self.config.max_connections)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()
            self._pool = None

    @property
    def pool(self) -> UpstreamPool:
        if self._pool is None:
            raise RuntimeError("the proxy is not started (the application lifespan starts it)")
        return self._pool

    # -- probing (readiness) -------------------------------------------------------
    async def probe(self, path: str = "/healthz", limit: float = 2.0) -> str:
        """``ok`` when the (first) upstream answers ``path``, else why not; no retries."""
        base = self._bases[0]
        wait = min(limit, self.config.connect_timeout)
        try:
            response = await self.pool.request(
                base.origin,
                b"GET",
                base.target(path.encode()),
                [(b"host", base.host_header)],
                timeouts=Timeouts(connect=wait, read=wait, write=wait, pool=wait),
            )
            try:
                while await response.read():
                    pass
            finally:
                await response.aclose()
        except UpstreamError as exc:
            return f"unreachable: {type(exc).__name__}"
        return "ok" if response.status < 500 else f"failed: HTTP {response.status}"

    # -- ASGI --------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            # WebSockets are not proxied (no IdeOnly route uses them).
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1011})
            return
        request_id = request_id_of(scope)
        body = RequestBody(receive)
        try:
            response = await self._open(scope, body, request_id)
        except ClientGone:
            PROXY_ERRORS.labels("client_disconnected").inc()
            return
        if isinstance(response, Failure):
            await send_failure(send, response, request_id)
            return
        if header(response.headers, b"content-length") is not None:
            # A sized body ends by itself: relay it without a disconnect watcher.
            await self._relay(response, send, request_id)
            return
        stream = asyncio.ensure_future(self._relay(response, send, request_id))
        if body.done or not has_body(scope.get("headers") or ()):
            # The request is fully read: the next message can only be a disconnect,
            # which must stop an endless upstream stream (server-sent events).
            watch = asyncio.ensure_future(wait_disconnect(receive))
            await asyncio.wait({stream, watch}, return_when=asyncio.FIRST_COMPLETED)
            if not stream.done():
                stream.cancel()
                PROXY_ERRORS.labels("client_disconnected").inc()
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch
        with contextlib.suppress(asyncio.CancelledError):
            await stream

    def _pick(self, attempt: int) -> _Upstream:
        if len(self._bases) == 1:
            return self._bases[0]
        if attempt == 0:
            self._next = (self._next + 1) % len(self._bases)
        return self._bases[(self._next + attempt) % len(self._bases)]

    async def _send(
        self, scope: Scope, body: RequestBody, request_id: str, base: _Upstream
    ) -> UpstreamResponse:
        path = scope.get("raw_path") or scope["path"].encode()
        method: str = scope["method"]
        headers = forwarded_headers(scope, request_id)
        headers.insert(0, (b"host", base.host_header))
        content: AsyncIterator[bytes] | None = None
        if has_body(scope.get("headers") or ()):
            # Without a Content-Length the client re-frames the body as chunked (the
            # client's own framing is hop-by-hop, stripped above).
            content = body.stream()
        elif method in _BODY_METHODS and header(headers, b"content-length") is None:
            headers.append((b"content-length", b"0"))
        return await self.pool.request(
            base.origin,
            method.encode("ascii"),
            base.target(path, scope.get("query_string") or b""),
            headers,
            content,
            timeouts=self._timeouts,
        )

    async def _open(
        self, scope: Scope, body: RequestBody, request_id: str
    ) -> UpstreamResponse | Failure:
        """Send the request; retry refused connections while the body is unread."""
        deadline = time.monotonic() + self.config.connect_retry_seconds
        delay = _RETRY_FIRST_DELAY
        attempt = 0
        while True:
            base = self._pick(attempt)
            try:
                return await self._send(scope, body, request_id, base)
            except ClientGone:
                raise
            except _CONNECT_ERRORS as exc:
                if body.started or time.monotonic() + delay > deadline:
                    PROXY_ERRORS.labels("connect").inc()
                    log.warning(
                        "proxy: %s unreachable (%s) after %d attempt(s); request %s",
                        base.url,
                        type(exc).__name__,
                        attempt + 1,
                        request_id,
                    )
                    return _unavailable(self.config, base.url)
                attempt += 1
                PROXY_CONNECT_RETRIES.inc()
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RETRY_MAX_DELAY)
            except UpstreamTimeout:
                PROXY_ERRORS.labels("timeout").inc()
                return _timed_out(self.config, base.url)
            except UpstreamError as exc:
                if body.disconnected:
                    raise ClientGone from exc
                PROXY_ERRORS.labels("upstream_error").inc()
                log.warning("proxy: %s failed (%s); request %s", base.url, exc, request_id)
                return _unavailable(self.config, base.url)

    async def _relay(self, response: UpstreamResponse, send: Send, request_id: str) -> None:
        headers = strip_hop_by_hop(response.headers)
        if header(headers, b"x-request-id") is None:
            headers.append((b"x-request-id", request_id.encode("latin-1")))
        try:
            await send(
                {"type": "http.response.start", "status": response.status, "headers": headers}
            )
            # A sized body's last chunk is sent as the last message (one ASGI message
            # fewer through every middleware); llhttp enforces the length, so a chunk
            # that reaches it is the end. Any other body ends with an empty message.
            remaining = content_length(headers)
            try:
                while chunk := await response.read():
                    if remaining is not None:
                        remaining -= len(chunk)
                    await send(
                        {"type": "http.response.body", "body": chunk, "more_body": remaining != 0}
                    )
            except UpstreamError as exc:
                PROXY_ERRORS.labels("stream_aborted").inc()
                log.warning("proxy: upstream stream broke (%s); request %s", exc, request_id)
                raise UpstreamBroke(str(exc)) from exc
            if remaining != 0:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await response.aclose()


def _unavailable(cfg: ProxyConfig, upstream: str) -> Failure:
    return Failure(
        503,
        "factory_unavailable",
        f"{cfg.upstream_name} ({cfg.upstream_setting}={upstream}) is unavailable; "
        + cfg.unavailable_hint.format(retry=cfg.retry_after_seconds),
        cfg.retry_after_seconds,
    )


def _timed_out(cfg: ProxyConfig, upstream: str) -> Failure:
    return Failure(
        504,
        "factory_timeout",
        f"{cfg.upstream_name} ({cfg.upstream_setting}={upstream}) did not answer within "
        f"{cfg.read_timeout:g}s",
        None,
    )


class IdeRouting:
    """ASGI middleware of a serve replica: a request ``classify()`` calls IdeOnly goes
    to the Factory through ``proxy``; everything else is answered here. No route table
    exists besides ``classify()``'s pattern lists."""

    def __init__(
        self, app: Callable[[Scope, Receive, Send], Awaitable[None]], proxy: IdeUpstream
    ) -> None:
        self.app = app
        self.proxy = proxy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and classify(scope["method"], scope["path"]) is IDE_ONLY:
            await self.proxy(scope, receive, send)
            return
        await self.app(scope, receive, send)


IdeUpstream = ReverseProxy | UnconfiguredUpstream


def ide_proxy(settings: Settings) -> IdeUpstream:
    """The serve replica's proxy to the Factory, configured from the settings tree."""
    if settings.ide_upstream is None:
        log.warning("QUARRY_IDE_UPSTREAM is unset: IDE routes answer 503 on this replica")
        return UnconfiguredUpstream(settings.ide_retry_after_seconds)
    return ReverseProxy(
        ProxyConfig(
            upstreams=(settings.ide_upstream,),
            connect_timeout=settings.ide_connect_timeout,
            read_timeout=settings.ide_read_timeout,
            connect_retry_seconds=settings.ide_connect_retry_seconds,
            retry_after_seconds=settings.ide_retry_after_seconds,
            max_connections=settings.ide_max_connections,
        )
    )
