"""The lease reaper: re-queues tasks whose lease expired.

It runs automatically — in every worker process (a thread) and in the global driver's
tick — and is safe to run on any number of nodes at once: on Postgres each pass locks
the expired rows it handles with ``SKIP LOCKED``, on SQLite it holds the write lock.
An expired task goes back to ``queued`` with its attempt counted and ``run_after``
pushed out by exponential backoff; one that has used ``max_attempts`` fails; one whose
cancellation was requested is cancelled.
"""

from __future__ import annotations

import logging
import threading

from quarry.runtime.queue.health import LOOPS, LoopHealth
from quarry.store.queue.port import Reaped, TaskQueue

log = logging.getLogger(__name__)


def reap_once(queue: TaskQueue, *, batch: int = 100) -> list[Reaped]:
    """Reap every expired lease now (in batches); returns what was reaped."""
    reaped: list[Reaped] = []
    while True:
        chunk = queue.reap_expired(limit=batch)
        reaped.extend(chunk)
        for r in chunk:
            log.warning(
                "reaper: task %d (tenant %s) lease expired after attempt %d -> %s",
                r.id,
                r.tenant_id,
                r.attempts,
                r.state,
            )
        if len(chunk) < batch:
            return reaped


class Reaper:
    """A background thread that calls :func:`reap_once` every ``interval`` seconds."""

    def __init__(self, queue: TaskQueue, *, interval: float = 5.0) -> None:
        self.queue = queue
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.reaped = 0
        self.health = LoopHealth("reaper")

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="quarry-reaper", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        LOOPS.register(self.health)
        try:
            while not self._stop.is_set():
                wait = self.interval
                try:
                    self.reaped += len(reap_once(self.queue))
                except Exception as exc:
                    # Back off (capped well below a lease) rather than wait a whole
                    # interval: leases keep expiring while the database is away.
                    wait = min(self.interval, self.health.failed("reap", exc))
                else:
                    self.health.succeeded()
                self._stop.wait(wait)
        finally:
            LOOPS.unregister(self.health)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
