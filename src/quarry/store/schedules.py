"""Schedules, monitors and their fire log: every query on ``schedules`` and
``schedule_fires`` (tables in :mod:`quarry.store.schedule_tables`).

The callers — promotion's sync, the driver's ticks, the operator views in
:mod:`quarry.scheduling` — decide *what* to write; this module is *how*. Two of
these statements carry the exactly-once guarantee (``docs/schedules.md``):

- :func:`claim_due` is the compare-and-swap on ``next_run_at``: only the node whose
  UPDATE matches fires;
- :func:`record_fire` inserts the fire-log row whose primary key (schedule, scheduled
  time) refuses a second fire of the same window even if a racing promotion put an
  already-fired time back.

Rows are returned as SQLAlchemy rows (attribute access by column name).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, desc, func, insert, select, update

from quarry.store.db import insert_ignoring_duplicates
from quarry.store.run_tables import runs
from quarry.store.schedule_tables import schedule_fires, schedules
from quarry.store.types import UtcDateTime

# -- promotion's sync ---------------------------------------------------------------


def lock_workspace_schedules(conn: Connection, workspace_id: str) -> dict[str, Any]:
    """Every schedule and monitor row of a workspace by id, locked for the caller's
    transaction on Postgres (a concurrent promotion of the same workspace waits)."""
    query = select(schedules).where(schedules.c.workspace_id == workspace_id)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    return {row.id: row for row in conn.execute(query)}


def insert_schedule(conn: Connection, **values: Any) -> None:
    conn.execute(insert(schedules).values(**values))


def update_schedule(conn: Connection, schedule_id: str, **values: Any) -> None:
    """Set exactly the columns given (a sync that leaves ``next_run_at`` out never
    undoes a tick that advanced it a moment ago)."""
    conn.execute(update(schedules).where(schedules.c.id == schedule_id).values(**values))


def delete_schedules(conn: Connection, schedule_ids: Sequence[str]) -> None:
    """Delete rows (their fire log stays: it has no foreign key)."""
    conn.execute(delete(schedules).where(schedules.c.id.in_(list(schedule_ids))))


# -- the driver's ticks -------------------------------------------------------------


def due_schedules(conn: Connection, kind: str, now: datetime, limit: int) -> list[Any]:
    """Due, enabled, unpaused rows of ``kind``, earliest first, locked for this
    transaction; rows another node is firing right now are skipped rather than waited
    for (Postgres), so nodes never queue up behind each other. The lock only spreads
    the work: exactly-once is :func:`claim_due`'s job."""
    query = (
        select(
            schedules.c.id,
            schedules.c.next_run_at,
            schedules.c.cron,
            schedules.c.timezone,
            schedules.c.overlap,
            schedules.c.last_run_id,
        )
        .where(
            schedules.c.kind == kind,
            schedules.c.next_run_at <= now,
            schedules.c.enabled.is_(True),
            schedules.c.paused.is_(False),
        )
        .order_by(schedules.c.next_run_at)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return list(conn.execute(query))


def claim_due(
    conn: Connection,
    schedule_id: str,
    due: datetime,
    next_run_at: datetime,
    now: datetime,
    *,
    last_run_id: str | None = None,
) -> Any:
    """The compare-and-swap ``next_run_at: due -> next_run_at``: the row as it is now
    if this transaction won the fire, else None (another node won, or the row was
    paused, disabled or retimed). ``last_run_id`` is set only when given."""
    values: dict[str, Any] = {
        "next_run_at": next_run_at,
        "last_scheduled_for": due,
        "last_fired_at": now,
    }
    if last_run_id is not None:
        values["last_run_id"] = last_run_id
    stmt = (
        update(schedules)
        .where(
            schedules.c.id == schedule_id,
            schedules.c.next_run_at == due,
            schedules.c.enabled.is_(True),
            schedules.c.paused.is_(False),
        )
        .values(**values)
        .returning(*schedules.c)
    )
    return conn.execute(stmt).first()


def set_next_run_at(conn: Connection, schedule_id: str, next_run_at: datetime | None) -> None:
    update_schedule(conn, schedule_id, next_run_at=next_run_at)


def set_last_run(conn: Connection, schedule_id: str, run_id: str) -> None:
    update_schedule(conn, schedule_id, last_run_id=run_id)


def record_fire(
    conn: Connection,
    *,
    schedule_id: str,
    tenant_id: str,
    scheduled_for: datetime,
    fired_at: datetime,
    node: str,
    outcome: str,
    coalesced: int = 0,
    run_id: str | None = None,
) -> bool:
    """Insert the fire-log row; False when this window was fired already (its key
    exists), in which case nothing may be queued."""
    row = {
        "schedule_id": schedule_id,
        "scheduled_for": scheduled_for,
        "tenant_id": tenant_id,
        "fired_at": fired_at,
        "node": node,
        "outcome": outcome,
        "coalesced": coalesced,
        "run_id": run_id,
    }
    return insert_ignoring_duplicates(conn, schedule_fires, [row]) == 1


def set_fire_task(
    conn: Connection, schedule_id: str, scheduled_for: datetime, task_id: int
) -> None:
    conn.execute(
        update(schedule_fires)
        .where(
            schedule_fires.c.schedule_id == schedule_id,
            schedule_fires.c.scheduled_for == scheduled_for,
        )
        .values(task_id=task_id)
    )


def run_state(conn: Connection, run_id: str) -> str | None:
    """The state of a schedule's last run (None: no such run), for ``overlap: skip``."""
    state = conn.execute(select(runs.c.state).where(runs.c.id == run_id)).scalar_one_or_none()
    return None if state is None else str(state)


def earliest_due(conn: Connection) -> datetime | None:
    """When the next enabled, unpaused schedule or monitor is due."""
    value = conn.execute(
        select(func.min(schedules.c.next_run_at, type_=UtcDateTime())).where(
            schedules.c.enabled.is_(True), schedules.c.paused.is_(False)
        )
    ).scalar_one_or_none()
    return value if isinstance(value, datetime) else None


# -- operator views and actions -----------------------------------------------------


def get_schedule(conn: Connection, schedule_id: str) -> Any:
    """The row with this id, or None."""
    return conn.execute(select(schedules).where(schedules.c.id == schedule_id)).first()


def find_schedule(conn: Connection, tenant_id: str, workspace_id: str, kind: str, name: str) -> Any:
    """The row of one named schedule or monitor of a tenant's workspace, or None."""
    return conn.execute(
        select(schedules).where(
            schedules.c.tenant_id == tenant_id,
            schedules.c.workspace_id == workspace_id,
            schedules.c.kind == kind,
            schedules.c.name == name,
        )
    ).first()


def list_schedules(
    conn: Connection, tenant_id: str, workspace_id: str, kind: str | None = None
) -> list[Any]:
    """A workspace's rows by kind then name (``kind`` None: schedules and monitors)."""
    query = select(schedules).where(
        schedules.c.tenant_id == tenant_id, schedules.c.workspace_id == workspace_id
    )
    if kind is not None:
        query = query.where(schedules.c.kind == kind)
    return list(conn.execute(query.order_by(schedules.c.kind, schedules.c.name)))


def set_paused(
    conn: Connection, schedule_id: str, paused: bool, *, next_run_at: datetime | None = None
) -> Any:
    """Pause or resume; ``next_run_at`` is written only when given. Returns the row."""
    values: dict[str, Any] = {"paused": paused}
    if next_run_at is not None:
        values["next_run_at"] = next_run_at
    update_schedule(conn, schedule_id, **values)
    return conn.execute(select(schedules).where(schedules.c.id == schedule_id)).one()


def recent_fires(conn: Connection, schedule_id: str, limit: int) -> list[Any]:
    """The fire log of one schedule, latest scheduled time first."""
    return list(
        conn.execute(
            select(schedule_fires)
            .where(schedule_fires.c.schedule_id == schedule_id)
            .order_by(desc(schedule_fires.c.scheduled_for))
            .limit(limit)
        )
    )
