"""The task queue on Postgres: ``FOR UPDATE SKIP LOCKED`` claims, fair across tenants.

Fairness rule (also in ``docs/queue.md``): among the tenants with queued work in the
queue, a claim serves the tenant with the fewest running tasks; ties go to the tenant
served least recently (its latest claim is oldest, never-served first), then to the
tenant whose next task is oldest. Within a tenant, tasks run in (priority, id) order,
lower priority first. If the chosen tenant's next task is locked by a concurrent
claimer, the claim moves on to the next tenant in that order (``SKIP LOCKED``).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import cache
from typing import Any, cast

import psycopg
from psycopg import pq
from psycopg.rows import dict_row
from sqlalchemy import Connection, TextClause

from quarry.core.metrics import QUEUE_RECONNECTS
from quarry.store.queries import query, sql_text
from quarry.store.queue.port import (
    DEFAULT_QUEUE,
    Enqueued,
    LeaseLost,
    NewTask,
    QueueCount,
    Reaped,
    Settled,
    Task,
    TaskQueue,
    dump_json,
    new_token,
    utc,
)

SQL_FILE = "queue_postgres.sql"
IDLE = pq.TransactionStatus.IDLE

log = logging.getLogger(__name__)


def q(name: str) -> TextClause:
    return query(SQL_FILE, name)


@cache
def raw_sql(name: str) -> str:
    """The named query in psycopg's ``%(name)s`` style (for a pinned connection)."""
    text = sql_text(SQL_FILE, name).replace("%", "%%")
    return re.sub(r"(?<![:\w]):([a-z_][a-z0-9_]*)", r"%(\1)s", text)


Row = Mapping[str, Any]


def fence_postgres(conn: Connection, task: Task) -> None:
    row = conn.execute(q("fence"), {"id": task.id, "token": task.held_token()}).first()
    if row is None:
        raise LeaseLost(f"task {task.id}: lease lost; checkpoint refused", task_id=task.id)


