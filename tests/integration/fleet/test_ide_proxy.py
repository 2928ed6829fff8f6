"""The IDE reverse proxy against real upstream servers on real sockets.

The upstream is a small raw ASGI application served by uvicorn in a thread; the proxy
is served the same way, with its lifespan opening the shared connection pool. Every
test talks HTTP to the proxy's port.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn

from quarry.api.request_id import RequestIdMiddleware
from quarry.core.metrics import REGISTRY
from quarry.fleet.proxy import ProxyConfig, ReverseProxy
from tests.support.processes import serve_in_thread, wait_until
from tests.support.services import free_port


@dataclass
class Upstream:
    """What the upstream saw, and gates the test opens to let it go on."""

    seen: list[dict[str, Any]] = field(default_factory=list)
    chunks: list[bytes] = field(default_factory=list)
    first_chunk: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    stream_closed: threading.Event = field(default_factory=threading.Event)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        path = scope["path"]
        headers = [(k.decode(), v.decode()) for k, v in scope["headers"]]
        self.seen.append(
            {
                "method": scope["method"],
                "path": path,
                "raw_path": scope["raw_path"].decode(),
                "query": scope["query_string"].decode(),
                "headers": headers,
            }
        )
        if path == "/upload":
            await self._upload(receive, send)
        elif path == "/sse":
            await self._sse(send)
        elif path == "/endless":
            await self._endless(receive, send)
        elif path == "/slow":
            await asyncio.to_thread(self.release.wait, 30)
            await _json(send, 200, {"slow": True})
        elif path == "/hop":
            await send(
                {
                    "type": "http.response.start",
                    "status": 201,
                    "headers": [
                        (b"content-type", b"text/plain"),
                        (b"connection", b"x-private"),
                        (b"x-private", b"secret-hop"),
                        (b"keep-alive", b"timeout=5"),
                        (b"proxy-authenticate", b"Basic"),
                        (b"set-cookie", b"a=1"),
                        (b"set-cookie", b"b=2"),
                        (b"x-end-to-end", b"kept"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": b"hop"})
        else:
            await _json(send, 200, {"path": path})

    async def _upload(self, receive: Any, send: Any) -> None:
        total = 0
        while True:
            message = await receive()
            chunk = message.get("body", b"")
            if chunk:
                self.chunks.append(chunk)
                total += len(chunk)
                self.first_chunk.set()
            if not message.get("more_body", False):
                break
        await _json(send, 200, {"bytes": total, "chunks": len(self.chunks)})

    async def _sse(self, send: Any) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        await send({"type": "http.response.body", "body": b"data: one\n\n", "more_body": True})
        await asyncio.to_thread(self.release.wait, 30)
        await send({"type": "http.response.body", "body": b"data: two\n\n", "more_body": False})

    async def _endless(self, receive: Any, send: Any) -> None:
        """Ticks until the client goes away, which a server learns from ``receive``."""
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )

        async def ticks() -> None:
            while True:
                await send({"type": "http.response.body", "body": b": tick\n\n", "more_body": True})
                await asyncio.sleep(0.05)

        ticking = asyncio.ensure_future(ticks())
        while (await receive())["type"] != "http.disconnect":
            pass
        self.stream_closed.set()
        ticking.cancel()


async def _json(send: Any, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": data})


class _Served:
    """The proxy as an ASGI app whose lifespan opens and closes its client."""

    def __init__(self, proxy: ReverseProxy) -> None:
        self.proxy = proxy

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await self.proxy.start()
                else:
                    await self.proxy.close()
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        await self.proxy(scope, receive, send)


@contextmanager
def proxy_to(upstream: str, **config: Any) -> Iterator[str]:
    proxy = ReverseProxy(ProxyConfig(upstreams=(upstream,), **config))
    with serve_in_thread(_Served(proxy)) as url:
        yield url


def _retries() -> float:
    return REGISTRY.get_sample_value("quarry_proxy_connect_retries_total") or 0.0


@contextmanager
def serve_at(app: Any, port: int) -> Iterator[None]:
    """Serve ``app`` on a given port (the one a proxy already points at)."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, 30, "the upstream to start")
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@pytest.fixture
def upstream() -> Iterator[tuple[Upstream, str]]:
    app = Upstream()
    with serve_in_thread(app) as url:
        try:
            yield app, url
        finally:
            app.release.set()  # let a held request end before the server stops


