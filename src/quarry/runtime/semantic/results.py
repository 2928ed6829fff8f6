"""Semantic query results, cached in the shared object store with a TTL.

The key covers everything the answer depends on: the tenant, the workspace and
revision (immutable), the query's canonical JSON and the row filters the caller's
principal produced. Equal keys are equal answers, so a dashboard opened by 100
people in one tenant runs its query once; a user whose row filter differs gets an
answer of their own.

Entries live at ``t/<tenant>/semantic/<workspace>/<revision>/<sha256>.arrow`` as an
Arrow IPC stream whose schema metadata records when it was computed and the SQL; an
entry older than the TTL is ignored and overwritten by the next computation. A small
in-process LRU in front of the store serves hot keys without a store round trip,
and concurrent misses for one key in one process compute once (single flight).
A computed answer goes into the LRU before it is returned and into the store on a
writer thread behind it, so a cold request does not wait for an object store round
trip. Across processes two first misses close together (concurrent, or the second
within that write) may each compute once; the store then holds one of the (equal)
answers.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.ipc as ipc

from quarry.catalog.cache import LruCache
from quarry.core.errors import NotFound
from quarry.core.hashing import canonical_json, sha256_hex, short_id
from quarry.store.objects import ObjectStore
from quarry.store.objects.base import tenant_prefix

TRUNCATED = b"quarry.truncated"
_CREATED = b"quarry.created_at"
_SQL = b"quarry.sql"
_PREFIX = "semantic"
_MAX_PENDING = 64  # answers waiting for their store write before a new computation waits

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CachedResult:
    """One computed answer: the rows, when they were computed and the SQL that ran."""

    table: pa.Table
    created_at: float
    sql: str
    digest: str
    # Encoded forms, made on first use: a cached hit answers without re-encoding.
    _encoded: dict[str, bytes] = field(default_factory=dict, compare=False, repr=False)

    def encoded(self, fmt: str, encode: Callable[[pa.Table, str], bytes]) -> bytes:
        found = self._encoded.get(fmt)
        if found is None:
            found = self._encoded[fmt] = encode(self.table, fmt)
        return found

    def peek_encoded(self, fmt: str) -> bytes | None:
        return self._encoded.get(fmt)

    @property
    def truncated(self) -> bool:
        """Cut off at the row limit (see :func:`mark_truncated`)."""
        return (self.table.schema.metadata or {}).get(TRUNCATED) == b"1"

    def etag(self, fmt: str) -> str:
        """Strong, per representation: the same rows as CSV and as JSON differ."""
        return f'"{short_id(sha256_hex(f"{self.digest}:{self.created_at!r}:{fmt}".encode()))}"'

    def age(self, now: float) -> float:
        return max(0.0, now - self.created_at)


def mark_truncated(table: pa.Table) -> pa.Table:
    return table.replace_schema_metadata({**(table.schema.metadata or {}), TRUNCATED: b"1"})


def result_key(
    tenant_id: str,
    workspace_id: str,
    revision_id: str,
    query_key: str,
    row_filters: Any,
) -> str:
    """The object key of one answer; ``row_filters`` is any JSON-able value."""
    for label, value in (("workspace id", workspace_id), ("revision id", revision_id)):
        if not value or "/" in value or value in {".", ".."}:
            raise ValueError(f"invalid {label} for an object key: {value!r}")
    digest = sha256_hex(canonical_json([query_key, row_filters]))
    return f"{tenant_prefix(tenant_id)}/{_PREFIX}/{workspace_id}/{revision_id}/{digest}.arrow"


def encode_entry(result: CachedResult) -> bytes:
    metadata = {_CREATED: repr(result.created_at).encode(), _SQL: result.sql.encode()}
    table = result.table.replace_schema_metadata(
        {**(result.table.schema.metadata or {}), **metadata}
    )
    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def decode_entry(data: bytes, digest: str) -> CachedResult:
    table = ipc.open_stream(pa.py_buffer(data)).read_all()
    metadata = dict(table.schema.metadata or {})
    created = float(metadata.pop(_CREATED, b"0").decode())
    sql = metadata.pop(_SQL, b"").decode()
    return CachedResult(table.replace_schema_metadata(metadata or None), created, sql, digest)


class ResultCache:
    """Shared (object store) + local (LRU) cache of semantic answers with a TTL.

    ``ttl`` 0 turns caching off: every request computes. ``computed`` counts the
    computations this instance ran, which is what a test of "runs once" counts.
    """

    def __init__(
        self,
        store: ObjectStore,
        ttl: float,
        *,
        local_capacity: int = 512,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.ttl = ttl
        self.clock = clock
        self._local: LruCache[str, CachedResult] = LruCache(local_capacity)
        self._flights: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._writes: ThreadPoolExecutor | None = None  # made on the first write
        self._pending = 0  # answers handed to the writer, not yet written (or failed)
        self._owed: Counter[str] = Counter()  # computed, the caller publishes (flush waits)
        self._drained = threading.Condition(self._guard)
        self.computed = 0

    def _fresh(self, result: CachedResult | None) -> CachedResult | None:
        if result is None or result.age(self.clock()) >= self.ttl:
            return None
        return result

    def peek(self, key: str) -> CachedResult | None:
        """A fresh answer held in this process, without touching the store."""
        if self.ttl <= 0:
            return None
        return self._fresh(self._local.get(key))

    def get(self, key: str) -> CachedResult | None:
        """A fresh answer from this process or the shared store; blocking."""
        if self.ttl <= 0:
            return None
        hit = self.peek(key)
        if hit is not None:
            return hit
        try:
            data = self.store.get(key)
        except NotFound:
            return None
        found = self._fresh(decode_entry(data, _digest_of(key)))
        if found is not None:
            self._local.put(key, found)
        return found

    def get_or_compute(
        self,
        key: str,
        compute: Callable[[], tuple[pa.Table, str]],
        *,
        publish: bool = True,
    ) -> tuple[CachedResult, bool]:
        """(answer, was it a hit). ``compute`` returns (rows, SQL); blocking.

        A computed answer is in this process's cache when this returns and is
        written to the shared store behind it, off the caller's path (one object
        store round trip: ~0.5 ms to a local folder, tens of ms to S3): another
        replica asked in that window computes the answer too, as two concurrent
        first misses may. :meth:`flush` waits for the writes. With ``publish``
        false the caller starts that write itself (:meth:`publish`), say once its
        response is sent, so the write does not compete with sending it."""
        hit = self.get(key)
        if hit is not None:
            return hit, True
        with self._guard:
            flight = self._flights.setdefault(key, threading.Lock())
        waited = not flight.acquire(blocking=False)
        if waited:
            flight.acquire()
        try:
            # Another thread of this process computed it while this one waited. (One
            # that did not wait looked a moment ago: a second store read would only
            # find an answer another replica finished in between, which two
            # concurrent first misses may each compute anyway.)
            hit = self.get(key) if waited else None
            if hit is not None:
                return hit, True
            with self._drained:
                # A store slower than the answers it is given slows the answers (on
                # their worker threads), not the process's memory.
                self._drained.wait_for(lambda: self._pending < _MAX_PENDING, 60.0)
            table, sql = compute()
            with self._guard:
                self.computed += 1
            result = CachedResult(table, self.clock(), sql, _digest_of(key))
            if self.ttl > 0:
                self._local.put(key, result)
                if publish:
                    self.publish(key, result)
                else:
                    with self._guard:
                        if len(self._owed) >= 4096:  # callers that never published
                            self._owed.clear()
                        self._owed[key] += 1
            return result, False
        finally:
            flight.release()
            with self._guard:
                if self._flights.get(key) is flight and not flight.locked():
                    self._flights.pop(key, None)

    def publish(self, key: str, result: CachedResult) -> None:
        """Write ``result`` to the shared store on the writer thread (never on the
        caller's: the HTTP route calls this on the event loop). A failed write is
        logged: the answer was given, and the next replica asked computes its own."""
        if self.ttl <= 0:
            return
        with self._guard:
            if self._owed[key] > 0:  # counted when computed with publish=False
                self._owed[key] -= 1
                if not self._owed[key]:
                    del self._owed[key]
            self._pending += 1
            if self._writes is None:
                self._writes = ThreadPoolExecutor(2, thread_name_prefix="semantic-store")
            writes = self._writes
        writes.submit(self._write, key, result)

    def _write(self, key: str, result: CachedResult) -> None:
        try:
            self.store.put(key, encode_entry(result))
        except Exception:
            log.warning("semantic cache: could not store %s", key, exc_info=True)
        finally:
            with self._drained:
                self._pending -= 1
                self._drained.notify_all()

    def flush(self, timeout: float | None = 60.0) -> bool:
        """Wait until every answer computed so far is in the shared store (or its
        write failed), including those whose caller has yet to :meth:`publish`;
        False if that took longer than ``timeout`` seconds."""
        with self._drained:
            return self._drained.wait_for(lambda: not self._pending and not self._owed, timeout)

    def close(self) -> None:
        with self._guard:
            writes, self._writes = self._writes, None
        if writes is not None:
            writes.shutdown(wait=True)


def _digest_of(key: str) -> str:
    return key.rsplit("/", 1)[-1].removesuffix(".arrow")
