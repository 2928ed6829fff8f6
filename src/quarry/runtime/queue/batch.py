"""A batched worker: claim up to N tasks per statement, buffer their completions.

For many short tasks the per-task round trip is the cost, not the work. This worker
(opt-in: ``make_worker(..., batch_size=N)``, ``--batch N`` of
``python -m quarry.runtime.queue.main``, or ``quarry worker --batch N`` /
``QUARRY_WORKER_BATCH`` for a run queue of short runs) claims up to ``batch_size``
tasks in one fair ``FOR UPDATE SKIP LOCKED`` statement, runs them one after another,
and records their successes in one statement -- folded into the claim of the next
batch, so a drained batch costs one round trip in all.

What does not change:

- **Every task keeps its own lease and token.** Each completion in a batch is fenced
  by its own ``id`` and ``lease_token`` in the ``WHERE``; one lost lease refuses only
  that task's write. Heartbeats extend every held lease at once -- the running task,
  those claimed but not started, those finished but not yet recorded -- at least every
  ``lease_seconds / 3``, between tasks as well as during one; a task whose lease was
  found lost is dropped, one whose cancellation was requested before it started is
  recorded as cancelled without running.
- **Fairness.** A batch takes the tenants in the single claim's order and interleaves
  them (the first task of each of the first N tenants, then the second, ...).
- **Failures, cancellations, releases** are written at once, as in :class:`Worker`.

What a buffered completion means: a finished task's success is recorded at the
latest ``flush_interval`` seconds after its handler returned (sooner when the batch
ends or the buffer is full), and immediately when the worker is stopping. Until then
its row is still ``running`` under its lease. If the worker process dies first, that
record is gone and the lease expires: the reaper re-queues the task and it **runs
again** (the attempt counted), exactly as when a worker dies just after a handler
returned. It is never lost: nothing marks a task finished except the fenced write.
On a graceful stop the buffer is flushed and tasks claimed but not started are
released (their attempts not counted); if that last write fails, their leases expire
and they run again.

A database error costs the statement that hit it: a failed claim-and-complete keeps
the buffered successes for the next statement, a failed flush is retried with
backoff, a failed heartbeat is retried soon after (see :class:`Worker`). Each retry is
fenced by the lease tokens as the first attempt was.

Use it for short tasks. A batch runs sequentially on one worker, so long tasks
(workflow runs) would wait behind each other while other workers idle.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import Any

from quarry.runtime.queue.worker import Handler, Worker
from quarry.store.queue.port import LeaseLost, Task, TaskQueue

log = logging.getLogger(__name__)

DEFAULT_FLUSH_INTERVAL = 0.02


class BatchWorker(Worker):
    def __init__(
        self,
        queue: TaskQueue,
        handler: Handler,
        *,
        batch_size: int = 10,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL,
        **kwargs: Any,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        if flush_interval < 0:
            raise ValueError(f"flush_interval must not be negative, not {flush_interval}")
        super().__init__(queue, handler, **kwargs)
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self._pending: deque[Task] = deque()  # claimed, not started
        self._done: list[tuple[Task, Any]] = []  # finished, success not yet recorded
        self._done_since: float | None = None
        # After a failed flush: not before this (monotonic) time.
        self._flush_retry_at: float | None = None
        self._last_beat = time.monotonic()

    @property
    def held(self) -> list[Task]:
        """Tasks this worker holds leases on and has not started or not yet recorded."""
        return [*self._pending, *(t for t, _ in self._done)]

    # -- claiming --------------------------------------------------------------------

    def run_one(self) -> bool:
        task = self._claim()  # counts its own claims (several per statement)
        if task is None:
            return False
        self.execute(task)
        return True

    def claim_next(self) -> Task | None:
        if self._pending and time.monotonic() >= self._last_beat + self.lease_seconds / 3:
            self._beat(None)
        if self._pending:
            return self._pending.popleft()
        for i in range(len(self.queues)):
            name = self.queues[(self._next_queue + i) % len(self.queues)]
            done = self._take_done()
            try:
                completed, tasks = self.queue.complete_many_and_claim(
                    done,
                    self.owner,
                    queue=name,
                    lease_seconds=self.lease_seconds,
                    limit=self.batch_size,
                )
            except Exception:
                self._restore_done(done)
                raise
            self._recorded(done, completed)
            self._flush_retry_at = None
            if tasks:
                self._last_beat = time.monotonic()  # every held lease is fresh now
                self._next_queue = (self._next_queue + i + 1) % len(self.queues)
                self.stats.claimed += len(tasks)
                self._pending.extend(tasks[1:])
                return tasks[0]
        return None

    # -- buffered completions --------------------------------------------------------------

    def _complete(self, task: Task, result: Any, *, retrying: bool = False) -> None:
        """Buffer the success (never raises for a database error: a failed flush
        keeps the buffer and is retried with backoff, so the task is buffered once)."""
        self._done.append((task, result))
        if self._done_since is None:
            self._done_since = time.monotonic()
        # With nothing pending, the next claim records the buffer in its statement.
        due = self._flush_due()
        if (
            self.stopping
            or (self._pending and len(self._done) >= self.batch_size)
            or (self._pending and due is not None and time.monotonic() >= due)
        ):
            self._try_flush()

    def _flush_due(self) -> float | None:
        """When the buffer should be flushed (None: it is empty)."""
        if self._done_since is None:
            return None
        due = self._done_since + self.flush_interval
        return due if self._flush_retry_at is None else max(due, self._flush_retry_at)

    def _try_flush(self) -> None:
        try:
            self.flush()
        except Exception as exc:
            delay = self.health.failed(f"recording {len(self._done)} successes", exc)
            self._flush_retry_at = time.monotonic() + delay
        else:
            self._flush_retry_at = None
            self.health.succeeded()

    def flush(self) -> None:
        """Record the buffered successes now (one fenced statement)."""
        done = self._take_done()
        if not done:
            return
        try:
            completed = self.queue.complete_many(done)
        except Exception:
            self._restore_done(done)
            raise
        self._recorded(done, completed)

    def _take_done(self) -> list[tuple[Task, Any]]:
        done, self._done, self._done_since = self._done, [], None
        return done

    def _restore_done(self, done: list[tuple[Task, Any]]) -> None:
        # The statement failed as a whole: nothing was recorded, keep them for the next try.
        self._done = done + self._done
        if self._done and self._done_since is None:
            self._done_since = time.monotonic()

    def _recorded(self, done: list[tuple[Task, Any]], completed: set[int]) -> None:
        self.stats.succeeded += sum(1 for t, _ in done if t.id in completed)
        for task, _ in done:
            if task.id not in completed:
                self._lost(task, "complete")

    # -- hooks into Worker.execute ------------------------------------------------------------

    def _first_beat(self, interval: float) -> float:
        return self._last_beat + interval

    def _heartbeat(self, task: Task) -> bool:
        return self._beat(task)

    def _chore_due(self) -> float | None:
        return self._flush_due()

    def _chores(self, now: float) -> None:
        due = self._flush_due()
        if due is not None and now >= due:
            self._try_flush()

    def _beat(self, running: Task | None) -> bool:
        """Extend every held lease in one statement; drop what was lost or cancelled.

        Returns whether cancellation was requested for ``running``; raises
        :class:`LeaseLost` if its lease is gone."""
        tasks = ([running] if running is not None else []) + self.held
        alive = self.queue.heartbeat_many(tasks, lease_seconds=self.lease_seconds)
        self._last_beat = time.monotonic()
        kept: deque[Task] = deque()
        for task in self._pending:
            if task.id not in alive:
                self._lost(task, "heartbeat, not started")
            elif alive[task.id]:
                self._settle_safely(task, self._cancel_unstarted, "cancel")
            else:
                kept.append(task)
        self._pending = kept
        lost = [t for t, _ in self._done if t.id not in alive]
        if lost:
            self._done = [(t, r) for t, r in self._done if t.id in alive]
            if not self._done:
                self._done_since = None
            for task in lost:
                self._lost(task, "heartbeat, finished")
        if running is None:
            return False
        if running.id not in alive:
            raise LeaseLost(f"task {running.id}: lease lost; heartbeat refused", task_id=running.id)
        return alive[running.id]

    def _cancel_unstarted(self, task: Task) -> None:
        self.queue.acknowledge_cancel(task, "cancelled before it started")
        self.stats.cancelled += 1

    # -- stopping ---------------------------------------------------------------------------

    def release_held(self) -> None:
        try:
            self.flush()
        except Exception:
            log.exception(
                "worker %s: could not record %d successes; their leases will expire "
                "and they will run again",
                self.owner,
                len(self._done),
            )
        pending, self._pending = list(self._pending), deque()
        if pending:
            try:
                released = self.queue.release_many(pending)
            except Exception:
                log.exception(
                    "worker %s: could not release %d unstarted tasks; their leases will "
                    "expire and they will run then",
                    self.owner,
                    len(pending),
                )
            else:
                self.stats.released += len(released)
                for task in pending:
                    if task.id not in released:
                        self._lost(task, "release")
        super().release_held()


def make_worker(
    queue: TaskQueue,
    handler: Handler,
    *,
    batch_size: int = 1,
    flush_interval: float = DEFAULT_FLUSH_INTERVAL,
    **kwargs: Any,
) -> Worker:
    """A :class:`Worker`, or a :class:`BatchWorker` when ``batch_size > 1``."""
    if batch_size <= 1:
        return Worker(queue, handler, **kwargs)
    return BatchWorker(
        queue, handler, batch_size=batch_size, flush_interval=flush_interval, **kwargs
    )