def test_forwards_path_query_and_headers(upstream: tuple[Upstream, str]) -> None:
    app, url = upstream
    with proxy_to(url) as proxy:
        got = httpx.get(
            f"{proxy}/api/v1/workspaces/w/files/a%20b.sql?x=1&y=%2F",
            headers={
                "Authorization": "Bearer tok-123",
                "Connection": "keep-alive, X-Drop-Me",
                "X-Drop-Me": "1",
                "Proxy-Authorization": "Basic abc",
                "X-Forwarded-For": "203.0.113.9",
                "X-Request-Id": "req-42",
                "Host": "replica.example:8443",
            },
        )
    assert got.status_code == 200
    assert got.headers["x-request-id"] == "req-42"
    seen = app.seen[-1]
    assert seen["raw_path"] == "/api/v1/workspaces/w/files/a%20b.sql"
    assert seen["query"] == "x=1&y=%2F"
    headers = dict(seen["headers"])
    names = [name for name, _ in seen["headers"]]
    assert headers["authorization"] == "Bearer tok-123"
    assert "x-drop-me" not in headers and "proxy-authorization" not in headers
    assert headers.get("connection", "keep-alive") == "keep-alive"  # the proxy's own hop
    # uvicorn trusts 127.0.0.1 as a proxy and already took the client from the header
    assert headers["x-forwarded-for"] == "203.0.113.9"
    assert headers["x-forwarded-proto"] == "http"
    assert headers["x-forwarded-host"] == "replica.example:8443"
    assert headers["host"] == url.removeprefix("http://")
    assert headers["x-request-id"] == "req-42"
    assert names.count("x-forwarded-for") == 1


def test_generates_a_request_id_when_none_or_junk_comes_in(upstream: tuple[Upstream, str]) -> None:
    app, url = upstream
    with proxy_to(url) as proxy:
        plain = httpx.get(f"{proxy}/x")
        junk = httpx.get(f"{proxy}/x", headers={"X-Request-Id": "a" * 500})
    ids = [dict(s["headers"])["x-request-id"] for s in app.seen]
    assert len(ids[0]) == 32 and ids[0] == plain.headers["x-request-id"]
    assert len(ids[1]) == 32 and ids[1] != ids[0] and junk.headers["x-request-id"] == ids[1]


def test_a_replica_forwards_the_request_id_it_answers_with(
    upstream: tuple[Upstream, str],
) -> None:
    """On a serve replica ``RequestIdMiddleware`` runs in front of the proxy and puts
    its id on the response: the Factory must get that same id, generated or given."""
    app, url = upstream
    proxy = ReverseProxy(ProxyConfig(upstreams=(url,)))
    with serve_in_thread(RequestIdMiddleware(_Served(proxy))) as front:
        plain = httpx.get(f"{front}/x")
        given = httpx.get(f"{front}/x", headers={"X-Request-Id": "rq-7"})
    ids = [dict(s["headers"])["x-request-id"] for s in app.seen]
    assert ids[0] == plain.headers["x-request-id"] and len(ids[0]) == 32
    assert ids[1] == given.headers["x-request-id"] == "rq-7"


def test_strips_hop_by_hop_response_headers(upstream: tuple[Upstream, str]) -> None:
    _app, url = upstream
    with proxy_to(url) as proxy:
        got = httpx.get(f"{proxy}/hop")
    assert got.status_code == 201 and got.text == "hop"
    assert "x-private" not in got.headers
    assert "keep-alive" not in got.headers
    assert "proxy-authenticate" not in got.headers
    assert got.headers["x-end-to-end"] == "kept"
    assert got.headers.get_list("set-cookie") == ["a=1", "b=2"]


