"""Warm database connections for agent turns, reused from one turn to the next.

Opening a run's sandboxed DuckDB costs tens of milliseconds of CPU (the in-memory
database, one view per dataset file, the lock-down), which on a worker carrying
hundreds of turns at once is most of a turn's cost: 200 turns opening their own
would spend seconds of CPU doing it. An agent's SQL is read-only (a single SELECT on
DuckDB, a ``READ ONLY`` transaction on Postgres: :mod:`quarry.agents.tools.readonly`),
so it leaves nothing behind in a connection; a turn that ended normally hands its
:class:`Connections` back here, and the next turn of the same tenant, workspace and
revision takes it instead of opening its own.

* **Exclusive**: a turn has its connections to itself while it runs (a cancel or a
  deadline interrupting its statements reaches no other turn).
* **Scoped**: keyed by tenant, workspace and revision; never shared across them.
* **Only after a clean end**: a turn that failed, was stopped or cancelled closes its
  connections (a statement may have been interrupted mid-way).
* **Bounded**: at most ``max_idle`` idle sets in the process, each closed after
  ``idle_seconds`` unused (``QUARRY_AGENT_IDLE_CONNECTIONS``, ``..._SECONDS``).

Not pooled: process isolation (``QUARRY_TENANT_SQL_ISOLATION=process``), where each
run's databases live in a child process of that run.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from quarry.runtime.connectors import BlobCache, Connections
from quarry.runtime.connectors.secrets import SecretLookup
from quarry.runtime.source import RevisionSource

_Key = tuple[str, str, str, str]


class ConnectionsPool:
    def __init__(self, *, max_idle: int = 256, idle_seconds: float = 60.0) -> None:
        self.max_idle = max_idle
        self.idle_seconds = idle_seconds
        self._lock = threading.Lock()
        # (key, serial) -> (connections, returned at); oldest first
        self._idle: OrderedDict[tuple[_Key, int], tuple[Connections, float]] = OrderedDict()
        self._serial = 0
        self.opened = 0
        self.reused = 0

    @staticmethod
    def _key(source: RevisionSource, cache: BlobCache) -> _Key:
        return (source.tenant_id, source.workspace.id, source.revision_id, str(cache.root))

    def _take(self, key: _Key) -> Connections | None:
        with self._lock:
            for entry in reversed(self._idle):  # the most recently used: warmest
                if entry[0] == key:
                    connections, _ = self._idle.pop(entry)
                    self.reused += 1
                    return connections
            self.opened += 1
            return None

    def _give_back(self, key: _Key, connections: Connections) -> None:
        stale: list[Connections] = []
        now = time.monotonic()
        with self._lock:
            self._serial += 1
            self._idle[(key, self._serial)] = (connections, now)
            while self._idle:
                entry, (oldest, since) = next(iter(self._idle.items()))
                if len(self._idle) <= self.max_idle and now - since < self.idle_seconds:
                    break
                del self._idle[entry]
                stale.append(oldest)
        for old in stale:
            old.close()

    @contextmanager
    def checkout(
        self,
        source: RevisionSource,
        cache: BlobCache,
        *,
        secrets: SecretLookup | None = None,
        keep: Callable[[], bool] | None = None,
    ) -> Iterator[Connections]:
        """Connections for one turn; given back for reuse when the block ends without
        an exception (and ``keep()`` answers True: not stopped), closed otherwise."""
        key = self._key(source, cache)
        connections = self._take(key)
        if connections is None:
            if secrets is None:
                connections = Connections(source, cache)
            else:
                connections = Connections(source, cache, secrets=secrets)
        if connections.host is not None:  # process isolation: the run's own, never kept
            try:
                yield connections
            finally:
                connections.close()
            return
        try:
            yield connections
        except BaseException:
            connections.close()
            raise
        if self.max_idle > 0 and (keep is None or keep()):
            self._give_back(key, connections)
        else:
            connections.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = list(self._idle.values()), OrderedDict()
        for connections, _ in idle:
            connections.close()


_POOL = ConnectionsPool()


def turn_connections() -> ConnectionsPool:
    """The process's pool (worker threads of one process share it)."""
    return _POOL


def configure(*, max_idle: int, idle_seconds: float) -> None:
    _POOL.max_idle = max_idle
    _POOL.idle_seconds = idle_seconds
