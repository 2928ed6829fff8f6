"""Per-tenant cap on queued work, checked inside the enqueue transaction.

The count stops at the cap (``LIMIT``), so the check costs the same with a million
queued tasks as with ten, and it uses the partial index of queued tasks. Two
enqueues racing for the last slot may both pass: the cap holds to within the number
of concurrent enqueuers for one tenant, which is what it is for (stopping a flood).
"""

from __future__ import annotations

from quarry.core.errors import QuarryError
from quarry.core.metrics import ADMISSION_REJECTIONS
from quarry.store.db import Connection
from quarry.store.queue.port import EnqueueGuard
from quarry.store.queue.reads import count_queued_up_to


class QueueFull(QuarryError):
    status_code = 429
    code = "queue_full"
    retry_after = 5


def queued_cap(limit: int) -> EnqueueGuard | None:
    """The guard refusing a tenant's task once it has ``limit`` queued (0: no cap)."""
    if limit <= 0:
        return None

    def guard(conn: Connection, tenant_id: str, queue: str, incoming: int = 1) -> None:
        queued = count_queued_up_to(conn, tenant_id, queue, limit)
        if queued + incoming > limit:
            ADMISSION_REJECTIONS.labels("queue_full").inc()
            raise QueueFull(
                f"tenant {tenant_id!r} has {queued} queued tasks in queue {queue!r}; "
                f"{incoming} more would pass the cap of {limit} "
                "(queue_max_queued_per_tenant); retry when some have started",
                tenant=tenant_id,
                limit=limit,
            )

    return guard
