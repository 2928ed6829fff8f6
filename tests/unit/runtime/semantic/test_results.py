"""The semantic result cache on a real (local folder) object store, with a clock the
test moves: TTL, sharing between instances, keys, and the stored format."""

from __future__ import annotations

import threading
from pathlib import Path

import pyarrow as pa
import pytest

from quarry.core.errors import BadRequest
from quarry.runtime.semantic import results as results_module
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
    one.flush()  # the store write runs behind the answer
    got, hit = two.get_or_compute(KEY, _compute(calls, 2))
    assert hit and calls == [1] and got.table.equals(made.table)
    assert got.etag("json") == made.etag("json") != made.etag("csv")
    clock.now += 61  # expired in the store too
    assert two.get(KEY) is None


class GatedStore(ObjectStore):
    """The real store, whose writes wait until the test opens the gate."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner
        self.url = inner.url
        self.gate = threading.Event()

    def put(self, key: str, data: bytes) -> None:
        assert self.gate.wait(30), "the test never opened the gate"
        self.inner.put(key, data)

    def get(self, key: str) -> bytes:
        return self.inner.get(key)

    def exists(self, key: str) -> bool:
        return self.inner.exists(key)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    async def put_async(self, key: str, data: bytes) -> None:
        raise AssertionError("the cache writes synchronously, on its writer thread")

    async def get_async(self, key: str) -> bytes:
        return await self.inner.get_async(key)

    def check(self) -> None:
        self.inner.check()


def test_the_store_write_is_off_the_answer_path(store: ObjectStore) -> None:
    """A computed answer is returned (and hit in this process) before the shared
    store has it; the store has it once flushed, and another instance then hits."""
    gated = GatedStore(store)
    one = ResultCache(gated, 60)
    calls: list[int] = []
    made, hit = one.get_or_compute(KEY, _compute(calls, 1))  # returns with the gate shut
    assert not hit and not store.exists(KEY)
    again, hit = one.get_or_compute(KEY, _compute(calls, 2))
    assert hit and again is made and calls == [1]
    gated.gate.set()
    assert one.flush()
    assert store.exists(KEY)
    got, hit = ResultCache(store, 60).get_or_compute(KEY, _compute(calls, 3))
    assert hit and got.table.equals(made.table) and calls == [1]
    one.close()


def test_a_slow_store_holds_back_new_computations(
    store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Answers waiting for their write are bounded: past the bound a new
    computation waits for the writer instead of piling answers up in memory."""
    monkeypatch.setattr(results_module, "_MAX_PENDING", 1)
    gated = GatedStore(store)
    cache = ResultCache(gated, 60)
    calls: list[int] = []
    cache.get_or_compute(KEY, _compute(calls, 1))  # its write waits at the gate
    other = result_key("acme", "ws1", "rev1", '{"measures":["o.n"]}', [])
    done = threading.Event()
    worker = threading.Thread(
        target=lambda: (cache.get_or_compute(other, _compute(calls, 2)), done.set())
    )
    worker.start()
    assert not done.wait(0.3) and calls == [1]  # held back, not computed
    gated.gate.set()
    assert done.wait(30) and calls == [1, 2]
    worker.join()
    assert cache.flush() and store.exists(KEY) and store.exists(other)
    cache.close()


def test_a_caller_that_publishes_itself(store: ObjectStore) -> None:
    """``publish=False`` (the HTTP route, which writes once its response is sent):
    nothing is written until the caller publishes, and flush waits for it."""
    cache = ResultCache(store, 60)
    calls: list[int] = []
    made, hit = cache.get_or_compute(KEY, _compute(calls, 1), publish=False)
    assert not hit and not store.exists(KEY)
    assert cache.flush(timeout=0.01) is False  # owed by the caller
    cache.publish(KEY, made)
    assert cache.flush() and store.exists(KEY)
    cache.close()


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
