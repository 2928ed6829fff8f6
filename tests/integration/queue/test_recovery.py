"""Workers, the reaper and the schedule driver survive database failures (issue #13
item 3, issue #20): a terminated backend, a database refusing connections.

Each test breaks the real database under a real loop and asserts the loop recovers
on its own; the fleet tests (tests/fleet/queue/test_db_restart.py) restart a whole
cluster under worker processes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from quarry.core.metrics import QUEUE_RECONNECTS
from quarry.runtime.queue import TaskQueue
from quarry.runtime.queue.batch import make_worker
from quarry.runtime.queue.health import LOOPS
from quarry.runtime.queue.worker import Worker
from quarry.scheduling.driver import Driver
from quarry.store.queue.port import Task
from tests.integration.queue.helpers import wait_for
from tests.support.services import pg_admin_execute


def _dsn(engine: Engine) -> str:
    return engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


def _terminate_others(engine: Engine, *, pid: int | None = None) -> int:
    """Terminate ``pid``, or every other backend of the engine's database."""
    where = "pid = %(pid)s" if pid is not None else "pid <> pg_backend_pid()"
    with psycopg.connect(_dsn(engine), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "  # type: ignore[arg-type]
            f"WHERE datname = current_database() AND {where}",
            {"pid": pid},
        ).fetchall()
    return len(rows)


@contextmanager
def _database_refusing_connections(engine: Engine) -> Iterator[None]:
    """The database is away: new connections are refused, live ones are cut."""
    name = engine.url.database
    pg_admin_execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
    try:
        pg_admin_execute(
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
        )
        yield
    finally:
        pg_admin_execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')


def _succeeded(queue: TaskQueue) -> int:
    """Tasks succeeded so far (-1 when this probe's own connection was just cut)."""
    try:
        with queue.engine.connect() as conn:
            return int(
                conn.execute(
                    text("SELECT count(*) FROM tasks WHERE state = 'succeeded'")
                ).scalar_one()
            )
    except DBAPIError as exc:
        if exc.connection_invalidated:
            return -1
        raise


@contextmanager
def _running(worker: Worker) -> Iterator[Worker]:
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        assert worker.wait_ready(10)
        yield worker
    finally:
        worker.request_stop()
        thread.join(30)
        assert not thread.is_alive()


def _pinned_pid(queue: TaskQueue) -> int:
    held = queue._pinned.conn  # type: ignore[attr-defined]
    return int(held.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())


def test_a_terminated_pinned_connection_costs_one_statement_not_the_worker(
    pg_queue: TaskQueue,
) -> None:
    for _ in range(3):
        pg_queue.enqueue("acme", "x")
    with pg_queue.pinned(async_commit=True):
        first = pg_queue.claim("w")
        assert first is not None
        _terminate_others(pg_queue.engine, pid=_pinned_pid(pg_queue))
        with pytest.raises(psycopg.OperationalError):
            pg_queue.claim("w")
        before = QUEUE_RECONNECTS._value.get()
        # Before the fix every later call raised PendingRollbackError, for good.
        second = pg_queue.claim("w")
        assert second is not None and second.id != first.id
        assert QUEUE_RECONNECTS._value.get() == before + 1
        held = pg_queue._pinned.conn  # type: ignore[attr-defined]
        assert held.exec_driver_sql("SHOW synchronous_commit").scalar() == "off"
        # The lease taken before the cut is still ours: its fenced write goes through.
        pg_queue.complete(first, "ok")
    done = pg_queue.get(first.id)
    assert done is not None and done.state == "succeeded"


def test_an_error_that_leaves_the_connection_usable_keeps_it(pg_queue: TaskQueue) -> None:
    """A lock timeout (like a deadlock or a serialization failure, a class of errors
    after which an autocommit connection is idle again) fails that statement only:
    the next one runs on the same connection, without a reconnect."""
    pg_queue.enqueue("acme", "x")
    url = _dsn(pg_queue.engine)
    with pg_queue.pinned(async_commit=True), psycopg.connect(url) as peer:
        task = pg_queue.claim("w")
        assert task is not None
        pid = _pinned_pid(pg_queue)
        held = pg_queue._pinned.conn  # type: ignore[attr-defined]
        held.exec_driver_sql("SET lock_timeout = '100ms'")
        peer.execute("SELECT 1 FROM tasks WHERE id = %s FOR UPDATE", (task.id,))
        with pytest.raises(psycopg.errors.LockNotAvailable):
            pg_queue.heartbeat(task)
        peer.rollback()
        before = QUEUE_RECONNECTS._value.get()
        # Before the fix this (and every later call) raised PendingRollbackError.
        assert pg_queue.heartbeat(task) is False
        assert _pinned_pid(pg_queue) == pid
        assert QUEUE_RECONNECTS._value.get() == before
        pg_queue.complete(task, "ok")


def _record_handler(seen: list[int]) -> Callable[[Task], object]:
    def handle(task: Task) -> object:
        seen.append(task.id)
        return None

    return handle


WORKER_KINDS = pytest.mark.parametrize("batch_size", [1, 10], ids=["single", "batch"])


