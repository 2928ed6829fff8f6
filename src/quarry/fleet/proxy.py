"""A streaming reverse proxy: serve replicas send IdeOnly requests to the Factory.

Raw ASGI on purpose: request and response bodies are streamed chunk by chunk in both
directions (a server-sent event reaches the client when the upstream writes it, an
upload is never held in memory), and nothing of FastAPI sits on the path. One
``httpcore.AsyncConnectionPool`` per process keeps a pool of connections to the
upstream; it is opened by the application's lifespan (``start``) and closed with it.

Why httpcore and not httpx's ``AsyncClient`` (which is built on it): a proxy wants
none of what the high-level client adds per request (URL and header models, cookie
jar, default headers, redirect and auth hooks, an INFO log line per request), and
that layer was a measurable share of the proxy's per-request cost
(``bench/proxy_bench.py``). httpcore sends exactly the headers it is given, keeps no
cookies and reads no ``HTTP(S)_PROXY`` from the environment, which is what a proxy
needs anyway.

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
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpcore
from prometheus_client import Counter

from quarry.core.logs import REQUEST_ID
from quarry.core.metrics import PROXY_ERRORS, REGISTRY
from quarry.core.settings import Settings
from quarry.fleet.proxy_net import backend_for
from quarry.fleet.routes import RouteClass, classify

log = logging.getLogger(__name__)
IDE_ONLY = RouteClass.IDE_ONLY

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

PROXY_CONNECT_RETRIES = Counter(
    "quarry_proxy_connect_retries",
    "Refused connections the proxy retried (an upstream starting up).",
    registry=REGISTRY,
)

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
    }
)
# Request headers the proxy sets itself (``Host`` is the upstream's own).
_REPLACED = frozenset(
    {b"host", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"x-request-id"}
)
_REQUEST_ID_MAX = 200
_RETRY_FIRST_DELAY = 0.05
_RETRY_MAX_DELAY = 1.0
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
#: Everything httpcore raises for a failed exchange (it has no common base class).
_HTTP_ERRORS: tuple[type[Exception], ...] = (
    httpcore.TimeoutException,
    httpcore.NetworkError,
    httpcore.ProtocolError,
    httpcore.UnsupportedProtocol,
)
_CONNECT_ERRORS: tuple[type[Exception], ...] = (httpcore.ConnectError, httpcore.ConnectTimeout)


@dataclass(frozen=True)
class _Upstream:
    """One upstream base URL, parsed once: what every request to it reuses."""

    url: str
    scheme: bytes
    host: bytes
    port: int | None
    prefix: bytes  # the base path, without a trailing slash
    host_header: bytes

    @classmethod
    def parse(cls, url: str) -> _Upstream:
        parts = urlsplit(url.rstrip("/"))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"an upstream must be an http(s) URL, got {url!r}")
        netloc = parts.netloc.rpartition("@")[2]  # never send userinfo as Host
        return cls(
            url=url.rstrip("/"),
            scheme=parts.scheme.encode(),
            host=parts.hostname.encode("idna"),
            port=parts.port,
            prefix=parts.path.rstrip("/").encode(),
            host_header=netloc.encode("idna"),
        )

    def target(self, path: bytes, query: bytes = b"") -> httpcore.URL:
        raw = self.prefix + path + (b"?" + query if query else b"")
        return httpcore.URL(scheme=self.scheme, host=self.host, port=self.port, target=raw)


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


def hop_by_hop_names(headers: Sequence[tuple[bytes, bytes]]) -> frozenset[str]:
    """The fixed hop-by-hop set plus every header the ``Connection`` header names."""
    named = {
        token.strip().lower()
        for name, value in headers
        if name.lower() == b"connection"
        for token in value.decode("latin-1").split(",")
        if token.strip()
    }
    return HOP_BY_HOP | named


def strip_hop_by_hop(headers: Sequence[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    drop = hop_by_hop_names(headers)
    return [
        (name, value)
        for name, value in headers
        if (key := name.decode("latin-1").lower()) not in drop and not key.startswith("proxy-")
    ]


def _header(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


def forwarded_headers(scope: Scope, request_id: str) -> list[tuple[bytes, bytes]]:
    """The request's end-to-end headers plus ``X-Forwarded-*`` and ``X-Request-Id``.

    ``Host`` is dropped (the client sets the upstream's); the original goes to
    ``X-Forwarded-Host``. An incoming ``X-Forwarded-Proto``/``-Host`` (set by a load
    balancer in front of this replica) is kept, ``X-Forwarded-For`` is appended to.
    ``Authorization`` passes through untouched: the Factory authenticates itself.
    """
    raw: list[tuple[bytes, bytes]] = list(scope.get("headers") or [])
    kept = [(k, v) for k, v in strip_hop_by_hop(raw) if k.lower() not in _REPLACED]
    client = scope.get("client")
    client_ip = client[0] if client else "unknown"
    prior_for = _header(raw, b"x-forwarded-for")
    xff = client_ip
    if prior_for:
        prior = prior_for.decode("latin-1")
        # uvicorn (proxy_headers) may already have taken the client from this header;
        # do not name the same address twice.
        last = prior.rsplit(",", 1)[-1].strip()
        xff = prior if last == client_ip else f"{prior}, {client_ip}"
    proto = _header(raw, b"x-forwarded-proto") or str(scope.get("scheme", "http")).encode()
    host = _header(raw, b"x-forwarded-host") or _header(raw, b"host")
    kept.append((b"x-forwarded-for", xff.encode("latin-1")))
    kept.append((b"x-forwarded-proto", proto))
    if host:
        kept.append((b"x-forwarded-host", host))
    kept.append((b"x-request-id", request_id.encode("latin-1")))
    return kept


def request_id_of(scope: Scope) -> str:
    """The id this process already gave the request (``RequestIdMiddleware`` runs in
    front of the proxy on a serve replica, and puts that id on the response), else a
    sane incoming ``X-Request-Id``, else a new one: one id follows the request across
    processes, and the client sees the id the Factory logged."""
    current = REQUEST_ID.get()
    if current:
        return current
    incoming = _header(list(scope.get("headers") or []), b"x-request-id")
    if incoming:
        text = incoming.decode("latin-1").strip()
        if 0 < len(text) <= _REQUEST_ID_MAX and text.isprintable():
            return text
    return uuid.uuid4().hex


class _Body:
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


async def _wait_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


class ClientGone(Exception):
    """The client disconnected while we were reading its request body."""


def _content_length(headers: Sequence[tuple[bytes, bytes]]) -> int | None:
    value = _header(headers, b"content-length")
    if value is None or not value.strip().isdigit():
        return None
    return int(value)


def _has_body(scope: Scope) -> bool:
    headers = list(scope.get("headers") or [])
    length = _header(headers, b"content-length")
    if length is not None:
        return length.strip() not in (b"", b"0")
    return _header(headers, b"transfer-encoding") is not None


class ReverseProxy:
    """Forward any HTTP request to one of ``config.upstreams``, streaming both ways."""

    def __init__(self, config: ProxyConfig) -> None:
        if not config.upstreams:
            raise ValueError("a reverse proxy needs at least one upstream")
        self.config = config
        self._pool: httpcore.AsyncConnectionPool | None = None
        self._next = 0
        self._bases = [_Upstream.parse(u) for u in config.upstreams]
        self._timeouts = {
            "connect": config.connect_timeout,
            "read": config.read_timeout,
            "write": config.read_timeout,
            "pool": config.connect_timeout,
        }

    # -- lifecycle ---------------------------------------------------------------
    async def start(self) -> None:
        if self._pool is not None:
            return
        # HTTP/1.1 only, no retries of its own (the connect-retry policy is ours, see
        # ``_open``). httpcore adds no header, keeps no cookie (one pool serves every
        # user) and ignores HTTP(S)_PROXY in the environment.
        self._pool = httpcore.AsyncConnectionPool(
            max_connections=self.config.max_connections,
            max_keepalive_connections=self.config.max_connections,
            keepalive_expiry=30.0,
            http1=True,
            http2=False,
            retries=0,
            network_backend=backend_for([base.scheme for base in self._bases]),
        )

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()
            self._pool = None

    @property
    def pool(self) -> httpcore.AsyncConnectionPool:
        if self._pool is None:
            raise RuntimeError("the proxy is not started (the application lifespan starts it)")
        return self._pool

    # -- probing (readiness) -------------------------------------------------------
    async def probe(self, path: str = "/healthz", limit: float = 2.0) -> str:
        """``ok`` when the (first) upstream answers ``path``, else why not; no retries."""
        base = self._bases[0]
        wait = min(limit, self.config.connect_timeout)
        request = httpcore.Request(
            b"GET",
            base.target(path.encode()),
            headers=[(b"host", base.host_header)],
            extensions={"timeout": {"connect": wait, "read": wait, "write": wait, "pool": wait}},
        )
        try:
            response = await self.pool.handle_async_request(request)
            try:
                async for _chunk in response.aiter_stream():
                    pass
            finally:
                await response.aclose()
        except _HTTP_ERRORS as exc:
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
        body = _Body(receive)
        try:
            response = await self._open(scope, body, request_id)
        except ClientGone:
            PROXY_ERRORS.labels("client_disconnected").inc()
            return
        if isinstance(response, _Failure):
            await self._send_failure(send, response, request_id)
            return
        if _header(response.headers, b"content-length") is not None:
            # A sized body ends by itself: relay it without a disconnect watcher.
            await self._relay(response, send, request_id)
            return
        stream = asyncio.ensure_future(self._relay(response, send, request_id))
        if body.done or not _has_body(scope):
            # The request is fully read: the next message can only be a disconnect,
            # which must stop an endless upstream stream (server-sent events).
            watch = asyncio.ensure_future(_wait_disconnect(receive))
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

    def _build(
        self, scope: Scope, body: _Body, request_id: str, base: _Upstream
    ) -> httpcore.Request:
        path = scope.get("raw_path") or scope["path"].encode()
        method: str = scope["method"]
        headers = forwarded_headers(scope, request_id)
        headers.insert(0, (b"host", base.host_header))
        content: AsyncIterator[bytes] | bytes = b""
        if _has_body(scope):
            content = body.stream()
            if _header(headers, b"content-length") is None:
                # The client's own framing is hop-by-hop (stripped); re-frame it.
                headers.append((b"transfer-encoding", b"chunked"))
        elif method in _BODY_METHODS and _header(headers, b"content-length") is None:
            headers.append((b"content-length", b"0"))
        return httpcore.Request(
            method.encode("ascii"),
            base.target(path, scope.get("query_string") or b""),
            headers=headers,
            content=content,
            extensions={"timeout": self._timeouts},
        )

    async def _open(
        self, scope: Scope, body: _Body, request_id: str
    ) -> httpcore.Response | _Failure:
        """Send the request; retry refused connections while the body is unread."""
        deadline = time.monotonic() + self.config.connect_retry_seconds
        delay = _RETRY_FIRST_DELAY
        attempt = 0
        while True:
            base = self._pick(attempt)
            request = self._build(scope, body, request_id, base)
            try:
                return await self.pool.handle_async_request(request)
            except ClientGone:
                raise
            except _CONNECT_ERRORS as exc:
                if body.started or time.monotonic() + delay > deadline:
                    PROXY_ERRORS.labels("connect").inc()
                    log.warning(
                        "proxy: %s unreachable (%s) after %d attempt(s); request %s",
                        base,
                        type(exc).__name__,
                        attempt + 1,
                        request_id,
                    )
                    return _Failure.unavailable(self.config, base.url)
                attempt += 1
                PROXY_CONNECT_RETRIES.inc()
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RETRY_MAX_DELAY)
            except httpcore.TimeoutException:
                PROXY_ERRORS.labels("timeout").inc()
                return _Failure.timeout(self.config, base.url)
            except _HTTP_ERRORS as exc:
                if body.disconnected:
                    raise ClientGone from exc
                PROXY_ERRORS.labels("upstream_error").inc()
                log.warning("proxy: %s failed (%s); request %s", base.url, exc, request_id)
                return _Failure.unavailable(self.config, base.url)

    async def _relay(self, response: httpcore.Response, send: Send, request_id: str) -> None:
        headers = strip_hop_by_hop(response.headers)
        if _header(headers, b"x-request-id") is None:
            headers.append((b"x-request-id", request_id.encode("latin-1")))
        try:
            await send(
                {"type": "http.response.start", "status": response.status, "headers": headers}
            )
            # A sized body's last chunk is sent as the last message (one ASGI message
            # fewer through every middleware); h11 enforces the length, so a chunk
            # that reaches it is the end. Any other body ends with an empty message.
            remaining = _content_length(headers)
            try:
                async for chunk in response.aiter_stream():
                    if chunk:
                        if remaining is not None:
                            remaining -= len(chunk)
                        await send(
                            {
                                "type": "http.response.body",
                                "body": chunk,
                                "more_body": remaining != 0,
                            }
                        )
            except _HTTP_ERRORS as exc:
                PROXY_ERRORS.labels("stream_aborted").inc()
                log.warning("proxy: upstream stream broke (%s); request %s", exc, request_id)
                raise UpstreamBroke(str(exc)) from exc
            if remaining != 0:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await response.aclose()

    @staticmethod
    async def _send_failure(send: Send, failure: _Failure, request_id: str) -> None:
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


class UpstreamBroke(Exception):
    """The upstream failed mid-response; raised so the server aborts the connection."""


@dataclass(frozen=True)
class _Failure:
    status: int
    code: str
    message: str
    retry_after: int | None

    @classmethod
    def unavailable(cls, cfg: ProxyConfig, upstream: str) -> _Failure:
        return cls(
            503,
            "factory_unavailable",
            f"{cfg.upstream_name} ({cfg.upstream_setting}={upstream}) is unavailable; "
            + cfg.unavailable_hint.format(retry=cfg.retry_after_seconds),
            cfg.retry_after_seconds,
        )

    @classmethod
    def timeout(cls, cfg: ProxyConfig, upstream: str) -> _Failure:
        return cls(
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
        failure = _Failure(
            503,
            "factory_unavailable",
            "no Factory is configured for this replica: set QUARRY_IDE_UPSTREAM to the "
            "Factory's URL to serve IDE routes here",
            self.retry_after_seconds,
        )
        await ReverseProxy._send_failure(send, failure, request_id_of(scope))


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
