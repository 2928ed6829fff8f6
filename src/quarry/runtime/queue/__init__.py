"""The durable task queue (see docs/queue.md): what consumes it.

Workers (:mod:`.worker`, :mod:`.batch`), the Factory's drain (:mod:`.drain`), the
reaper's loop (:mod:`.reaper`), startup recovery (:mod:`.recovery`) and the per-tenant
cap (:mod:`.caps`). The queue's port, its records and its two backends are data
access and live in :mod:`quarry.store.queue`; they are re-exported here so callers
keep one import.
"""

from quarry.store.queue.port import (
    DEFAULT_QUEUE,
    Enqueued,
    LeaseLost,
    NewTask,
    QueueCount,
    Reaped,
    RetryPolicy,
    Settled,
    Task,
    TaskQueue,
    fenced,
    open_queue,
)

__all__ = [
    "DEFAULT_QUEUE",
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
    "open_queue",
]