@WORKER_KINDS
def test_a_worker_keeps_claiming_after_its_backends_are_terminated(
    pg_queue: TaskQueue, batch_size: int
) -> None:
    seen: list[int] = []
    worker = make_worker(pg_queue, _record_handler(seen), batch_size=batch_size, poll_interval=0.2)
    with _running(worker):
        for _ in range(5):
            pg_queue.enqueue("acme", "x")
        wait_for(lambda: _succeeded(pg_queue) == 5, timeout=10, what="the first five tasks")
        assert _terminate_others(pg_queue.engine) >= 1
        for _ in range(5):
            pg_queue.enqueue("acme", "x")
        wait_for(lambda: _succeeded(pg_queue) == 10, timeout=10, what="five more after the cut")
    assert sorted(seen) == sorted(set(seen)) and len(seen) == 10
    assert worker.stats.succeeded == 10 and worker.stats.lease_lost == 0


@WORKER_KINDS
def test_an_outcome_that_failed_to_record_is_retried_under_its_lease(
    pg_queue: TaskQueue, batch_size: int
) -> None:
    """The handler cuts every connection of the database just before it returns:
    the worker's completion fails, is retried after reconnecting, and lands."""

    def cut_then_return(task: Task) -> object:
        _terminate_others(pg_queue.engine)
        return {"id": task.id}

    worker = make_worker(pg_queue, cut_then_return, batch_size=batch_size, poll_interval=0.2)
    with _running(worker):
        enq = pg_queue.enqueue("acme", "x")
        wait_for(lambda: _succeeded(pg_queue) == 1, timeout=15, what="the completion")
    task = pg_queue.get(enq.id)
    assert task is not None
    assert (task.state, task.attempts, task.result) == ("succeeded", 1, {"id": enq.id})
    assert worker.stats.succeeded == 1 and worker.stats.lease_lost == 0


def test_a_retried_outcome_is_refused_once_the_lease_is_lost(pg_queue: TaskQueue) -> None:
    """Retries keep the fence: while the worker could not write, its lease went to
    another owner; the retried completion must not overwrite that owner's task."""
    taken = threading.Event()

    def lose_lease_then_return(task: Task) -> object:
        with pg_queue.engine.begin() as conn:
            conn.execute(
                text(
                    "UPDATE tasks SET lease_token = 'new-owner', lease_owner = 'other' "
                    "WHERE id = :id"
                ),
                {"id": task.id},
            )
        _terminate_others(pg_queue.engine)
        taken.set()
        return "stale"

    worker = make_worker(pg_queue, lose_lease_then_return, poll_interval=0.2)
    with _running(worker):
        enq = pg_queue.enqueue("acme", "x")
        wait_for(lambda: worker.stats.lease_lost == 1, timeout=15, what="the refused retry")
    task = pg_queue.get(enq.id)
    assert taken.is_set() and task is not None
    assert (task.state, task.lease_owner, task.result) == ("running", "other", None)
    assert worker.stats.succeeded == 0


@WORKER_KINDS
def test_readiness_fails_while_claims_fail_and_recovers_with_the_database(
    pg_queue: TaskQueue, batch_size: int
) -> None:
    seen: list[int] = []
    worker = make_worker(pg_queue, _record_handler(seen), batch_size=batch_size, poll_interval=0.2)
    with _running(worker):
        pg_queue.enqueue("acme", "x")
        wait_for(lambda: len(seen) == 1, timeout=10, what="the first task")
        assert LOOPS.check(0.5) == "ok"
        with _database_refusing_connections(pg_queue.engine):
            problem = wait_for(
                lambda: next((p for p in LOOPS.problems(0.5) if worker.owner in p), None),
                timeout=10,
                what="the worker to report its failing claims",
            )
            assert "failing for" in problem and "OperationalError" in problem
        pg_queue.enqueue("acme", "x")
        wait_for(lambda: len(seen) == 2, timeout=10, what="a claim after the database is back")
        wait_for(lambda: LOOPS.check(0.5) == "ok", timeout=5, what="readiness to recover")


@dataclass(frozen=True)
class _Scheduling:
    """What the driver takes (scheduling.ticks.ScheduleServices): the queue's own
    database and the queue."""

    engine: Engine
    queue: TaskQueue


def test_the_driver_keeps_ticking_through_an_outage(pg_queue: TaskQueue) -> None:
    scheduling = _Scheduling(pg_queue.engine, pg_queue)
    driver = Driver(scheduling, interval=0.05, reap_interval=0.05)
    driver.start()
    try:
        wait_for(lambda: driver.stats.ticks >= 2, timeout=10, what="the first ticks")
        with _database_refusing_connections(pg_queue.engine):
            wait_for(
                lambda: any(driver.node in p for p in LOOPS.problems(0.3)),
                timeout=10,
                what="the driver to report its failing ticks",
            )
            ticks = driver.stats.ticks
        wait_for(lambda: driver.stats.ticks > ticks + 2, timeout=10, what="ticks after")
        wait_for(lambda: LOOPS.check(0.3) == "ok", timeout=5, what="readiness to recover")
        assert driver.stats.errors > 0
    finally:
        driver.stop()


def test_a_failure_streak_backs_off_and_a_success_ends_it() -> None:
    from quarry.runtime.queue.health import Backoff, LoopHealth

    health = LoopHealth("loop", backoff=Backoff(base=0.1, cap=1.0))
    delays: list[Any] = [health.failed("x", RuntimeError("boom")) for _ in range(8)]
    assert 0.05 <= delays[0] <= 0.1
    assert all(0.5 <= d <= 1.0 for d in delays[4:])  # capped, jittered in [cap/2, cap]
    assert health.problem(0.0) is not None and "RuntimeError" in str(health.problem(0.0))
    assert health.problem(3600.0) is None
    health.succeeded()
    assert health.failures == 0 and health.problem(0.0) is None
