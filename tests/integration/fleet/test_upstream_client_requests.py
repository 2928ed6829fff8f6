"""The proxy's upstream client sending requests, against real sockets: the head as
given, bodies framed, stale keep-alive connections retried (never a body), TLS.

The upstream is a scripted raw asyncio server (``tests.support.scripted_upstream``).
"""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from quarry.fleet.upstream_client import ConnectFailed, ConnectionBroke, Origin, UpstreamPool
from tests.support.scripted_upstream import (
    FAST,
    OK,
    Handler,
    RecordingPool,
    Upstream,
    body_of,
    get,
    keep_answering,
    run,
    until,
)
from tests.support.services import free_port


def test_request_head_is_exactly_the_given_headers() -> None:
    async def main() -> None:
        seen: list[bytes] = []

        async def handler(reader: asyncio.StreamReader, writer: Any, n: int) -> None:
            seen.append(await reader.readuntil(b"\r\n\r\n"))
            writer.write(OK)
            await writer.drain()

        async with Upstream(handler) as up:
            pool = UpstreamPool()
            headers = [(b"Host", b"factory:8000"), (b"x-request-id", b"r1")]
            await body_of(await get(pool, up, b"/p/a%20b?x=1", headers=headers))
            await pool.aclose()
        assert seen == [
            b"GET /p/a%20b?x=1 HTTP/1.1\r\nHost: factory:8000\r\nx-request-id: r1\r\n\r\n"
        ]
        with pytest.raises(ValueError, match="CR, LF"):
            await get(UpstreamPool(), up, headers=[(b"x-bad", b"a\r\nx-injected: 1")])

    run(main)


def _stale_then_fine() -> Handler:
    """Connection 1 answers once, then takes the next request and closes without a
    byte (a keep-alive the upstream dropped just as we reused it); others answer."""

    async def handler(reader: asyncio.StreamReader, writer: Any, n: int) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(OK)
        await writer.drain()
        await reader.readuntil(b"\r\n\r\n")
        if n > 1:
            writer.write(OK)
            await writer.drain()

    return handler


def test_a_stale_reused_connection_is_retried_once_on_a_fresh_one() -> None:
    async def main() -> None:
        async with Upstream(_stale_then_fine()) as up:
            pool = UpstreamPool()
            assert await body_of(await get(pool, up)) == b"ok"
            assert await body_of(await get(pool, up)) == b"ok"
            assert up.accepted == 2
            await pool.aclose()

    run(main)


def test_a_request_body_is_never_sent_twice() -> None:
    async def main() -> None:
        pulled: list[int] = []

        async def body() -> AsyncIterator[bytes]:
            pulled.append(1)
            yield b"payload"

        async with Upstream(_stale_then_fine()) as up:
            pool = UpstreamPool()
            assert await body_of(await get(pool, up)) == b"ok"
            headers = [(b"Host", b"u"), (b"Content-Length", b"7")]
            with pytest.raises(ConnectionBroke):
                await get(pool, up, method=b"POST", headers=headers, body=body())
            assert pulled == [1] and up.accepted == 1
            await pool.aclose()

    run(main)


def test_request_bodies_sized_and_chunked_on_the_wire() -> None:
    async def main() -> None:
        received: list[bytes] = []

        async def handler(reader: asyncio.StreamReader, writer: Any, n: int) -> None:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                if b"chunked" in head:
                    rest = await reader.readuntil(b"0\r\n\r\n")
                else:
                    rest = await reader.readexactly(6)
                received.append(head + rest)
                writer.write(OK)
                await writer.drain()

        async def body() -> AsyncIterator[bytes]:
            yield b"abc"
            yield b""
            yield b"def"

        async with Upstream(handler) as up:
            pool = UpstreamPool()
            sized = [(b"Host", b"u"), (b"Content-Length", b"6")]
            await body_of(await get(pool, up, method=b"PUT", headers=sized, body=body()))
            await body_of(await get(pool, up, method=b"PUT", body=body()))
            await pool.aclose()
        assert received[0] == b"PUT / HTTP/1.1\r\nHost: u\r\nContent-Length: 6\r\n\r\nabcdef"
        assert received[1] == (
            b"PUT / HTTP/1.1\r\nHost: upstream\r\ntransfer-encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n"
        )

    run(main)


def test_a_refused_connection_is_connect_failed() -> None:
    async def main() -> None:
        pool = UpstreamPool()
        with pytest.raises(ConnectFailed):
            await pool.request(
                Origin("http", "127.0.0.1", free_port()), b"GET", b"/", [], timeouts=FAST
            )
        assert pool.open_connections == 0
        await pool.aclose()

    run(main)


def test_an_answer_before_the_whole_upload_is_the_response() -> None:
    """An upstream may refuse an upload early (``413``) and close: that answer is what
    the caller gets, not a broken connection."""

    async def main() -> None:
        async def handler(reader: asyncio.StreamReader, writer: Any, n: int) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 3\r\n\r\nbig")
            await writer.drain()

        pool = RecordingPool()

        async def body() -> AsyncIterator[bytes]:
            yield b"x" * 10
            await until(lambda: pool.connections[0].closed, "the upstream to close")
            yield b"y" * 10

        async with Upstream(handler) as up:
            headers = [(b"Host", b"u"), (b"Content-Length", b"20")]
            response = await get(pool, up, method=b"POST", headers=headers, body=body())
            assert response.status == 413 and await body_of(response) == b"big"
            assert pool.open_connections == 0
            await pool.aclose()

    run(main)


def test_https_upstream(tmp_path: Path) -> None:
    """TLS with a certificate the client's context trusts, host name checked."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    client_tls = ssl.create_default_context(cafile=str(cert))

    async def main() -> None:
        async with Upstream(keep_answering(OK), tls=server_tls) as up:
            pool = RecordingPool(ssl_context=client_tls)
            assert await body_of(await get(pool, up)) == b"ok"
            assert await body_of(await get(pool, up)) == b"ok"
            assert up.accepted == 1
            assert pool.connections[0].transport.get_extra_info("sslcontext") is client_tls
            await pool.aclose()
            with pytest.raises(ConnectFailed):  # the system's trust store has no such CA
                await get(UpstreamPool(), up)

    run(main)
