"""Warm database connections for agent turns, reused from one turn to the next.

Opening a run's sandboxed DuckDB costs tens of milliseconds of CPU (the in-memory
database, one view per dataset file, the lock-down), which on a worker carrying
hundreds of turns at once is most of a turn's cost: 200 turns opening their own
would spend seconds of CPU doing it. An agent's SQL is read-only (a single SELECT on
DuckDB, a ``READ ONLY`` transaction on Postgres: :mod:`quarry.agents.tools.readonly`),
so it leaves nothing behind in a connection; a turn that ended normally hands its
:class:`Connections` back here, and the next turn of the same tenant, workspace and
revision takes it instead of opening its own.

* **Exclusive first**: the first ``exclusive`` (4) turns of a revision at once each
  get connections of their own; past that, turns share the least used of those open
  (connections are thread-safe, each DuckDB statement on its own cursor) rather than
  open hundreds at once. One caveat of sharing: a cancel or deadline interrupting a
  turn's statement interrupts the statements other turns run on the same database at
  that instant; they get an error result, which their model reads and retries.
* **Scoped**: keyed by tenant, workspace and revision; never shared across them.
* **Only after a clean end**: connections a turn that failed, was stopped or
  cancelled used are closed once no turn shares them (a statement may have been
  interrupted mid-way).
* **Bounded**: at most ``max_idle`` idle sets in the process, each closed after
  ``idle_seconds`` unused (256 and 60 s).

Not pooled: process isolation (``QUARRY_TENANT_SQL_ISOLATION=process``), where each
run's databases live in a child process of that run.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from quarry.runtime.connectors import BlobCache, Connections
from quarry.runtime.connectors.policy import current_policy
from quarry.runtime.connectors.secrets import SecretLookup
from quarry.runtime.source import RevisionSource

_Key = tuple[str, str, str, str]


@dataclass(eq=False)
class _Entry:
    key: _Key
    connections: Connections
    users: int = 0
    tainted: bool = False
    idle_since: float = 0.0


class ConnectionsPool:
    def __init__(
        self, *, max_idle: int = 256, idle_seconds: float = 60.0, exclusive: int = 4
    ) -> None:
        self.max_idle = max_idle
        self.idle_seconds = idle_seconds
        self.exclusive = exclusive
        self._lock = threading.Lock()
        self._entries: dict[_Key, list[_Entry]] = {}
        self.opened = 0
        self.reused = 0
        self.shared = 0

    @staticmethod
    def _key(source: RevisionSource, cache: BlobCache) -> _Key:
        return (source.tenant_id, source.workspace.id, source.revision_id, str(cache.root))

    def _take(self, key: _Key, make: Callable[[], Connections]) -> _Entry:
        """An idle entry (the warmest), else a busy one to share once ``exclusive``
        are open for the key, else a new one (``make`` is cheap: databases open on
        first use)."""
        with self._lock:
            entries = self._entries.setdefault(key, [])
            idle = [e for e in entries if e.users == 0]
            if idle:
                chosen = max(idle, key=lambda e: e.idle_since)
                self.reused += 1
            elif len(entries) >= self.exclusive:
                chosen = min(entries, key=lambda e: e.users)
                self.shared += 1
            else:
                chosen = _Entry(key, make())
                entries.append(chosen)
                self.opened += 1
            chosen.users += 1
            return chosen

    def _leave(self, entry: _Entry, clean: bool) -> None:
        closing: list[Connections] = []
        now = time.monotonic()
        with self._lock:
            entry.users -= 1
            entry.tainted = entry.tainted or not clean or self.max_idle <= 0
            if entry.users == 0:
                entry.idle_since = now
                if entry.tainted:
                    self._drop(entry)
                    closing.append(entry.connections)
            closing += self._evict(now)
        for connections in closing:
            connections.close()

    def _drop(self, entry: _Entry) -> None:
        entries = self._entries.get(entry.key, [])
        if entry in entries:
            entries.remove(entry)
        if not entries:
            self._entries.pop(entry.key, None)

    def _evict(self, now: float) -> list[Connections]:
        idle = sorted(
            (e for es in self._entries.values() for e in es if e.users == 0),
            key=lambda e: e.idle_since,
        )
        stale = [e for e in idle if now - e.idle_since >= self.idle_seconds]
        fresh = [e for e in idle if now - e.idle_since < self.idle_seconds]
        stale += fresh[: max(0, len(fresh) - self.max_idle)]
        for entry in stale:
            self._drop(entry)
        return [e.connections for e in stale]

    @contextmanager
    def checkout(
        self,
        source: RevisionSource,
        cache: BlobCache,
        *,
        secrets: SecretLookup | None = None,
        keep: Callable[[], bool] | None = None,
    ) -> Iterator[Connections]:
        """Connections for one turn; kept for reuse when the block ends without an
        exception (and ``keep()`` answers True: not stopped), closed otherwise (once
        no other turn shares them)."""
        key = self._key(source, cache)
        if current_policy().tenant_sql_isolation == "process":
            # Each run's databases live in a child process of that run: never kept.
            connections = self._make(source, cache, secrets)
            try:
                yield connections
            finally:
                connections.close()
            return
        entry = self._take(key, lambda: self._make(source, cache, secrets))
        clean = False
        try:
            yield entry.connections
            clean = keep is None or keep()
        finally:
            self._leave(entry, clean)

    @staticmethod
    def _make(
        source: RevisionSource, cache: BlobCache, secrets: SecretLookup | None
    ) -> Connections:
        if secrets is None:
            return Connections(source, cache)
        return Connections(source, cache, secrets=secrets)

    def close(self) -> None:
        with self._lock:
            entries = [e for es in self._entries.values() for e in es]
            self._entries = {}
        for entry in entries:
            entry.connections.close()


_POOL = ConnectionsPool()


def turn_connections() -> ConnectionsPool:
    """The process's pool (worker threads of one process share it)."""
    return _POOL
