"""The task queue's port: what every backend (Postgres, SQLite) offers.

A task is claimed under a *lease*: an owner, an expiry that heartbeats extend, and a
``lease_token`` that is new on every claim. Every write made on behalf of a held task
(heartbeat, complete, fail, release, a checkpoint in another table) carries the token
in its ``WHERE``; zero rows matched means the lease was lost (expired, reaped and
perhaps re-claimed by another worker) and raises :class:`LeaseLost`, so a worker that
lost its lease can never overwrite the work of the one that took over.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, cast

from sqlalchemy import Connection, Engine, Row

from quarry.core.errors import Conflict

log = logging.getLogger(__name__)
DEFAULT_QUEUE = "default"
NOTIFY_CHANNEL = "quarry_tasks"
CANCEL_CHANNEL = "quarry_task_cancel"
"""Postgres channel a cancel of a running task is announced on (payload: the task id),
so the worker holding it heartbeats at once instead of at its next beat."""


class LeaseLost(Conflict):
    """The lease on a task is no longer held by this worker; nothing was written."""

    code = "lease_lost"


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff: ``min(max, base * 2 ** (attempts - 1))`` seconds."""

    backoff_base: float = 1.0
    backoff_max: float = 300.0

    def delay(self, attempts: int) -> float:
        return float(min(self.backoff_max, self.backoff_base * 2 ** max(attempts - 1, 0)))


