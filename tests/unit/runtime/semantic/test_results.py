"""The semantic result cache on a real (local folder) object store, with a clock the
test moves: TTL, sharing between instances, keys, and the stored format."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from quarry.core.errors import BadRequest
from quarry.runtime.semantic.formats import choose_format
from quarry.runtime.semantic.results import (
    CachedResult,
    ResultCache,
    decode_entry,
    encode_entry,
    result_key,
)
from quarry.store.objects import ObjectStore, open_object_store


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> ObjectStore:
    return open_object_store((tmp_path / "blobs").as_uri())


def _compute(calls: list[int], value: int):  # type: ignore[no-untyped-def]
    def compute() -> tuple[pa.Table, str]:
        calls.append(value)
        return pa.table({"n": [value]}), "SELECT $1"

    return compute


KEY = result_key("acme", "ws1", "rev1", '{"measures":["o.r"]}', [])


def test_hit_until_the_ttl_then_recomputed(store: ObjectStore) -> None:
    clock = Clock()
    cache = ResultCache(store, 60, clock=clock)
    calls: list[int] = []
    first, hit = cache.get_or_compute(KEY, _compute(calls, 1))
    assert not hit and first.table.column("n").to_pylist() == [1]
    clock.now += 59
    again, hit = cache.get_or_compute(KEY, _compute(calls, 2))
    assert hit and again.table.column("n").to_pylist() == [1]
    clock.now += 2
    fresh, hit = cache.get_or_compute(KEY, _compute(calls, 3))
    assert not hit and fresh.table.column("n").to_pylist() == [3]
    assert calls == [1, 3] and cache.computed == 2


def test_a_second_instance_shares_through_the_store(store: ObjectStore) -> None:
    clock = Clock()
    calls: list[int] = []
    one = ResultCache(store, 60, clock=clock)
    two = ResultCache(store, 60, clock=clock)
    made, _ = one.get_or_compute(KEY, _compute(calls, 1))
    got, hit = two.get_or_compute(KEY, _compute(calls, 2))
    assert hit and calls == [1] and got.table.equals(made.table)
    assert got.etag("json") == made.etag("json") != made.etag("csv")
    clock.now += 61  # expired in the store too
    assert two.get(KEY) is None


def test_ttl_zero_never_stores(store: ObjectStore) -> None:
    cache = ResultCache(store, 0)
    calls: list[int] = []
    cache.get_or_compute(KEY, _compute(calls, 1))
    cache.get_or_compute(KEY, _compute(calls, 2))
    assert calls == [1, 2] and not store.exists(KEY)


def test_keys_separate_tenants_revisions_queries_and_row_filters() -> None:
    keys = {
        result_key("acme", "ws1", "rev1", "q", []),
        result_key("globex", "ws1", "rev1", "q", []),
        result_key("acme", "ws1", "rev2", "q", []),
        result_key("acme", "ws1", "rev1", "q2", []),
        result_key("acme", "ws1", "rev1", "q", [["o.tenant", ["acme"]]]),
    }
    assert len(keys) == 5
    assert result_key("acme", "ws1", "rev1", "q", []).startswith("t/acme/semantic/ws1/rev1/")
    with pytest.raises(ValueError, match="workspace id"):
        result_key("acme", "../x", "rev1", "q", [])


def test_the_stored_entry_round_trips_types_and_sql() -> None:
    table = pa.table({"d": pa.array([1.5, None]), "s": ["a", "b"]})
    entry = CachedResult(table, 123.25, "SELECT 'x'", "d" * 64)
    back = decode_entry(encode_entry(entry), "d" * 64)
    assert back.table.equals(table) and back.table.schema.metadata is None
    assert (back.created_at, back.sql) == (123.25, "SELECT 'x'")


def test_format_from_parameter_then_accept() -> None:
    assert choose_format(None, None) == "json"
    assert choose_format(None, "text/csv;q=0.9, */*") == "csv"
    assert choose_format(None, "application/vnd.apache.arrow.stream") == "arrow"
    assert choose_format("parquet", "text/csv") == "parquet"
    with pytest.raises(BadRequest):
        choose_format("xlsx", None)


class Closable:
    """Stands for a run's warehouse connections: only ``close`` matters here."""

    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


def test_evicted_connections_close_after_their_last_query() -> None:
    from quarry.runtime.semantic.service import _OpenConnections

    opened = _OpenConnections(1)
    first, second = Closable(), Closable()
    with opened.lease(("ws", "rev1"), lambda: first) as got:  # type: ignore[arg-type,return-value]
        assert got is first
        # another revision pushes rev1 out while a query still uses it
        with opened.lease(("ws", "rev2"), lambda: second):  # type: ignore[arg-type,return-value]
            assert not first.closed
        assert not first.closed and not second.closed
    assert first.closed and not second.closed
    opened.close()
    assert second.closed
