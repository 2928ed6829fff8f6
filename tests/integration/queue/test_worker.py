"""The worker loop in process: wake-ups, retries, heartbeats, cancellation, shutdown."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from quarry.runtime.queue import Task, TaskQueue, open_queue
from quarry.runtime.queue.batch import BatchWorker
from quarry.runtime.queue.concurrent import ConcurrentWorker
from quarry.runtime.queue.worker import PermanentFailure, TaskCancelled, Worker
from quarry.store.db import create_state_engine
from tests.integration.queue.helpers import wait_for


@contextmanager
def running(worker: Worker) -> Iterator[threading.Thread]:
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        assert wait_for(worker.wait_ready, what="the worker to listen")
        yield thread
    finally:
        worker.request_stop()
        thread.join(20)
        assert not thread.is_alive()


def state_of(queue: TaskQueue, task_id: int) -> str:
    task = queue.get(task_id)
    assert task is not None
    return task.state


def make_worker(queue: TaskQueue, handler: Callable[[Task], object], **kw: float) -> Worker:
    options: dict[str, float] = {"lease_seconds": 30.0, "poll_interval": 30.0}
    options.update(kw)
    return Worker(queue, handler, reap_interval=None, **options)  # type: ignore[arg-type]


def test_worker_runs_tasks_and_records_results(queue: TaskQueue) -> None:
    worker = make_worker(queue, lambda t: {"double": t.payload["n"] * 2}, poll_interval=0.05)
    with running(worker):
        ids = [queue.enqueue("acme", "double", {"n": n}).id for n in range(5)]
        wait_for(lambda: all(state_of(queue, i) == "succeeded" for i in ids), what="all done")
    results = []
    for i in ids:
        task = queue.get(i)
        assert task is not None
        results.append(task.result)
    assert results == [{"double": n * 2} for n in range(5)]
    assert worker.stats.succeeded == 5


def test_idle_postgres_worker_wakes_on_notify_not_poll(pg_queue: TaskQueue) -> None:
    # The poll interval is far longer than the deadline: only NOTIFY can wake it in time.
    worker = make_worker(pg_queue, lambda t: None, poll_interval=3600.0)
    with running(worker):
        wait_for(lambda: worker.stats.claimed == 0 and worker.wait_ready(), what="idle")
        task_id = pg_queue.enqueue("acme", "ping").id
        wait_for(lambda: state_of(pg_queue, task_id) == "succeeded", timeout=10, what="wake")


def test_handler_errors_retry_then_fail_and_the_worker_keeps_going(queue: TaskQueue) -> None:
    calls: dict[int, int] = {}

    def handler(task: Task) -> object:
        calls[task.id] = calls.get(task.id, 0) + 1
        if task.kind == "flaky" and task.attempts < 2:
            raise ValueError("transient")
        if task.kind == "broken":
            raise PermanentFailure("unknown workflow 'x'")
        if task.kind == "always":
            raise RuntimeError("nope")
        return "ok"

    worker = make_worker(queue, handler, poll_interval=0.05)
    with running(worker):
        flaky = queue.enqueue("acme", "flaky", max_attempts=3).id
        broken = queue.enqueue("acme", "broken", max_attempts=3).id
        always = queue.enqueue("acme", "always", max_attempts=2).id
        fine = queue.enqueue("acme", "fine").id
        wait_for(
            lambda: (
                [state_of(queue, i) for i in (flaky, broken, always, fine)]
                == ["succeeded", "failed", "failed", "succeeded"]
            ),
            what="outcomes",
        )
    assert calls == {flaky: 2, broken: 1, always: 2, fine: 1}
    stored = queue.get(broken)
    assert stored is not None and stored.last_error == "PermanentFailure: unknown workflow 'x'"


def test_heartbeats_keep_a_long_task_alive(queue: TaskQueue) -> None:
    release = threading.Event()
    seen: list[Task] = []

    def handler(task: Task) -> object:
        seen.append(task)
        release.wait(20)
        return "done"

    worker = make_worker(queue, handler, lease_seconds=0.6, poll_interval=0.05)
    with running(worker):
        task_id = queue.enqueue("acme", "long").id
        wait_for(lambda: seen, what="the task to start")
        first_expiry = seen[0].lease_expires_at
        assert first_expiry is not None

        def extended() -> bool:
            current = queue.get(task_id)
            assert current is not None
            return current.lease_expires_at is not None and current.lease_expires_at > first_expiry

        wait_for(extended, what="a heartbeat")
        # Well past the original lease, nothing could reap it.
        wait_for(
            lambda: (queue.reap_expired() == []) and worker.stats.claimed == 1 and extended(),
            what="still held",
        )
        release.set()
        wait_for(lambda: state_of(queue, task_id) == "succeeded", what="completion")
    assert worker.stats.lease_lost == 0


def cancellable() -> tuple[threading.Event, Callable[[Task], object]]:
    """A handler that runs until its task is asked to stop, and the event it sets
    when it starts."""
    started = threading.Event()

    def handler(task: Task) -> object:
        started.set()
        if task.stop_event.wait(20):
            raise TaskCancelled("asked to stop")
        return "finished"

    return started, handler


def test_cancellation_reaches_a_running_handler(queue: TaskQueue) -> None:
    started, handler = cancellable()
    worker = make_worker(queue, handler, lease_seconds=0.3, poll_interval=0.05)
    with running(worker):
        task_id = queue.enqueue("acme", "cancellable").id
        assert started.wait(20)
        assert queue.cancel(task_id) == "running"
        wait_for(lambda: state_of(queue, task_id) == "cancelled", what="cancelled")
    assert worker.stats.cancelled == 1


def _cancel_worker(kind: str, queue: TaskQueue, handler: Callable[[Task], object]) -> Worker:
    """A worker of each shape with a 30 s lease (a heartbeat every 10 s), polling for
    new tasks every 50 ms (SQLite has no NOTIFY for them)."""
    timing: dict[str, Any] = {"lease_seconds": 30.0, "poll_interval": 0.05, "reap_interval": None}
    if kind == "concurrent":
        return ConcurrentWorker(queue, handler, slots=4, light=lambda _t: True, **timing)
    if kind == "batch":
        return BatchWorker(queue, handler, batch_size=10, **timing)
    return Worker(queue, handler, **timing)


@pytest.mark.parametrize("kind", ["worker", "concurrent", "batch"])
def test_a_cancel_is_seen_at_once_not_at_the_next_heartbeat(queue: TaskQueue, kind: str) -> None:
    # A 30 s lease heartbeats every 10 s: the cancel must not wait for that beat.
    # The queue object that cancels is the worker's (local mode, in-process workers).
    started, handler = cancellable()
    worker = _cancel_worker(kind, queue, handler)
    with running(worker):
        task_id = queue.enqueue("acme", "cancellable").id
        assert started.wait(20)
        asked = time.monotonic()
        assert queue.cancel(task_id) == "running"
        wait_for(lambda: state_of(queue, task_id) == "cancelled", 5.0, "cancelled")
        assert time.monotonic() - asked < 5.0
    assert worker.stats.cancelled == 1


@pytest.mark.parametrize("kind", ["worker", "concurrent", "batch"])
def test_a_cancel_from_another_process_is_heard_over_notify(
    pg_queue: TaskQueue, pg_database: str, kind: str
) -> None:
    # Another process's queue (its own engine) cancels: the worker hears the NOTIFY.
    started, handler = cancellable()
    other_engine = create_state_engine(pg_database)
    other = open_queue(other_engine)
    try:
        worker = _cancel_worker(kind, pg_queue, handler)
        with running(worker):
            task_id = other.enqueue("acme", "cancellable").id
            assert started.wait(20)
            assert other.cancel(task_id) == "running"
            wait_for(lambda: state_of(other, task_id) == "cancelled", 5.0, "cancelled")
        assert worker.stats.cancelled == 1
    finally:
        other_engine.dispose()


def test_graceful_stop_releases_an_unfinished_task(queue: TaskQueue) -> None:
    started = threading.Event()
    never = threading.Event()

    def handler(task: Task) -> object:
        started.set()
        never.wait(20)
        return None

    worker = make_worker(queue, handler, shutdown_grace=0.2, poll_interval=0.05)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    task_id = queue.enqueue("acme", "stuck").id
    assert started.wait(20)
    worker.request_stop()
    thread.join(20)
    assert not thread.is_alive()
    never.set()
    task = queue.get(task_id)
    assert task is not None
    assert (task.state, task.attempts, worker.stats.released) == ("queued", 0, 1)


def test_graceful_stop_lets_a_quick_task_finish(queue: TaskQueue) -> None:
    started = threading.Event()
    go = threading.Event()

    def handler(task: Task) -> object:
        started.set()
        go.wait(20)
        return "finished"

    worker = make_worker(queue, handler, shutdown_grace=20.0, poll_interval=0.05)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    task_id = queue.enqueue("acme", "quick").id
    assert started.wait(20)
    worker.request_stop()
    go.set()
    thread.join(20)
    assert not thread.is_alive()
    assert state_of(queue, task_id) == "succeeded"


def test_drain_runs_until_the_queue_is_empty(queue: TaskQueue) -> None:
    ids = [queue.enqueue("acme", "x", {"n": n}).id for n in range(7)]
    worker = make_worker(queue, lambda t: t.payload["n"])
    stats = worker.drain()
    assert (stats.claimed, stats.succeeded) == (7, 7)
    results = []
    for i in ids:
        task = queue.get(i)
        assert task is not None and task.state == "succeeded"
        results.append(task.result)
    assert results == list(range(7))
