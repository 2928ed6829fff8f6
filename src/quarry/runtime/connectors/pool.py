"""Driver connections kept open between runs of a long-lived process (a worker, a
Factory running runs in-process), so a run does not pay a new login.

A connection is returned at the end of a run only when it can be reset to a fresh
session (the connector decides: Postgres runs ``DISCARD ALL``, the reset PgBouncer
uses, outside any transaction), and is handed only to a run whose resolved
connection values — host address, user, password, database — are exactly the ones
it was opened with (the key is a digest of them, never logged). At most
``max_per_key`` idle connections per key and ``max_total`` in all are kept, each for
``idle_seconds``; a taken connection is checked alive before use.

With ``QUARRY_TENANT_SQL_ISOLATION=process`` a run's connectors live in a child
process that ends with the run, so nothing is kept between runs there.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

C = TypeVar("C")


def pool_key(kind: str, values: Mapping[str, Any]) -> str:
    """A digest of everything a connection was opened with."""
    text = repr((kind, sorted((str(k), repr(v)) for k, v in values.items())))
    return hashlib.sha256(text.encode()).hexdigest()


class IdlePool(Generic[C]):
    """Idle connections by key, newest first; thread-safe."""

    def __init__(
        self,
        close: Callable[[C], None],
        *,
        max_per_key: int = 4,
        max_total: int = 64,
        idle_seconds: float = 60.0,
    ) -> None:
        self._close = close
        self.max_per_key = max_per_key
        self.max_total = max_total
        self.idle_seconds = idle_seconds
        self._lock = threading.Lock()
        self._idle: dict[str, list[tuple[float, C]]] = {}
        atexit.register(self.clear)

    def take(self, key: str) -> C | None:
        """The newest idle connection of ``key`` (None if none is fresh)."""
        expired: list[C] = []
        found: C | None = None
        now = time.monotonic()
        with self._lock:
            entries = self._idle.get(key, [])
            while entries:
                since, conn = entries.pop()
                if now - since <= self.idle_seconds:
                    found = conn
                    break
                expired.append(conn)
            if not entries:
                self._idle.pop(key, None)
        for conn in expired:
            self._quietly_close(conn)
        return found

    def give(self, key: str, conn: C) -> None:
        """Keep ``conn`` (already reset) for the next run of ``key``, or close it when
        the pool is full."""
        with self._lock:
            entries = self._idle.setdefault(key, [])
            total = sum(len(e) for e in self._idle.values())
            if len(entries) < self.max_per_key and total < self.max_total:
                entries.append((time.monotonic(), conn))
                return
        self._quietly_close(conn)

    def size(self, key: str | None = None) -> int:
        with self._lock:
            if key is not None:
                return len(self._idle.get(key, []))
            return sum(len(e) for e in self._idle.values())

    def clear(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, {}
        for entries in idle.values():
            for _since, conn in entries:
                self._quietly_close(conn)

    def _quietly_close(self, conn: C) -> None:
        with contextlib.suppress(Exception):
            self._close(conn)
