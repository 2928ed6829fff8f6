"""The default worker's prefetch: short tasks are claimed several per statement, each
completion is still written before the next task starts, and a task that turns out
long hands the prefetched ones back to the queue."""

from __future__ import annotations

import threading

from quarry.runtime.queue import Task, TaskQueue
from quarry.runtime.queue.worker import Worker
from tests.integration.queue.helpers import wait_for
from tests.integration.queue.test_worker import make_worker, running, state_of


def test_short_tasks_are_prefetched_and_each_completion_is_written_first(
    pg_queue: TaskQueue,
) -> None:
    ids = [pg_queue.enqueue("acme", "short", {"n": n}).id for n in range(40)]
    unrecorded: list[int] = []
    previous: list[int] = []

    def handler(task: Task) -> object:
        # The task before this one is already recorded (from another connection).
        if previous and state_of(pg_queue, previous[-1]) != "succeeded":
            unrecorded.append(previous[-1])
        previous.append(task.id)
        return None

    worker = make_worker(pg_queue, handler)
    assert worker.prefetch > 1
    worker.drain()
    assert worker.stats.succeeded == 40
    assert unrecorded == []
    assert all(state_of(pg_queue, i) == "succeeded" for i in ids)
    # One lease token per claiming statement: far fewer statements than tasks.
    tokens = {t.lease_token for t in (pg_queue.get(i) for i in ids) if t is not None}
    assert len(tokens) <= 40 // worker.prefetch + 2


def test_a_long_task_hands_its_prefetched_tasks_back(queue: TaskQueue) -> None:
    first = queue.enqueue("acme", "short").id
    long = queue.enqueue("acme", "long").id
    rest = [queue.enqueue("acme", "short").id for _ in range(5)]
    release = threading.Event()

    def handler(task: Task) -> object:
        if task.kind == "long":
            assert release.wait(20)
        return None

    worker = make_worker(queue, handler, poll_interval=0.05)
    with running(worker):
        wait_for(lambda: state_of(queue, long) == "running", what="the long task")
        # Prefetched with it, then given back while it runs: another worker may run them.
        wait_for(lambda: all(state_of(queue, i) == "queued" for i in rest), what="released tasks")
        assert state_of(queue, first) == "succeeded"
        assert worker.stats.claimed >= 2 + len(rest)
        release.set()
        wait_for(lambda: all(state_of(queue, i) == "succeeded" for i in [long, *rest]))
    for i in rest:
        task = queue.get(i)
        assert task is not None
        assert task.attempts == 1  # the release did not count an attempt


def test_no_prefetch_when_the_lease_is_too_short_to_hold_them(queue: TaskQueue) -> None:
    assert Worker(queue, lambda t: None, lease_seconds=0.5, listen=False).prefetch == 1
    assert Worker(queue, lambda t: None, prefetch=1, listen=False).prefetch == 1
