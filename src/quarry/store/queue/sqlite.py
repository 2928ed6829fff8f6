"""The task queue on SQLite (local mode, one process), with the Postgres semantics.

Every write runs in ``BEGIN IMMEDIATE``, which takes SQLite's single write lock before
reading, so a claim's choice and its update cannot interleave with another writer's
(SQLite has no ``SKIP LOCKED``: it has nothing finer than the database lock). A
process-wide lock per queue keeps this process's threads from spinning on
``SQLITE_BUSY``. Fairness and fencing follow the same rules as on Postgres.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, TextClause

from quarry.core.clock import utcnow
from quarry.store.queries import query
from quarry.store.queue.port import (
    DEFAULT_QUEUE,
    Enqueued,
    LeaseLost,
    QueueCount,
    Reaped,
    Settled,
    Task,
    TaskQueue,
    dump_json,
    new_token,
    utc,
)

SQL_FILE = "queue_sqlite.sql"


def q(name: str) -> TextClause:
    return query(SQL_FILE, name)


def fence_sqlite(conn: Connection, task: Task) -> None:
    # A no-op write takes the write lock and checks the lease in one statement, so no
    # reap or re-claim can commit between this check and the caller's own writes.
    row = conn.execute(q("fence_lock"), {"id": task.id, "token": task.held_token()}).first()
    if row is None:
        raise LeaseLost(f"task {task.id}: lease lost; checkpoint refused", task_id=task.id)


class SqliteQueue(TaskQueue):
    dialect = "sqlite"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lock = threading.RLock()

    @contextmanager
    def _immediate(self) -> Iterator[Connection]:
        with self._lock, self.engine.connect() as conn:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.rollback()
                raise
            conn.commit()

    def enqueue(
        self,
        tenant_id: str,
        kind: str,
        payload: Any = None,
        *,
        queue: str = DEFAULT_QUEUE,
        priority: int = 0,
        max_attempts: int = 3,
        delay: float = 0.0,
        dedupe_key: str | None = None,
        conn: Connection | None = None,
    ) -> Enqueued:
        now = utcnow()
        params = {
            "tenant_id": tenant_id,
            "queue": queue,
            "kind": kind,
            "payload": dump_json(payload),
            "priority": priority,
            "max_attempts": max_attempts,
            "run_after": now + timedelta(seconds=delay),
            "now": now,
            "dedupe_key": dedupe_key,
        }
        if conn is not None:
            return self._enqueue(conn, params)
        with self._immediate() as own:
            return self._enqueue(own, params)

    def _enqueue(self, conn: Connection, params: dict[str, Any]) -> Enqueued:
        if self.enqueue_guard is not None:
            self.enqueue_guard(conn, params["tenant_id"], params["queue"])
        row = conn.execute(q("enqueue"), params).first()
        if row is not None:
            return Enqueued(id=int(row.id), created=True)
        existing = conn.execute(
            q("find_by_dedupe_key"),
            {"tenant_id": params["tenant_id"], "dedupe_key": params["dedupe_key"]},
        ).first()
        if existing is None:
            raise RuntimeError("enqueue inserted nothing and found no task with its key")
        return Enqueued(id=int(existing.id), created=False)

    def claim(
        self, owner: str, *, queue: str = DEFAULT_QUEUE, lease_seconds: float = 30.0
    ) -> Task | None:
        now = utcnow()
        with self._immediate() as conn:
            row = conn.execute(
                q("claim"),
                {
                    "queue": queue,
                    "owner": owner,
                    "token": new_token(),
                    "now": now,
                    "lease_until": now + timedelta(seconds=lease_seconds),
                },
            ).first()
        return None if row is None else Task.from_row(row)

    def _fenced_write(self, conn: Connection, name: str, task: Task, **params: Any) -> Any:
        row = conn.execute(q(name), {"id": task.id, "token": task.held_token(), **params}).first()
        if row is None:
            raise LeaseLost(f"task {task.id}: lease lost; {name} refused", task_id=task.id)
        return row

    def heartbeat(self, task: Task, *, lease_seconds: float = 30.0) -> bool:
        with self._immediate() as conn:
            until = utcnow() + timedelta(seconds=lease_seconds)
            row = self._fenced_write(conn, "heartbeat", task, lease_until=until)
        return bool(row.cancel_requested)

    def complete(self, task: Task, result: Any = None) -> None:
        with self._immediate() as conn:
            self._fenced_write(conn, "complete", task, result=dump_json(result), now=utcnow())

    def fail(self, task: Task, error: str, *, retry: bool = True) -> Settled:
        with self._immediate() as conn:
            held = self._fenced_write(conn, "held", task)
            now = utcnow()
            run_after = None
            if held.cancel_requested:
                state = "cancelled"
            elif retry and held.attempts < held.max_attempts:
                state = "queued"
                run_after = now + timedelta(seconds=self.retry.delay(int(held.attempts)))
            else:
                state = "failed"
            row = self._fenced_write(
                conn, "settle", task, state=state, run_after=run_after, now=now, error=error
            )
        return Settled(state=row.state, run_after=utc(row.run_after))

    def release(self, task: Task) -> None:
        with self._immediate() as conn:
            self._fenced_write(conn, "release", task, now=utcnow())

    def acknowledge_cancel(self, task: Task, reason: str = "cancelled") -> None:
        with self._immediate() as conn:
            self._fenced_write(
                conn, "settle", task, state="cancelled", run_after=None, now=utcnow(), error=reason
            )

    def cancel(self, task_id: int) -> str | None:
        with self._immediate() as conn:
            row = conn.execute(q("cancel"), {"id": task_id, "now": utcnow()}).first()
        state = None if row is None else str(row.state)
        self._cancel_announced(task_id, state)
        return state

    def reap_expired(self, *, limit: int = 100) -> list[Reaped]:
        reaped: list[Reaped] = []
        with self._immediate() as conn:
            now = utcnow()
            rows = conn.execute(q("expired"), {"now": now, "limit": limit}).all()
            for r in rows:
                run_after = None
                if r.cancel_requested:
                    state = "cancelled"
                elif r.attempts >= r.max_attempts:
                    state = "failed"
                else:
                    state = "queued"
                    run_after = now + timedelta(seconds=self.retry.delay(int(r.attempts)))
                conn.execute(
                    q("settle"),
                    {
                        "id": r.id,
                        "token": r.lease_token,
                        "state": state,
                        "run_after": run_after,
                        "now": now,
                        "error": f"lease expired (held by {r.lease_owner or '?'})",
                    },
                )
                reaped.append(
                    Reaped(id=int(r.id), tenant_id=r.tenant_id, state=state, attempts=r.attempts)
                )
        return reaped

    def get(self, task_id: int) -> Task | None:
        with self.engine.connect() as conn:
            row = conn.execute(q("get"), {"id": task_id}).first()
        return None if row is None else Task.from_row(row)

    def counts(self) -> list[QueueCount]:
        with self.engine.connect() as conn:
            rows = conn.execute(q("counts")).all()
        return [
            QueueCount(
                tenant_id=r.tenant_id,
                queue=r.queue,
                state=r.state,
                count=int(r.n),
                oldest_created_at=None if r.oldest_created_at is None else utc(r.oldest_created_at),
            )
            for r in rows
        ]

    def purge_finished(self, older_than_seconds: float) -> int:
        with self._immediate() as conn:
            cutoff = utcnow() - timedelta(seconds=older_than_seconds)
            result = conn.execute(q("purge_finished"), {"cutoff": cutoff})
        return int(result.rowcount or 0)

    def fence(self, conn: Connection, task: Task) -> None:
        fence_sqlite(conn, task)

    @contextmanager
    def fenced_transaction(self, task: Task) -> Iterator[Connection]:
        with self._immediate() as conn:
            fence_sqlite(conn, task)
            yield conn