class PostgresQueue(TaskQueue):
    dialect = "postgresql"

    def __init__(self, *args: Any, fair: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fair = fair
        # Every queue operation is one statement, atomic on its own: run them in
        # autocommit and save the BEGIN/COMMIT round trips (same pool as ``engine``).
        self._auto = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        self._pinned = threading.local()

    @contextmanager
    def pinned(self, *, async_commit: bool = False) -> Iterator[None]:
        """Within this block, this thread's queue operations reuse one connection and
        run as prepared statements straight on the driver (a worker loop: no pool
        checkout, ping or SQL compilation per claim, heartbeat or completion).

        ``async_commit`` sets ``synchronous_commit = off`` on that connection: claims,
        heartbeats and completions then return before their WAL is flushed, and a
        Postgres crash may forget the last fraction of a second of them, which only
        re-runs those tasks (their leases expire, as after any crash). Enqueues never
        run on such a connection, so no task is lost; a handler's checkpoints use
        their own, synchronous transactions.

        The connection is opened on first use and replaced after a failure that
        leaves it unusable (see :meth:`_after_error`): a restarted server, a
        terminated backend or a network cut costs the statement that hit it, never
        the worker (the caller retries with backoff; the next use reconnects)."""
        if getattr(self._pinned, "active", False):
            yield
            return
        self._pinned.active = True
        self._pinned.async_commit = async_commit
        self._pinned.conn = None
        self._pinned.lost = False
        try:
            try:
                self._held()
            except Exception:
                # The database is away: the first operation will try again.
                log.warning("queue: could not open the pinned connection yet", exc_info=True)
            yield
        finally:
            held: Connection | None = self._pinned.conn
            self._pinned.active = False
            self._pinned.conn = None
            if held is not None:
                _close_pinned(held, reset=async_commit)

    def _held(self) -> Connection:
        """This thread's pinned connection, opened (again) if there is none."""
        held: Connection | None = self._pinned.conn
        if held is not None:
            return held
        held = self._auto.connect()
        try:
            if self._pinned.async_commit:
                held.exec_driver_sql("SET synchronous_commit = off")
        except BaseException:
            _discard(held)
            raise
        self._pinned.conn = held
        if self._pinned.lost:
            self._pinned.lost = False
            QUEUE_RECONNECTS.inc()
            log.warning("queue: reconnected the pinned connection")
        return held

    def _after_error(self, held: Connection) -> None:
        """After a statement on the pinned connection raised: keep the connection if
        it is still usable (a deadlock or serialization failure in autocommit leaves
        it idle), else discard it so the next operation reconnects. Never leaves it
        half-open: that is what used to wedge a worker on PendingRollbackError."""
        try:
            raw = cast(psycopg.Connection[Any], held.connection.driver_connection)
            if not raw.closed and not raw.broken and raw.info.transaction_status == IDLE:
                return
        except Exception:
            log.debug("queue: inspecting the pinned connection failed", exc_info=True)
        self._pinned.conn = None
        self._pinned.lost = True
        _discard(held)

    def _rows(self, name: str, params: dict[str, Any], *, durable: bool = False) -> list[Row]:
        """Run one named statement in autocommit; its rows as mappings. ``durable``
        statements never run on an asynchronously committing pinned connection."""
        pinned = getattr(self._pinned, "active", False)
        if pinned and durable and self._pinned.async_commit:
            pinned = False
        if not pinned:
            with self._auto.connect() as conn:
                result = conn.execute(q(name), params)
                return [cast(Row, r._mapping) for r in result] if result.returns_rows else []
        held = self._held()
        raw = cast(psycopg.Connection[Any], held.connection.driver_connection)
        try:
            with raw.cursor(row_factory=dict_row) as cur:
                cur.execute(raw_sql(name), params, prepare=True)
                # Not ``cur.description``: it builds a Column object per field, per call.
                res = cur.pgresult
                returned = res is not None and res.status == pq.ExecStatus.TUPLES_OK
                return list(cur.fetchall()) if returned else []
        except BaseException:
            self._after_error(held)
            raise

    def _one(self, name: str, params: dict[str, Any], *, durable: bool = False) -> Row | None:
        rows = self._rows(name, params, durable=durable)
        return rows[0] if rows else None

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
        params = {
            "tenant_id": tenant_id,
            "queue": queue,
            "kind": kind,
            "payload": dump_json(payload),
            "priority": priority,
            "max_attempts": max_attempts,
            "delay": float(delay),
            "dedupe_key": dedupe_key,
        }
        if conn is not None:
            return self._enqueue_in(conn, params)
        if self.enqueue_guard is not None:
            with self.engine.begin() as own:
                return self._enqueue_in(own, params)
        while True:
            row = self._one("enqueue", params, durable=True)
            if row is not None:
                return Enqueued(id=int(row["id"]), created=True)
            found = self._one("find_by_dedupe_key", _key(params), durable=True)
            if found is not None:
                return Enqueued(id=int(found["id"]), created=False)
            # the conflicting task was purged in between: insert again

    def enqueue_many(
        self, tasks: Sequence[NewTask], *, conn: Connection | None = None
    ) -> list[Enqueued]:
        """One statement for the whole batch (plus one cap check per tenant and queue):
        a multi-row ``INSERT … SELECT FROM json_to_recordset … RETURNING`` with one
        ``pg_notify`` per queue, delivered at commit. ``json``, not ``jsonb``: read
        once, it need not be converted, ~10 % of the statement for 1,000 tasks."""
        if not tasks:
            return []
        if conn is None:
            with self.engine.begin() as own:
                return self.enqueue_many(tasks, conn=own)
        self.check_caps(conn, tasks)
        rows = [
            {
                "ord": i,
                "tenant_id": t.tenant_id,
                "queue": t.queue,
                "kind": t.kind,
                "payload": dump_json(t.payload),
                "priority": t.priority,
                "max_attempts": t.max_attempts,
                "delay": float(t.delay),
                "dedupe_key": t.dedupe_key,
            }
            for i, t in enumerate(tasks)
        ]
        returned = conn.execute(q("enqueue_many"), {"rows": dump_json(rows)}).all()
        # Rows without a key were all inserted, their ids drawn in input order.
        fresh = iter(sorted(int(r.id) for r in returned if r.dedupe_key is None))
        keyed = {(r.tenant_id, r.dedupe_key): int(r.id) for r in returned if r.dedupe_key}
        result: list[Enqueued] = []
        for t, params in zip(tasks, rows, strict=True):
            if t.dedupe_key is None:
                result.append(Enqueued(id=next(fresh), created=True))
            elif (t.tenant_id, t.dedupe_key) in keyed:
                result.append(Enqueued(id=keyed.pop((t.tenant_id, t.dedupe_key)), created=True))
            else:  # queued before (or twice in this batch): the task that has the key
                single = {k: v for k, v in params.items() if k != "ord"}
                result.append(self._enqueue_in(conn, single))
        return result

    def _enqueue_in(self, conn: Connection, params: dict[str, Any]) -> Enqueued:
        if self.enqueue_guard is not None:
            self.enqueue_guard(conn, params["tenant_id"], params["queue"])
        while True:
            row = conn.execute(q("enqueue"), params).first()
            if row is not None:
                return Enqueued(id=int(row.id), created=True)
            found = conn.execute(q("find_by_dedupe_key"), _key(params)).first()
            if found is not None:
                return Enqueued(id=int(found.id), created=False)

    def claim(
        self, owner: str, *, queue: str = DEFAULT_QUEUE, lease_seconds: float = 30.0
    ) -> Task | None:
        row = self._one(
            "claim" if self.fair else "claim_unfair",
            {
                "queue": queue,
                "owner": owner,
                "token": new_token(),
                "lease_seconds": float(lease_seconds),
            },
        )
        return None if row is None else Task.from_row(row)

    def complete_and_claim(
        self,
        task: Task,
        result: Any,
        owner: str,
        *,
        queue: str = DEFAULT_QUEUE,
        lease_seconds: float = 30.0,
    ) -> tuple[bool, Task | None]:
        if not self.fair:
            return super().complete_and_claim(
                task, result, owner, queue=queue, lease_seconds=lease_seconds
            )
        row = self._one(
            "complete_and_claim",
            {
                "done_id": task.id,
                "done_token": task.held_token(),
                "result": dump_json(result),
                "queue": queue,
                "owner": owner,
                "token": new_token(),
                "lease_seconds": float(lease_seconds),
            },
        )
        assert row is not None
        return bool(row["completed"]), None if row["id"] is None else Task.from_row(row)

    def complete_many_and_claim(
        self,
        done: Sequence[tuple[Task, Any]],
        owner: str,
        *,
        queue: str = DEFAULT_QUEUE,
        lease_seconds: float = 30.0,
        limit: int = 10,
    ) -> tuple[set[int], list[Task]]:
        if not self.fair:
            return super().complete_many_and_claim(
                done, owner, queue=queue, lease_seconds=lease_seconds, limit=limit
            )
        rows = self._rows(
            "complete_many_and_claim",
            {
                **_done_params(done),
                "queue": queue,
                "owner": owner,
                "token": new_token(),
                "lease_seconds": float(lease_seconds),
                "batch": int(limit),
            },
        )
        completed = set(rows[0]["completed_ids"]) if rows else set()
        return completed, [Task.from_row(r) for r in rows if r["id"] is not None]

    def complete_many(self, done: Sequence[tuple[Task, Any]]) -> set[int]:
        if not done:
            return set()
        return {int(r["id"]) for r in self._rows("complete_many", _done_params(done))}

    def heartbeat_many(
        self, tasks: Sequence[Task], *, lease_seconds: float = 30.0
    ) -> dict[int, bool]:
        if not tasks:
            return {}
        rows = self._rows(
            "heartbeat_many", {**_held_params(tasks), "lease_seconds": float(lease_seconds)}
        )
        return {int(r["id"]): bool(r["cancel_requested"]) for r in rows}

    def release_many(self, tasks: Sequence[Task]) -> set[int]:
        if not tasks:
            return set()
        return {int(r["id"]) for r in self._rows("release_many", _held_params(tasks))}

    def _fenced_write(self, name: str, task: Task, **params: Any) -> Row:
        row = self._one(name, {"id": task.id, "token": task.held_token(), **params})
        if row is None:
            raise LeaseLost(f"task {task.id}: lease lost; {name} refused", task_id=task.id)
        return row

    def heartbeat(self, task: Task, *, lease_seconds: float = 30.0) -> bool:
        row = self._fenced_write("heartbeat", task, lease_seconds=float(lease_seconds))
        return bool(row["cancel_requested"])

    def complete(self, task: Task, result: Any = None) -> None:
        self._fenced_write("complete", task, result=dump_json(result))

    def fail(self, task: Task, error: str, *, retry: bool = True) -> Settled:
        row = self._fenced_write(
            "fail",
            task,
            error=error,
            retry=retry,
            backoff_base=float(self.retry.backoff_base),
            backoff_max=float(self.retry.backoff_max),
        )
        return Settled(state=row["state"], run_after=utc(row["run_after"]))

    def release(self, task: Task) -> None:
        self._fenced_write("release", task)

    def acknowledge_cancel(self, task: Task, reason: str = "cancelled") -> None:
        self._fenced_write("acknowledge_cancel", task, error=reason)

    def cancel(self, task_id: int) -> str | None:
        row = self._one("cancel", {"id": task_id}, durable=True)
        state = None if row is None else str(row["state"])
        self._cancel_announced(task_id, state)
        return state

    def reap_expired(self, *, limit: int = 100) -> list[Reaped]:
        rows = self._rows(
            "reap",
            {
                "limit": limit,
                "backoff_base": float(self.retry.backoff_base),
                "backoff_max": float(self.retry.backoff_max),
            },
        )
        return [
            Reaped(
                id=int(r["id"]),
                tenant_id=r["tenant_id"],
                state=r["state"],
                attempts=int(r["attempts"]),
            )
            for r in rows
        ]

    def get(self, task_id: int) -> Task | None:
        row = self._one("get", {"id": task_id})
        return None if row is None else Task.from_row(row)

    def counts(self) -> list[QueueCount]:
        return [
            QueueCount(
                tenant_id=r["tenant_id"],
                queue=r["queue"],
                state=r["state"],
                count=int(r["n"]),
                oldest_created_at=(
                    None if r["oldest_created_at"] is None else utc(r["oldest_created_at"])
                ),
            )
            for r in self._rows("counts", {})
        ]

    def purge_finished(self, older_than_seconds: float) -> int:
        rows = self._rows("purge_finished", {"older_than_seconds": float(older_than_seconds)})
        return len(rows)

    def fence(self, conn: Connection, task: Task) -> None:
        fence_postgres(conn, task)


def _discard(conn: Connection) -> None:
    """Drop a connection that may be broken: invalidated (the pool will not reuse
    it), then closed; neither step may raise."""
    try:
        conn.invalidate()
    except Exception:
        log.debug("queue: invalidating a broken connection failed", exc_info=True)
    try:
        conn.close()
    except Exception:
        log.debug("queue: closing a broken connection failed", exc_info=True)


def _close_pinned(conn: Connection, *, reset: bool) -> None:
    """Give the pinned connection back to the pool as it was taken (or drop it)."""
    try:
        if reset:
            conn.exec_driver_sql("RESET synchronous_commit")
        conn.close()
    except Exception:
        _discard(conn)


def _key(params: dict[str, Any]) -> dict[str, Any]:
    return {"tenant_id": params["tenant_id"], "dedupe_key": params["dedupe_key"]}


def _done_params(done: Sequence[tuple[Task, Any]]) -> dict[str, Any]:
    return {
        "done_ids": [t.id for t, _ in done],
        "done_tokens": [t.held_token() for t, _ in done],
        "results": [dump_json(r) for _, r in done],
    }


def _held_params(tasks: Sequence[Task]) -> dict[str, Any]:
    return {"ids": [t.id for t in tasks], "tokens": [t.held_token() for t in tasks]}
