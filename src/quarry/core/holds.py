"""Keep-alive holds: a thread-safe count of the work that must not be evicted.

A Factory deployed with ``minReplicas: 0`` is stopped by its platform once no HTTP
request has been in flight for a cooldown. Work that outlives a request — a compile,
a run executing in process, the queue drain loop, startup recovery — takes a *hold*
while it works; while any hold is taken, :mod:`quarry.fleet.keepalive` keeps a
long-poll open against the process's own ingress, and ``GET /keepalive`` answers
once the last hold is released (see ``docs/scale-to-zero.md``).

This module is the interface both sides share: ``runtime`` takes holds, ``fleet``
and ``api`` watch them. It does no I/O and imports nothing of Quarry's, so any layer
may use it (a process that never scales to zero simply has nobody watching).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

Listener = Callable[[int], None]


@dataclass(frozen=True)
class HoldToken:
    """One taken hold; give it back with :meth:`Holds.release` (exactly once)."""

    id: int
    reason: str


class Holds:
    """The process's hold counter.

    ``acquire``/``release`` suit holds whose lifetime is not one block (the drain
    loop passes a kick's hold on to the pass that serves it); ``hold()`` is the
    context manager for everything else. Listeners are called, outside the lock,
    with the new count whenever it changes, so a waiter on another thread or an
    event loop needs no polling.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._held: dict[int, str] = {}
        self._ids = itertools.count(1)
        self._listeners: list[Listener] = []
        self.acquired_total = 0

    # -- taking and giving back ------------------------------------------------

    def acquire(self, reason: str) -> HoldToken:
        with self._lock:
            token = HoldToken(next(self._ids), reason)
            self._held[token.id] = reason
            self.acquired_total += 1
            count = len(self._held)
            self._changed.notify_all()
            listeners = list(self._listeners)
        self._tell(listeners, count)
        return token

    def release(self, token: HoldToken) -> None:
        with self._lock:
            if self._held.pop(token.id, None) is None:
                raise RuntimeError(f"hold {token.id} ({token.reason}) released twice")
            count = len(self._held)
            self._changed.notify_all()
            listeners = list(self._listeners)
        self._tell(listeners, count)

    @contextmanager
    def hold(self, reason: str) -> Iterator[HoldToken]:
        token = self.acquire(reason)
        try:
            yield token
        finally:
            self.release(token)

    # -- watching --------------------------------------------------------------

    @property
    def count(self) -> int:
        with self._lock:
            return len(self._held)

    @property
    def watchers(self) -> int:
        """Listeners subscribed now (an open ``GET /keepalive`` is one)."""
        with self._lock:
            return len(self._listeners)

    def by_reason(self) -> dict[str, int]:
        """Holds taken now, counted by reason (for ``/keepalive`` and diagnostics)."""
        with self._lock:
            return dict(Counter(self._held.values()))

    def wait(self, predicate: Callable[[int], bool], timeout: float | None = None) -> bool:
        """Block until ``predicate(count)`` holds (True) or ``timeout`` passes (False)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            while not predicate(len(self._held)):
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._changed.wait(remaining)
            return True

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(count)`` on every change (and once now); returns the
        function that unsubscribes it."""
        with self._lock:
            self._listeners.append(listener)
            count = len(self._held)
        listener(count)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    def wake_waiters(self) -> None:
        """Wake blocked :meth:`wait` calls so they re-check their predicate (used
        by a loop that is stopping)."""
        with self._changed:
            self._changed.notify_all()

    @staticmethod
    def _tell(listeners: list[Listener], count: int) -> None:
        for listener in listeners:
            listener(count)
