from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import psycopg

from tests.support.tenancy import WORKFLOW


@contextmanager
def tenant_row_locked(database_url: str, tenant: str) -> Iterator[psycopg.Connection]:
    """Hold ``tenants.<tenant>`` FOR UPDATE: creating a run for that tenant (its
    foreign-key check takes FOR KEY SHARE on the row) blocks until the lock is
    released by ``conn.rollback()``; other tenants' runs are not affected."""
    dsn = database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(dsn) as conn:
        conn.execute("SELECT id FROM tenants WHERE id = %s FOR UPDATE", (tenant,))
        try:
            yield conn
        finally:
            conn.rollback()


def async_client(url: str, connections: int, secret: str | None = None) -> httpx.AsyncClient:
    """A client whose idle connections expire well before uvicorn's keep-alive timeout
    (5 s): reusing one the server is closing just then is a ReadError, not a refusal."""
    headers = {} if secret is None else {"Authorization": f"Bearer {secret}"}
    return httpx.AsyncClient(
        base_url=url,
        headers=headers,
        timeout=120,
        limits=httpx.Limits(
            max_connections=connections + 10,
            max_keepalive_connections=connections + 10,
            keepalive_expiry=2.0,
        ),
    )


def post_runs(
    client: httpx.AsyncClient, path: str, n: int
) -> list[asyncio.Task[tuple[float, httpx.Response]]]:
    """``n`` concurrent run creations; each task gives (seconds, response)."""

    async def one() -> tuple[float, httpx.Response]:
        started = time.monotonic()
        got = await client.post(path, json={"name": WORKFLOW})
        return time.monotonic() - started, got

    return [asyncio.create_task(one()) for _ in range(n)]
