"""One driver connection per thread, every one remembered so the connector can end
them all.

A run's steps may query one database from several threads, and DB-API connections
(and the warehouse clients) are not safe to share between threads: each thread opens
its own on first use. ``close_all`` ends every one of them at the end of the run, or
from another thread on interrupt, which is why they are kept in a list as well."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar


class _Closable(Protocol):
    def close(self) -> None: ...


C = TypeVar("C", bound=_Closable)


class PerThreadConnections(Generic[C]):
    """``get()`` gives this thread's connection, opening one when it has none or
    ``alive`` says the one it has was closed."""

    def __init__(
        self, open_: Callable[[], C], *, alive: Callable[[C], bool] = lambda _conn: True
    ) -> None:
        self._open = open_
        self._alive = alive
        self._local = threading.local()
        self._lock = threading.Lock()
        self._all: list[C] = []

    def get(self) -> C:
        conn: C | None = getattr(self._local, "conn", None)
        if conn is None or not self._alive(conn):
            conn = self._open()
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def owns(self, conn: C) -> bool:
        """Whether ``conn`` is still one of these (not taken by ``take_all``/``remove``)."""
        with self._lock:
            return any(c is conn for c in self._all)

    def remove(self, conn: C) -> bool:
        """Forget ``conn`` (this thread's next ``get()`` opens another); the caller
        disposes of it. False if it was no longer here."""
        with self._lock:
            kept = [c for c in self._all if c is not conn]
            found = len(kept) != len(self._all)
            self._all = kept
        if getattr(self._local, "conn", None) is conn:
            self._local.conn = None
        return found

    def take_all(self) -> list[C]:
        """Every connection opened so far, forgotten here (the next ``get()`` of any
        thread opens a new one): for a caller that disposes of each its own way (a
        pool keeps some)."""
        with self._lock:
            conns, self._all = self._all, []
        self._local = threading.local()
        return conns

    def close_all(
        self, suppress: type[BaseException] | tuple[type[BaseException], ...] = Exception
    ) -> None:
        """Close every connection opened so far (errors of the kinds in ``suppress``
        ignored; ``()`` ignores none); the next ``get()`` of any thread opens a new one."""
        for conn in self.take_all():
            with contextlib.suppress(*_kinds(suppress)):
                conn.close()


def _kinds(
    suppress: type[BaseException] | tuple[type[BaseException], ...],
) -> tuple[type[BaseException], ...]:
    return suppress if isinstance(suppress, tuple) else (suppress,)


def checkout_running(
    connections: PerThreadConnections[C], lock: threading.Lock, running: set[C]
) -> C:
    """This thread's connection from ``connections``, added to ``running`` under
    ``lock``, unless a ``close`` (which takes every connection under the same lock)
    took it meanwhile: then a new one. A connection given back to a pool is thus never
    used by a later statement of the connector that gave it back."""
    while True:
        conn = connections.get()
        with lock:
            if connections.owns(conn):
                running.add(conn)
                return conn
