"""Read-only looks at the ``tasks`` table that are no backend operation.

Dialect-neutral SQLAlchemy Core (the backends' own statements are named SQL, one file
per dialect, because they differ: ``SKIP LOCKED`` claims, ``json_to_recordset``
bulk enqueue). None of these claims, locks or writes anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, func, literal, select

from quarry.store.queue_tables import tasks


def _utc(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        raise TypeError(f"expected a datetime, got {value!r}")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def earliest_queued(conn: Connection, queues: list[str]) -> datetime | None:
    """When the earliest queued task of ``queues`` is (or was) eligible; None when
    nothing is queued. One aggregate over the claim index."""
    stmt = select(func.min(tasks.c.run_after)).where(
        tasks.c.state == "queued", tasks.c.queue.in_(queues)
    )
    return _utc(conn.execute(stmt).scalar_one_or_none())


@dataclass(frozen=True)
class HeldLease:
    task_id: int
    token: str | None
    expires_at: datetime | None


def leases_held_by_others(conn: Connection, owner: str) -> list[HeldLease]:
    """The leases of running tasks that ``owner`` does not hold (startup recovery's
    snapshot of work an earlier incarnation may have left behind)."""
    stmt = select(tasks.c.id, tasks.c.lease_token, tasks.c.lease_expires_at).where(
        tasks.c.state == "running",
        (tasks.c.lease_owner.is_(None)) | (tasks.c.lease_owner != owner),
    )
    return [
        HeldLease(int(r.id), r.lease_token, _utc(r.lease_expires_at)) for r in conn.execute(stmt)
    ]


def count_queued_up_to(conn: Connection, tenant_id: str, queue: str, cap: int) -> int:
    """How many tasks ``tenant_id`` has queued in ``queue``, counting no further than
    ``cap`` (``LIMIT`` inside: the same cost with a million queued as with ten, on the
    partial index of queued tasks)."""
    capped = (
        select(literal(1))
        .select_from(tasks)
        .where(tasks.c.tenant_id == tenant_id, tasks.c.queue == queue, tasks.c.state == "queued")
        .limit(cap)
        .subquery("capped")
    )
    return int(conn.execute(select(func.count()).select_from(capped)).scalar_one())
