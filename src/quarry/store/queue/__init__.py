"""The durable task queue's data access (see ``docs/queue.md``).

The queue is a table (:mod:`quarry.store.queue_tables`) and the statements that move
its rows; everything that *consumes* it — workers, the Factory's drain, the reaper's
loop, startup recovery — lives in :mod:`quarry.runtime.queue`.

- :mod:`.port` — the :class:`TaskQueue` port every backend offers, and the records
  it returns (:class:`Task`, :class:`Enqueued`, ...);
- :mod:`.postgres`, :mod:`.sqlite` — the two backends, each running the named SQL of
  ``quarry/store/queries/queue_<dialect>.sql``;
- :mod:`.reads` — the few read-only looks at the table that are no backend operation
  (the drain's peek, recovery's lease snapshot, the per-tenant cap's count).
"""

from quarry.store.queue.port import (
    DEFAULT_QUEUE,
    Enqueued,
    EnqueueGuard,
    LeaseLost,
    NewTask,
    QueueCount,
    Reaped,
    RetryPolicy,
    Settled,
    Task,
    TaskQueue,
    fenced,
    oldest_age_seconds,
    open_queue,
)

__all__ = [
    "DEFAULT_QUEUE",
    "EnqueueGuard",
    "Enqueued",
    "LeaseLost",
    "NewTask",
    "QueueCount",
    "Reaped",
    "RetryPolicy",
    "Settled",
    "Task",
    "TaskQueue",
    "fenced",
    "oldest_age_seconds",
    "open_queue",
]
