"""Warehouse connections kept open between runs of a long-lived process (a
``quarry worker``, a Factory running tenant SQL inline), so a run does not pay a new
login per database. One pool per driver: ``postgres.POOL`` (Postgres, Redshift,
Airhouse) and ``mysql.POOL`` (MySQL, MariaDB); each connector resets a connection to
a fresh session before giving it back, or has it closed.

Why not ``psycopg_pool``: its pools open connections in background threads, so a
wrong password or an unreachable host reaches the caller only as a timeout after the
whole wait instead of the driver's error naming the database, and every pool (one
per set of connection values: per tenant warehouse) runs four threads of its own.
Here a connection is opened in the thread that needs it (errors and the server
identity check are the connector's, as without pooling); one daemon thread of the
whole process closes expired idle connections, and only while some are idle.

Rules, per key (a digest of everything a connection was opened with: address, user,
password, database, options; never logged):

- at most ``keep`` idle connections are kept (``QUARRY_WAREHOUSE_POOL_SIZE``); one
  given back beyond that is closed;
- when ``max_open`` is set (``QUARRY_WAREHOUSE_POOL_MAX_OPEN``), at most that many
  are open at once, idle or in use; a checkout beyond waits up to ``timeout``
  seconds for one to come back, then fails with an error naming the database and
  the settings. Unset (0), opening is not limited, as without a pool: runs that hold
  their connections for their whole length (agent turns sharing one set of
  connections among hundreds of threads) would otherwise wait on each other;
- a connection given back is reset first by the connector (``reset``); one that
  fails to reset, or that the connector says is not reusable (it errored, was
  cancelled, is inside a transaction), is closed instead;
- an idle connection is kept ``idle_seconds`` at most and checked (``check``, one
  round trip) when taken: a dead one (its backend terminated, the server restarted)
  is closed and the next is tried, or a new one opened;
- a process that forks drops what it inherited without closing it (the sockets are
  the parent's); ``close_all_pools`` (at exit, and when a node stops) closes every
  idle connection.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import os
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from quarry.runtime.connectors.base import ConnectorError

C = TypeVar("C")

IDLE_SECONDS = 60.0


def pool_key(kind: str, values: Mapping[str, Any]) -> str:
    """A digest of everything a connection was opened with (values include secrets,
    which is why only the digest is kept)."""
    text = repr((kind, sorted((str(k), repr(v)) for k, v in values.items())))
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class _Slot(Generic[C]):
    """One key's connections: the idle ones (newest last) and how many are open."""

    idle: list[tuple[float, C]] = field(default_factory=list)
    open: int = 0


