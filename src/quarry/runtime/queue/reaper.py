"""The lease reaper: re-queues tasks whose lease expired.

It runs automatically — in every worker process (a thread) and in the global driver's
tick — and is safe to run on any number of nodes at once: on Postgres each pass locks
the expired rows it handles with ``SKIP LOCKED``, on SQLite it holds the write lock.
An expired task goes back to ``queued`` with its attempt counted and ``run_after``
pushed out by exponential backoff; one that has used ``max_attempts`` fails; one whose
cancellation was requested is cancelled.

A task the reaper fails or cancels ended without its handler recording an outcome
(its last worker died), so whatever the task stood for must be ended by its owner: a
run's row and its terminal event (docs/runs.md). The queue knows nothing of runs
(``runtime/queue`` may not import ``runtime/runs``), so the owner installs a
:data:`TaskEnded` hook with :func:`on_task_ended` at composition
(``quarry.node.services.build_services``, as task handlers are installed), and every
reaper in the process — each worker's thread, the driver's tick, startup recovery —
calls it after each pass that ended tasks. A module-level hook rather than a
constructor argument because those three callers are built by code that knows
nothing of runs either; the hook is given the queue it reaped, so it writes to that
queue's database (several ``Services`` in one process stay apart). It runs after the
reap committed, not in its transaction: the hook must be idempotent (the runs
owner's is: a run that has already ended is left alone), and a process that dies
between the two commits, or a hook that fails, leaves the owner's record unended
(logged; nothing retries it).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from quarry.runtime.queue.health import LOOPS, LoopHealth
from quarry.store.queue.port import Reaped, TaskQueue

log = logging.getLogger(__name__)

TaskEnded = Callable[[TaskQueue, Sequence[Reaped]], None]
"""Called with the queue and the tasks a reap pass failed or cancelled (never the
re-queued ones); must be idempotent."""

_task_ended: list[TaskEnded] = []


def on_task_ended(hook: TaskEnded) -> None:
    """Install ``hook`` for every reap pass of this process (once, however often
    it is installed)."""
    if hook not in _task_ended:
        _task_ended.append(hook)


def _report_ended(queue: TaskQueue, reaped: Sequence[Reaped]) -> None:
    ended = [r for r in reaped if r.state != "queued"]
    if not ended:
        return
    for hook in list(_task_ended):
        try:
            hook(queue, ended)
        except Exception:
            # The tasks have ended all the same; the next pass does not see them
            # again, so say loudly what was left unrecorded.
            log.exception("reaper: recording the end of task(s) %s failed", [r.id for r in ended])


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
        _report_ended(queue, chunk)
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
