"""Warm connections for agent turns (quarry.agents.pool): reused after a clean turn,
shared past the exclusive ones, closed after a failed or stopped turn, never shared
across cache roots (the key's scope)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

import pytest

from quarry.agents.pool import ConnectionsPool
from quarry.runtime.connectors import BlobCache, Connections
from quarry.runtime.connectors.base import BoundSql
from tests.integration.agents.conftest import Workspace


def _rows(connections: Connections) -> int:
    table = connections.get("local").query(BoundSql("SELECT count(*) AS n FROM orders", ()))
    return int(table.column(0)[0].as_py())


def _fail_inside(pool: ConnectionsPool, ws: Workspace) -> Connections:
    with pool.checkout(ws.source, ws.cache) as connections:
        _rows(connections)
        raise RuntimeError(connections)


def test_a_clean_turn_hands_its_connections_to_the_next(
    make_workspace: Callable[..., Workspace],
) -> None:
    ws = make_workspace({})
    pool = ConnectionsPool()
    with pool.checkout(ws.source, ws.cache) as first:
        count = _rows(first)
    with pool.checkout(ws.source, ws.cache) as second:
        assert second is first
        assert _rows(second) == count > 0
    assert (pool.opened, pool.reused) == (1, 1)
    pool.close()


def test_past_the_exclusive_ones_turns_share(make_workspace: Callable[..., Workspace]) -> None:
    ws = make_workspace({})
    pool = ConnectionsPool(exclusive=3)
    with contextlib.ExitStack() as stack:
        held = [stack.enter_context(pool.checkout(ws.source, ws.cache)) for _ in range(7)]
        assert len({id(c) for c in held}) == 3
        assert all(_rows(c) > 0 for c in held)
    assert (pool.opened, pool.shared) == (3, 4)
    pool.close()


def test_a_failed_or_stopped_turn_closes_them(
    make_workspace: Callable[..., Workspace], tmp_path: Path
) -> None:
    ws = make_workspace({})
    pool = ConnectionsPool()
    with pytest.raises(RuntimeError) as raised:
        _fail_inside(pool, ws)
    failed = raised.value.args[0]
    with pool.checkout(ws.source, ws.cache, keep=lambda: False) as stopped:
        assert stopped is not failed
        _rows(stopped)
    with pool.checkout(ws.source, ws.cache) as fresh:
        assert fresh is not stopped and fresh is not failed
    # Another cache root is another scope: not shared.
    with pool.checkout(ws.source, BlobCache(tmp_path / "other")) as other:
        assert other is not fresh
    assert (pool.opened, pool.reused) == (4, 0)
    pool.close()