class ConnectionPool(Generic[C]):
    """Thread-safe; see the module docstring. ``check`` raises when a connection is
    not usable; ``close`` never should (its errors are ignored)."""

    def __init__(
        self,
        *,
        check: Callable[[C], None],
        close: Callable[[C], None],
        idle_seconds: float = IDLE_SECONDS,
    ) -> None:
        self._check = check
        self._close = close
        self.idle_seconds = idle_seconds
        self._cond = threading.Condition()
        self._slots: dict[str, _Slot[C]] = {}
        self._pid = os.getpid()
        self._reaper: threading.Thread | None = None
        self._tick = threading.Event()  # never set: the reaper's interval
        _POOLS.add(self)

    def acquire(
        self,
        key: str,
        open_: Callable[[], C],
        *,
        max_open: int,
        timeout: float,
        database: str,
    ) -> C:
        """An idle connection of ``key`` that passes ``check``, else a new one from
        ``open_`` (in this thread, its errors raised as they are) when ``max_open`` is
        0 or more than the open ones; else wait for one to come back, up to
        ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            taken: C | None = None
            with self._cond:
                slot = self._slot(key)
                expired = self._expire_locked()
                while not slot.idle and 0 < max_open <= slot.open:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise ConnectorError(
                            f"database {database!r}: all {max_open} connections this process "
                            f"may open are in use; none came back within {timeout:g} s "
                            "(QUARRY_WAREHOUSE_POOL_MAX_OPEN, "
                            "QUARRY_WAREHOUSE_POOL_TIMEOUT_SECONDS)",
                            database=database,
                        )
                    self._cond.wait(remaining)
                    slot = self._slot(key)
                if slot.idle:
                    _since, taken = slot.idle.pop()
                else:
                    slot.open += 1
            for conn in expired:  # closing talks to the server: not under the lock
                self._quietly_close(conn)
            if taken is None:
                try:
                    return open_()
                except BaseException:
                    self._forget(key)
                    raise
            try:
                self._check(taken)
            except Exception:
                self._quietly_close(taken)
                self._forget(key)
                continue  # the next idle one, or a new one
            except BaseException:
                self._quietly_close(taken)
                self._forget(key)
                raise
            return taken

    def release(self, key: str, conn: C, *, reusable: bool, keep: int) -> None:
        """Give back a connection taken with :meth:`acquire` (already reset by the
        caller when ``reusable``); one that is not reusable, or beyond ``keep`` idle
        ones, is closed."""
        if reusable:
            with self._cond:
                slot = self._slot(key)
                if self._pid == os.getpid() and len(slot.idle) < keep:
                    slot.idle.append((time.monotonic(), conn))
                    self._cond.notify()
                    self._start_reaper_locked()
                    return
        self._quietly_close(conn)
        self._forget(key)

    def _start_reaper_locked(self) -> None:
        """Expiry must not wait for the next checkout: a worker that goes quiet would
        keep its idle sessions on the warehouse for ever."""
        if self._reaper is None or not self._reaper.is_alive():
            self._reaper = threading.Thread(
                target=self._reap, name="quarry-warehouse-pool-reaper", daemon=True
            )
            self._reaper.start()

    def _reap(self) -> None:
        """Every half ``idle_seconds``, close the expired idle connections; end when
        none is idle (the next ``release`` starts another)."""
        while True:
            # Its own event, not the condition: a notify meant for a waiting checkout
            # must not be taken by the reaper.
            self._tick.wait(self.idle_seconds / 2)
            with self._cond:
                expired = self._expire_locked()
                if not any(slot.idle for slot in self._slots.values()):
                    self._reaper = None
                    done = True
                else:
                    done = False
            for conn in expired:
                self._quietly_close(conn)
            if done:
                return

    def stats(self, key: str) -> tuple[int, int]:
        """(idle, open) connections of ``key``: for tests and metrics."""
        with self._cond:
            slot = self._slot(key)
            return len(slot.idle), slot.open

    def close_all(self) -> None:
        """Close every idle connection (those in use are closed when given back)."""
        with self._cond:
            self._slot("")  # a forked child forgets the parent's sockets, closes none
            idle = [conn for slot in self._slots.values() for _since, conn in slot.idle]
            for slot in self._slots.values():
                slot.open -= len(slot.idle)
                slot.idle = []
            self._cond.notify_all()
        for conn in idle:
            self._quietly_close(conn)

    def _slot(self, key: str) -> _Slot[C]:
        if self._pid != os.getpid():
            # A forked child: the connections are the parent's sockets; forget them.
            self._slots = {}
            self._pid = os.getpid()
        return self._slots.setdefault(key, _Slot())

    def _expire_locked(self) -> list[C]:
        """Take out the connections idle for longer than ``idle_seconds``, of every key
        (so a warehouse used once does not keep its sessions for the process's life),
        for the caller to close."""
        cutoff = time.monotonic() - self.idle_seconds
        expired: list[C] = []
        for slot in self._slots.values():
            while slot.idle and slot.idle[0][0] < cutoff:
                expired.append(slot.idle.pop(0)[1])
                slot.open -= 1
        if expired:
            self._cond.notify_all()
        return expired

    def _forget(self, key: str) -> None:
        with self._cond:
            slot = self._slot(key)
            slot.open = max(0, slot.open - 1)
            self._cond.notify()

    def _quietly_close(self, conn: C) -> None:
        with contextlib.suppress(Exception):
            self._close(conn)


_POOLS: weakref.WeakSet[ConnectionPool[Any]] = weakref.WeakSet()


def close_all_pools() -> None:
    """End every idle server session of every pool (Postgres-wire, MySQL) cleanly: at
    process exit, and when a node stops (``quarry.node.node``) so a worker's shutdown
    does not depend on interpreter exit."""
    for pool in list(_POOLS):
        pool.close_all()


atexit.register(close_all_pools)