def _as_utc(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        raise TypeError(f"expected a datetime, got {value!r}")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _required_utc(value: Any) -> datetime:
    result = _as_utc(value)
    if result is None:
        raise ValueError("missing timestamp")
    return result


@dataclass(frozen=True)
class Task:
    id: int
    tenant_id: str
    queue: str
    kind: str
    payload: Any
    state: str
    priority: int
    attempts: int
    max_attempts: int
    run_after: datetime
    lease_owner: str | None
    lease_token: str | None
    lease_expires_at: datetime | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    last_error: str | None
    result: Any
    cancel_requested: bool
    dedupe_key: str | None
    # Set by the worker when cancellation is requested or the lease is lost: a
    # long-running handler should check it and stop early.
    stop_event: threading.Event = field(default_factory=threading.Event, compare=False, repr=False)

    @classmethod
    def from_row(cls, row: Row[Any] | Mapping[str, Any]) -> Task:
        m = cast(Mapping[str, Any], row._mapping if isinstance(row, Row) else row)
        return cls(
            id=int(m["id"]),
            tenant_id=m["tenant_id"],
            queue=m["queue"],
            kind=m["kind"],
            payload=json.loads(m["payload"]),
            state=m["state"],
            priority=int(m["priority"]),
            attempts=int(m["attempts"]),
            max_attempts=int(m["max_attempts"]),
            run_after=_required_utc(m["run_after"]),
            lease_owner=m["lease_owner"],
            lease_token=m["lease_token"],
            lease_expires_at=_as_utc(m["lease_expires_at"]),
            created_at=_required_utc(m["created_at"]),
            started_at=_as_utc(m["started_at"]),
            finished_at=_as_utc(m["finished_at"]),
            last_error=m["last_error"],
            result=None if m["result"] is None else json.loads(m["result"]),
            cancel_requested=bool(m["cancel_requested"]),
            dedupe_key=m["dedupe_key"],
        )

    def held_token(self) -> str:
        if self.lease_token is None:
            raise LeaseLost(f"task {self.id} is not held under a lease", task_id=self.id)
        return self.lease_token


@dataclass(frozen=True)
class Enqueued:
    id: int
    created: bool  # False: a task with the same dedupe key already existed


@dataclass(frozen=True)
class Reaped:
    id: int
    tenant_id: str
    state: str  # queued (retried), failed (attempts exhausted) or cancelled
    attempts: int


@dataclass(frozen=True)
class Settled:
    state: str  # queued (will retry), failed or cancelled
    run_after: datetime | None


@dataclass(frozen=True)
class QueueCount:
    tenant_id: str
    queue: str
    state: str
    count: int
    oldest_created_at: datetime | None


class EnqueueGuard(Protocol):
    """Hook for per-tenant caps on queued work (runtime/queue/caps.py): called in the
    enqueue transaction before the insert, with how many tasks are about to be queued
    for that tenant and queue; raise to refuse them all."""

    def __call__(self, conn: Connection, tenant_id: str, queue: str, incoming: int = 1) -> None: ...


@dataclass(frozen=True)
class NewTask:
    """One task of a bulk enqueue (``TaskQueue.enqueue_many``)."""

    tenant_id: str
    kind: str
    payload: Any = None
    queue: str = DEFAULT_QUEUE
    priority: int = 0
    max_attempts: int = 3
    delay: float = 0.0
    dedupe_key: str | None = None


def new_token() -> str:
    return str(uuid.uuid4())


_ENCODER = json.JSONEncoder(separators=(",", ":"), sort_keys=True, default=str)


def dump_json(value: Any) -> str:
    """Compact, key-sorted JSON. One encoder for the process: ``json.dumps`` with
    options builds a new one per call, which was a third of a bulk enqueue's Python
    time (one call per task)."""
    return _ENCODER.encode(value)


class TaskQueue(ABC):
    """A durable queue of tasks on the state database."""

    dialect: str

    def __init__(
        self,
        engine: Engine,
        *,
        retry: RetryPolicy | None = None,
        enqueue_guard: EnqueueGuard | None = None,
    ) -> None:
        self.engine = engine
        self.retry = retry or RetryPolicy()
        self.enqueue_guard = enqueue_guard
        self._cancel_listeners: list[Callable[[int], None]] = []

    def add_cancel_listener(self, listener: Callable[[int], None]) -> None:
        """Call ``listener(task_id)`` when this queue object asks a running task to
        stop: a worker in the same process (local mode, in-process workers) looks at
        once rather than at its next heartbeat. Other processes hear it through
        :data:`CANCEL_CHANNEL` (Postgres)."""
        self._cancel_listeners.append(listener)

    def remove_cancel_listener(self, listener: Callable[[int], None]) -> None:
        if listener in self._cancel_listeners:
            self._cancel_listeners.remove(listener)

    def _cancel_announced(self, task_id: int, state: str | None) -> None:
        """After :meth:`cancel`: tell this process's listeners of a running task."""
        if state != "running":
            return
        for listener in list(self._cancel_listeners):
            try:
                listener(task_id)
            except Exception:
                log.warning("a cancel listener failed", exc_info=True)

    @contextmanager
    def pinned(self, *, async_commit: bool = False) -> Iterator[None]:
        """Let this thread reuse one connection for queue operations (a worker loop);
        with ``async_commit`` its bookkeeping may commit asynchronously (Postgres)."""
        yield

    # -- producing ---------------------------------------------------------------

    @abstractmethod
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
        """Queue a task. Lower ``priority`` runs first within a tenant.

        With ``conn`` the insert (and the wake-up) joins the caller's transaction, so
        a scheduler can advance its schedule and enqueue the run atomically.
        """

    # -- consuming ---------------------------------------------------------------

    def enqueue_many(
        self, tasks: Sequence[NewTask], *, conn: Connection | None = None
    ) -> list[Enqueued]:
        """Queue ``tasks`` together (all or none), in order; inside ``conn``'s transaction
        when given. The caps are checked once per tenant and queue for the whole batch.
        This version inserts one by one in one transaction; Postgres overrides it with
        a single statement."""
        if not tasks:
            return []
        if conn is None:
            with self.engine.begin() as own:
                return self.enqueue_many(tasks, conn=own)
        # The batch check first (it counts the whole batch); each insert's own check
        # then passes, the batch having made room for all of them.
        self.check_caps(conn, tasks)
        return [
            self.enqueue(
                t.tenant_id,
                t.kind,
                t.payload,
                queue=t.queue,
                priority=t.priority,
                max_attempts=t.max_attempts,
                delay=t.delay,
                dedupe_key=t.dedupe_key,
                conn=conn,
            )
            for t in tasks
        ]

    def check_caps(self, conn: Connection, tasks: Sequence[NewTask]) -> None:
        """One guard call per (tenant, queue) in the batch, counting what it adds."""
        if self.enqueue_guard is None:
            return
        incoming: dict[tuple[str, str], int] = {}
        for t in tasks:
            incoming[(t.tenant_id, t.queue)] = incoming.get((t.tenant_id, t.queue), 0) + 1
        for (tenant_id, queue), count in sorted(incoming.items()):
            self.enqueue_guard(conn, tenant_id, queue, count)

    @abstractmethod
    def claim(
        self, owner: str, *, queue: str = DEFAULT_QUEUE, lease_seconds: float = 30.0
    ) -> Task | None:
        """Take the next eligible task (fair across tenants) under a new lease."""

    def complete_and_claim(
        self,
        task: Task,
        result: Any,
        owner: str,
        *,
        queue: str = DEFAULT_QUEUE,
        lease_seconds: float = 30.0,
    ) -> tuple[bool, Task | None]:
        """Complete ``task`` and claim the next one; returns (completed, next task).

        ``completed`` is False when the lease on ``task`` was lost (nothing written for
        it). Backends may do both in one statement (one round trip, one commit)."""
        try:
            self.complete(task, result)
            completed = True
        except LeaseLost:
            completed = False
        return completed, self.claim(owner, queue=queue, lease_seconds=lease_seconds)

    # -- batches (a batched worker; see runtime/queue/batch.py) -------------------------
    # The defaults loop over the single-task operations; Postgres does each in one
    # statement. Every task in a batch keeps its own lease and is fenced on its own.

    def complete_many_and_claim(
        self,
        done: Sequence[tuple[Task, Any]],
        owner: str,
        *,
        queue: str = DEFAULT_QUEUE,
        lease_seconds: float = 30.0,
        limit: int = 10,
    ) -> tuple[set[int], list[Task]]:
        """Complete the held ``(task, result)`` pairs and claim up to ``limit`` tasks
        (fair across tenants); returns (ids completed, tasks claimed in order).

        A task missing from the ids had lost its lease: nothing was written for it."""
        completed = self.complete_many(done)
        claimed: list[Task] = []
        while len(claimed) < limit:
            task = self.claim(owner, queue=queue, lease_seconds=lease_seconds)
            if task is None:
                break
            claimed.append(task)
        return completed, claimed

    def complete_many(self, done: Sequence[tuple[Task, Any]]) -> set[int]:
        """Record success for each held task; returns the ids whose lease still held."""
        completed: set[int] = set()
        for task, result in done:
            try:
                self.complete(task, result)
            except LeaseLost:
                continue
            completed.add(task.id)
        return completed

    def heartbeat_many(
        self, tasks: Sequence[Task], *, lease_seconds: float = 30.0
    ) -> dict[int, bool]:
        """Extend every held lease; returns {id: cancellation requested} for those
        still held (a task missing from it lost its lease)."""
        held: dict[int, bool] = {}
        for task in tasks:
            try:
                held[task.id] = self.heartbeat(task, lease_seconds=lease_seconds)
            except LeaseLost:
                continue
        return held

    def release_many(self, tasks: Sequence[Task]) -> set[int]:
        """Give held tasks back without counting their attempts; the ids released."""
        released: set[int] = set()
        for task in tasks:
            try:
                self.release(task)
            except LeaseLost:
                continue
            released.add(task.id)
        return released

    @abstractmethod
    def heartbeat(self, task: Task, *, lease_seconds: float = 30.0) -> bool:
        """Extend the lease; returns whether cancellation was requested.

        Raises :class:`LeaseLost` when the lease is no longer held."""

    @abstractmethod
    def complete(self, task: Task, result: Any = None) -> None:
        """Record success. Raises :class:`LeaseLost` when the lease is no longer held."""

    @abstractmethod
    def fail(self, task: Task, error: str, *, retry: bool = True) -> Settled:
        """Record a failure: re-queue with backoff while attempts remain (and ``retry``),
        else fail; a task whose cancellation was requested becomes ``cancelled``."""

    @abstractmethod
    def release(self, task: Task) -> None:
        """Give a held task back without counting the attempt (graceful shutdown)."""

    @abstractmethod
    def acknowledge_cancel(self, task: Task, reason: str = "cancelled") -> None:
        """The holder stopped a task whose cancellation was requested."""

    # -- control and upkeep --------------------------------------------------------

    @abstractmethod
    def cancel(self, task_id: int) -> str | None:
        """Cancel a queued task at once or ask a running one to stop.

        Returns the task's state afterwards, or None if it was already finished."""

    @abstractmethod
    def reap_expired(self, *, limit: int = 100) -> list[Reaped]:
        """Re-queue tasks whose lease expired (the attempt stays counted), failing
        those that have used ``max_attempts``; cancels those asked to stop."""

    @abstractmethod
    def get(self, task_id: int) -> Task | None: ...

    @abstractmethod
    def counts(self) -> list[QueueCount]: ...

    @abstractmethod
    def purge_finished(self, older_than_seconds: float) -> int: ...

    @abstractmethod
    def fence(self, conn: Connection, task: Task) -> None:
        """Inside ``conn``'s transaction: lock the task row if this lease still holds
        it, else raise :class:`LeaseLost`. Writes made after it in the same transaction
        commit only while the lease is held."""

    @contextmanager
    def fenced_transaction(self, task: Task) -> Iterator[Connection]:
        """A transaction that commits only if ``task``'s lease is still held."""
        with self.engine.begin() as conn:
            self.fence(conn, task)
            yield conn


def fenced(conn: Connection, task: Task) -> None:
    """Guard a checkpoint write in another table: call first inside the transaction.

    Works on either backend (dispatching on the connection's dialect)."""
    if conn.dialect.name == "postgresql":
        from quarry.store.queue.postgres import fence_postgres

        fence_postgres(conn, task)
    else:
        from quarry.store.queue.sqlite import fence_sqlite

        fence_sqlite(conn, task)


def open_queue(engine: Engine, **kwargs: Any) -> TaskQueue:
    """The queue backend for this state database."""
    if engine.dialect.name == "postgresql":
        from quarry.store.queue.postgres import PostgresQueue

        return PostgresQueue(engine, **kwargs)
    from quarry.store.queue.sqlite import SqliteQueue

    return SqliteQueue(engine, **kwargs)


def utc(value: datetime) -> datetime:
    return _required_utc(value)


def oldest_age_seconds(counts: list[QueueCount], state: str = "queued") -> float:
    """Age of the oldest task in ``state`` across ``counts`` (0 when there is none)."""
    oldest = [c.oldest_created_at for c in counts if c.state == state and c.oldest_created_at]
    if not oldest:
        return 0.0
    return max(0.0, (datetime.now(UTC) - min(oldest)).total_seconds())
