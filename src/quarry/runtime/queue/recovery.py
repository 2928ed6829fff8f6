"""Startup recovery: finish the work an eviction interrupted.

A Factory that scaled to zero — or was evicted mid-task by its platform, the
accepted gap of ``docs/scale-to-zero.md`` — starts again on the next incoming
request. That request triggers this, once, under a keep-alive hold taken before the
request completes:

1. snapshot the tasks that are ``running`` under someone else's lease (a previous
   incarnation of this Factory, or a live worker elsewhere);
2. re-queue expired leases (the reaper) and kick the drain, which resumes each
   interrupted run from its checkpoints (durable runs, ``docs/runs.md``);
3. while a snapshotted lease has neither expired nor been renewed, wait for its
   expiry and go round again: a lease its holder renews has a live holder, who will
   finish the task without us; one that runs out was the evicted process's.

The hold is released only after the last kick has taken its own, so recovery hands
over to the drain with no gap.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from quarry.core.holds import Holds, HoldToken
from quarry.runtime.queue.reaper import reap_once
from quarry.store.queue.port import TaskQueue
from quarry.store.queue.reads import leases_held_by_others

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Lease:
    token: str | None
    expires_at: datetime | None


class StartupRecovery:
    """Runs once per process, on a thread, under a hold (``trigger`` is idempotent)."""

    def __init__(
        self,
        queue: TaskQueue,
        holds: Holds,
        kick: Callable[[str], None],
        *,
        own_owner: str,
        max_wait: float = 3600.0,
    ) -> None:
        self.queue = queue
        self.holds = holds
        self.kick = kick
        self.own_owner = own_owner
        self.max_wait = max_wait
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.done = threading.Event()
        self.reaped = 0

    @property
    def triggered(self) -> bool:
        return self._thread is not None

    def trigger(self) -> bool:
        """Start recovery unless it already ran; the hold is taken before this
        returns (so before the request that triggered it can complete)."""
        with self._lock:
            if self._thread is not None:
                return False
            token = self.holds.acquire("recovery")
            self._thread = threading.Thread(
                target=self._run, args=(token,), name="quarry-recovery", daemon=True
            )
            self._thread.start()
            return True

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self, token: HoldToken) -> None:
        try:
            self._recover()
        except Exception:
            log.exception("startup recovery failed; the reaper will retry on its interval")
        finally:
            # The drain's kick (in _recover) took its own hold first: no gap.
            self.holds.release(token)
            self.done.set()

    def _running_leases(self) -> dict[int, _Lease]:
        with self.queue.engine.connect() as conn:
            held = leases_held_by_others(conn, self.own_owner)
        return {lease.task_id: _Lease(lease.token, lease.expires_at) for lease in held}

    def _recover(self) -> None:
        waiting = self._running_leases()
        log.info("startup recovery: %d task(s) running under other leases", len(waiting))
        started = datetime.now(UTC)
        while not self._stop.is_set():
            reaped = reap_once(self.queue)
            self.reaped += len(reaped)
            self.kick("recovery")
            now_leases = self._running_leases()
            # Still waiting on: the same lease (same token), not renewed since.
            waiting = {
                task_id: lease
                for task_id, lease in waiting.items()
                if (current := now_leases.get(task_id)) is not None
                and current.token == lease.token
                and (current.expires_at or started) <= (lease.expires_at or started)
            }
            if not waiting:
                break
            now = datetime.now(UTC)
            if (now - started).total_seconds() > self.max_wait:
                log.warning("startup recovery: gave up waiting on %d lease(s)", len(waiting))
                break
            expiries = [lease.expires_at for lease in waiting.values() if lease.expires_at]
            next_expiry = min(expiries) if expiries else now
            delay = max((next_expiry - now).total_seconds(), 0.0) + 0.1
            self._stop.wait(min(delay, 5.0))
        log.info("startup recovery: done (%d lease(s) re-queued)", self.reaped)
