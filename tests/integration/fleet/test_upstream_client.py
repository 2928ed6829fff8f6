"""The proxy's upstream client reading responses, and its pool, against real sockets.

The upstream is a scripted raw asyncio server (``tests.support.scripted_upstream``)
that writes crafted responses and counts the connections it accepted.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from quarry.fleet.upstream_client import (
    ConnectionBroke,
    PoolTimeout,
    ProtocolFailure,
    ReadTimeout,
    Timeouts,
    UpstreamPool,
)
from tests.support.scripted_upstream import (
    OK,
    Upstream,
    body_of,
    get,
    keep_answering,
    run,
    until,
)


def test_sized_response_and_keep_alive_reuse() -> None:
    async def main() -> None:
        response = b"HTTP/1.1 200 OK\r\nX-Case: Kept\r\nContent-Length: 5\r\n\r\nhello"
        async with Upstream(keep_answering(response)) as up:
            pool = UpstreamPool()
            first = await get(pool, up)
            assert first.status == 200
            assert first.headers == [(b"X-Case", b"Kept"), (b"Content-Length", b"5")]
            assert await body_of(first) == b"hello"
            second = await get(pool, up)
            assert await body_of(second) == b"hello"
            assert up.accepted == 1, "the idle keep-alive connection was not reused"
            await pool.aclose()

    run(main)


def test_chunked_response_in_pieces() -> None:
    async def main() -> None:
        async def handler(reader: asyncio.StreamReader, writer: Any, n: int) -> None:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                for piece in (b"5\r\nhello\r\n", b"6\r\n world\r\n", b"0\r\n\r\n"):
                    writer.write(piece)
                    await writer.drain()

        async with Upstream(handler) as up:
            pool = UpstreamPool()
            assert await body_of(await get(pool, up)) == b"hello world"
            assert await body_of(await get(pool, up)) == b"hello world"
            assert up.accepted == 1
            await pool.aclose()

    run(main)


def test_body_until_close_is_whole_and_the_connection_not_reused() -> None:
    async def main() -> None:
        async def handler(reader: asyncio.StreamReader, writer: Any, n: int) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nfirst part, ")
            await writer.drain()
            writer.write(b"second part")
            await writer.drain()

        async with Upstream(handler) as up:
            pool = UpstreamPool()
            assert await body_of(await get(pool, up)) == b"first part, second part"
            assert await body_of(await get(pool, up)) == b"first part, second part"
            assert up.accepted == 2
            assert pool.open_connections == 0
            await pool.aclose()

    run(main)


def test_an_idle_connection_the_upstream_closed_is_not_reused() -> None:
    async def main() -> None:
        async def handler(reader: asyncio.StreamReader, writer: Any, n: int) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(OK)  # keep-alive by HTTP/1.1 default, then closed anyway
            await writer.drain()

        async with Upstream(handler) as up:
            pool = UpstreamPool()
            assert await body_of(await get(pool, up)) == b"ok"
            idle = pool._idle[up.origin]
            await until(lambda: all(conn.closed for conn in idle), "the client to see the EOF")
            assert await body_of(await get(pool, up)) == b"ok"
            assert up.accepted == 2
            await pool.aclose()

    run(main)


def test_unexpected_bytes_make_a_connection_unusable() -> None:
    async def main() -> None:
        async with Upstream(keep_answering(OK + b"HTTP/1.1 200 OK\r\n\r\nextra")) as up:
            pool = UpstreamPool()
            assert await body_of(await get(pool, up)) == b"ok"
            assert await body_of(await get(pool, up)) == b"ok"
            assert up.accepted == 2
            await pool.aclose()

    run(main)


def test_max_connections_bounds_the_pool() -> None:
    async def main() -> None:
        release = asyncio.Event()

        async def handler(reader: asyncio.StreamReader, writer: Any, n: int) -> None:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nhe")
                await writer.drain()
                await release.wait()
                release.clear()
                writer.write(b"ld")
                await writer.drain()

        async with Upstream(handler) as up:
            pool = UpstreamPool(max_connections=1)
            first = await get(pool, up)  # holds the only connection until read
            short = Timeouts(connect=5, read=5, write=5, pool=0.2)
            with pytest.raises(PoolTimeout):
                await get(pool, up, t=short)
            waiting = asyncio.ensure_future(get(pool, up))
            await until(lambda: len(pool._waiters) == 1, "the second request to wait")
            release.set()
            assert await body_of(first) == b"held"
            second = await waiting
            release.set()
            assert await body_of(second) == b"held"
            assert up.accepted == 1 and pool.open_connections == 1
            await pool.aclose()

    run(main)


def test_read_timeouts_for_the_head_and_between_chunks() -> None:
    async def main() -> None:
        async def handler(reader: asyncio.StreamReader, writer: Any, n: int) -> None:
            await reader.readuntil(b"\r\n\r\n")
            if n == 2:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nsome")
                await writer.drain()
            await reader.read()  # silent until the client gives up

        async with Upstream(handler) as up:
            pool = UpstreamPool()
            short = Timeouts(connect=5, read=0.2, write=5, pool=5)
            with pytest.raises(ReadTimeout):
                await get(pool, up, t=short)
            response = await get(pool, up, t=short)
            assert await response.read() == b"some"
            with pytest.raises(ReadTimeout):
                await response.read()
            assert pool.open_connections == 0
            await pool.aclose()

    run(main)


def test_a_malformed_response_is_a_protocol_failure() -> None:
    async def main() -> None:
        async with Upstream(keep_answering(b"NOT HTTP AT ALL\r\n\r\n")) as up:
            pool = UpstreamPool()
            with pytest.raises(ProtocolFailure):
                await get(pool, up)
            assert pool.open_connections == 0
            await pool.aclose()

    run(main)


def test_a_body_cut_short_is_a_broken_connection() -> None:
    async def main() -> None:
        async def handler(reader: asyncio.StreamReader, writer: Any, n: int) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf")
            await writer.drain()

        async with Upstream(handler) as up:
            pool = UpstreamPool()
            response = await get(pool, up)
            with pytest.raises(ConnectionBroke):
                await body_of(response)
            assert pool.open_connections == 0
            await pool.aclose()

    run(main)


def test_head_interim_and_bodiless_responses() -> None:
    async def main() -> None:
        async def handler(reader: asyncio.StreamReader, writer: Any, n: int) -> None:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                if head.startswith(b"HEAD"):
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
                elif b"/continue" in head:
                    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n" + OK)
                else:
                    writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
                await writer.drain()

        async with Upstream(handler) as up:
            pool = UpstreamPool()
            head = await get(pool, up, method=b"HEAD")
            assert head.status == 200 and await body_of(head) == b""
            interim = await get(pool, up, b"/continue")
            assert interim.status == 200 and await body_of(interim) == b"ok"
            empty = await get(pool, up)
            assert empty.status == 204 and await body_of(empty) == b""
            again = await get(pool, up)
            assert again.status == 204
            # HEAD's connection is not reused; the others share the second one.
            assert up.accepted == 2
            await pool.aclose()

    run(main)
