"""The durable task queue's table (see ``docs/queue.md``).

One row per task. A task moves ``queued -> running -> succeeded | failed | cancelled``;
an expired lease or a retryable failure moves it from ``running`` back to ``queued``
with ``run_after`` pushed out by exponential backoff. Every write a worker makes while
it holds a task carries ``lease_token`` (new on each claim) in its ``WHERE``: a worker
whose lease was taken over matches no row and cannot overwrite the new holder's work.

``tenant_id`` is a label, not a foreign key: the queue is infrastructure shared by
every tenant and must accept work (schedules, upkeep) before any tenant row exists.
``dedupe_key`` is unique per tenant when set (NULLs never collide on either backend),
which makes "enqueue the run for schedule X due at T" idempotent.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    event,
    text,
)
from sqlalchemy.engine import Engine

from quarry.store.tables import ID, metadata
from quarry.store.types import UtcDateTime

TASK_STATES = ("queued", "running", "succeeded", "failed", "cancelled")

tasks = Table(
    "tasks",
    metadata,
    Column(
        "id",
        BigInteger().with_variant(Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    Column("tenant_id", ID, nullable=False),
    Column("queue", String(100), nullable=False),
    Column("kind", String(200), nullable=False),
    Column("payload", Text, nullable=False),
    Column("state", String(16), nullable=False),
    Column("priority", Integer, nullable=False, server_default=text("0")),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("max_attempts", Integer, nullable=False, server_default=text("3")),
    Column("run_after", UtcDateTime(), nullable=False),
    Column("lease_owner", String(200), nullable=True),
    Column("lease_token", String(36), nullable=True),
    Column("lease_expires_at", UtcDateTime(), nullable=True),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("started_at", UtcDateTime(), nullable=True),
    Column("finished_at", UtcDateTime(), nullable=True),
    Column("last_error", Text, nullable=True),
    Column("result", Text, nullable=True),
    Column("cancel_requested", Boolean, nullable=False, server_default=text("false")),
    Column("dedupe_key", String(500), nullable=True),
    UniqueConstraint("tenant_id", "dedupe_key"),
    CheckConstraint(
        "state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')", name="state"
    ),
)

# The indexes are partial on both backends (the migration creates them so). Their
# PostgreSQL ``WHERE`` is attached when a PostgreSQL connection is first made, not
# here: a ``postgresql_*`` argument makes SQLAlchemy import its PostgreSQL dialect
# (~0.1 s) to validate it, which ``quarry run`` on SQLite would pay for nothing.
_PARTIAL: dict[str, str] = {
    "ix_tasks_claim": "state = 'queued'",
    "ix_tasks_running": "state = 'running'",
    "ix_tasks_started": "started_at IS NOT NULL",
}

# Claiming: per queue, the distinct tenants with queued work (a skip scan), then one
# tenant's next task in (priority, id) order. Partial, so it holds queued rows only.
Index(
    "ix_tasks_claim",
    tasks.c.queue,
    tasks.c.tenant_id,
    tasks.c.priority,
    tasks.c.id,
    sqlite_where=text(_PARTIAL["ix_tasks_claim"]),
)
# Running tasks: per-tenant load for fair claiming, and expired leases for the reaper.
Index(
    "ix_tasks_running",
    tasks.c.tenant_id,
    tasks.c.lease_expires_at,
    sqlite_where=text(_PARTIAL["ix_tasks_running"]),
)
# A tenant's most recent claim, the round-robin tie-break of fair claiming.
Index(
    "ix_tasks_started",
    tasks.c.tenant_id,
    tasks.c.started_at,
    sqlite_where=text(_PARTIAL["ix_tasks_started"]),
)


def postgres_partial_indexes() -> None:
    """Give the partial indexes their PostgreSQL ``WHERE`` (idempotent); done on the
    first PostgreSQL connection, before any DDL from this metadata can be emitted."""
    for index in tasks.indexes:
        where = _PARTIAL.get(str(index.name))
        if where is not None and index.dialect_options["postgresql"]["where"] is None:
            index.dialect_options["postgresql"]["where"] = text(where)


@event.listens_for(Engine, "do_connect")
def _on_connect(dialect: object, *_args: object) -> None:
    if getattr(dialect, "name", None) == "postgresql":
        postgres_partial_indexes()