def test_sends_only_the_clients_own_headers(upstream: tuple[Upstream, str]) -> None:
    app, url = upstream
    with proxy_to(url) as proxy:
        conn = http.client.HTTPConnection("127.0.0.1", int(proxy.rsplit(":", 1)[1]), timeout=10)
        conn.putrequest("GET", "/bare", skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", "front.example")
        conn.endheaders()
        assert conn.getresponse().status == 200
        conn.close()
    names = {name for name, _ in app.seen[-1]["headers"]}
    assert names & {"accept", "accept-encoding", "user-agent"} == set()


def test_cookies_never_cross_between_clients(upstream: tuple[Upstream, str]) -> None:
    app, url = upstream
    with proxy_to(url) as proxy:
        first = httpx.get(f"{proxy}/hop")  # the upstream sets cookies a and b
        assert first.headers.get_list("set-cookie") == ["a=1", "b=2"]
        httpx.get(f"{proxy}/other-user")
        httpx.get(f"{proxy}/own-cookie", headers={"Cookie": "mine=1"})
    assert "cookie" not in dict(app.seen[-2]["headers"]), "a pooled client kept a cookie"
    assert dict(app.seen[-1]["headers"])["cookie"] == "mine=1"


def test_server_sent_events_flow_event_by_event(upstream: tuple[Upstream, str]) -> None:
    app, url = upstream
    with proxy_to(url) as proxy, httpx.stream("GET", f"{proxy}/sse", timeout=10) as response:
        assert response.headers["content-type"] == "text/event-stream"
        lines = response.iter_lines()
        assert next(lines) == "data: one"
        assert not app.release.is_set(), "the first event arrived before the second exists"
        app.release.set()
        rest = [line for line in lines if line]
    assert rest == ["data: two"]


def test_request_body_streams_to_the_upstream(upstream: tuple[Upstream, str]) -> None:
    app, url = upstream

    def body() -> Iterator[bytes]:
        yield b"a" * 1000
        # The second chunk is produced only once the upstream has the first one.
        assert app.first_chunk.wait(10), "the first chunk never reached the upstream"
        yield b"b" * 2000

    with proxy_to(url) as proxy:
        got = httpx.put(f"{proxy}/upload", content=body(), timeout=20)
    assert got.status_code == 200
    assert got.json()["bytes"] == 3000
    assert b"".join(app.chunks) == b"a" * 1000 + b"b" * 2000
    seen = dict(app.seen[-1]["headers"])
    assert "transfer-encoding" not in seen or seen["transfer-encoding"] == "chunked"


def test_sized_body_passes_with_its_length(upstream: tuple[Upstream, str]) -> None:
    app, url = upstream
    with proxy_to(url) as proxy:
        got = httpx.post(f"{proxy}/upload", content=b"x" * 70_000)
    assert got.json()["bytes"] == 70_000
    assert dict(app.seen[-1]["headers"])["content-length"] == "70000"


def test_read_timeout_is_a_504(upstream: tuple[Upstream, str]) -> None:
    _app, url = upstream
    with proxy_to(url, read_timeout=0.5) as proxy:
        started = time.monotonic()
        got = httpx.get(f"{proxy}/slow", timeout=10)
        elapsed = time.monotonic() - started
    assert got.status_code == 504
    assert got.json()["error"] == "factory_timeout"
    assert 0.4 < elapsed < 5


def test_client_disconnect_stops_an_endless_upstream_stream(upstream: tuple[Upstream, str]) -> None:
    app, url = upstream
    with proxy_to(url) as proxy:
        with httpx.stream("GET", f"{proxy}/endless", timeout=10) as response:
            assert next(response.iter_lines()) == ": tick"
        wait_until(app.stream_closed.is_set, 10, "the upstream stream to be closed")


def test_upstream_down_is_a_503_naming_the_factory() -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with proxy_to(dead, connect_retry_seconds=0, retry_after_seconds=7) as proxy:
        got = httpx.post(f"{proxy}/api/v1/workspaces/w/compile", content=b"{}")
    assert got.status_code == 503
    assert got.headers["retry-after"] == "7"
    body = got.json()
    assert body["error"] == "factory_unavailable"
    assert f"the Factory (QUARRY_IDE_UPSTREAM={dead})" in body["message"]


def test_retries_stop_at_the_window() -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with proxy_to(dead, connect_retry_seconds=1.0) as proxy:
        started = time.monotonic()
        got = httpx.get(f"{proxy}/x", timeout=10)
        elapsed = time.monotonic() - started
    assert got.status_code == 503
    assert 0.7 < elapsed < 3


def test_cold_start_retry_succeeds_when_the_upstream_comes_up() -> None:
    port = free_port()
    upstream_url = f"http://127.0.0.1:{port}"
    result: dict[str, httpx.Response] = {}
    before = _retries()
    with proxy_to(upstream_url, connect_retry_seconds=20) as proxy:

        def call() -> None:
            result["response"] = httpx.post(
                f"{proxy}/upload", content=b"payload-after-cold-start", timeout=30
            )

        caller = threading.Thread(target=call)
        caller.start()
        # The upstream starts only after the proxy has seen its connection refused.
        wait_until(lambda: _retries() > before, 10, "a refused connection")
        with serve_at(Upstream(), port):
            caller.join(30)
    got = result["response"]
    assert got.status_code == 200, got.text
    assert got.json()["bytes"] == len(b"payload-after-cold-start")


def test_a_restarted_upstream_gets_a_fresh_connection() -> None:
    """The pooled keep-alive connection dies with the upstream; the next request must
    notice (the end of stream it left) and connect anew, not fail on the dead one."""
    port = free_port()
    with proxy_to(f"http://127.0.0.1:{port}", connect_retry_seconds=0) as proxy:
        with serve_at(Upstream(), port):
            first = httpx.get(f"{proxy}/x", timeout=10)
        with serve_at(Upstream(), port):
            second = httpx.get(f"{proxy}/x", timeout=10)
    assert first.status_code == 200 and second.status_code == 200, second.text


def test_a_large_body_reaches_a_slow_client_whole() -> None:
    """Reading from the upstream pauses while the client is slow (back-pressure), and
    every byte still arrives in order."""
    size = 3 * 1024 * 1024
    payload = bytes(range(256)) * (size // 256)

    async def big(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for start in range(0, size, 65536):
            await send(
                {
                    "type": "http.response.body",
                    "body": payload[start : start + 65536],
                    "more_body": True,
                }
            )
        await send({"type": "http.response.body", "body": b""})

    with serve_in_thread(big) as url, proxy_to(url) as proxy:
        received = bytearray()
        with httpx.stream("GET", f"{proxy}/big", timeout=30) as response:
            for chunk in response.iter_raw(16384):
                received += chunk
                if len(received) < 512 * 1024:
                    time.sleep(0.001)  # a slow reader, not synchronisation
    assert response.status_code == 200 and bytes(received) == payload
