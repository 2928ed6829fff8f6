"""The durable task queue (see docs/queue.md)."""

from quarry.runtime.queue.base import (
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
