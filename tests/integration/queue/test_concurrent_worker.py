"""ConcurrentWorker (runtime/queue/concurrent.py): light tasks run at once, each
recorded under its own lease; a task that is not light runs alone."""

from __future__ import annotations

import threading

import pytest

from quarry.runtime.queue import Task, TaskQueue
from quarry.runtime.queue.concurrent import ConcurrentWorker
from tests.integration.queue.helpers import wait_for
from tests.integration.queue.test_worker import running, state_of


def _light(task: Task) -> bool:
    return bool(task.payload.get("light"))


def test_light_tasks_run_at_once(queue: TaskQueue) -> None:
    together = threading.Barrier(6, timeout=20)  # broken unless all six wait at once

    def handler(task: Task) -> object:
        together.wait()
        return {"n": task.payload["n"]}

    worker = ConcurrentWorker(
        queue, handler, slots=8, light=_light, reap_interval=None, poll_interval=0.05
    )
    with running(worker):
        ids = [queue.enqueue("acme", "t", {"n": n, "light": True}).id for n in range(6)]
        wait_for(lambda: all(state_of(queue, i) == "succeeded" for i in ids), what="all done")
    assert [queue.get(i).result for i in ids] == [{"n": n} for n in range(6)]  # type: ignore[union-attr]
    assert worker.peak == 6 and worker.stats.succeeded == 6


@pytest.mark.parametrize("slots", [1, 3])
def test_no_more_at_once_than_the_slots(queue: TaskQueue, slots: int) -> None:
    lock = threading.Lock()
    now = [0]
    seen: list[int] = []

    def handler(task: Task) -> object:
        with lock:
            now[0] += 1
            seen.append(now[0])
        with lock:
            now[0] -= 1
        return None

    worker = ConcurrentWorker(
        queue, handler, slots=slots, light=_light, reap_interval=None, poll_interval=0.05
    )
    with running(worker):
        ids = [queue.enqueue("acme", "t", {"light": True}).id for _ in range(8)]
        wait_for(lambda: all(state_of(queue, i) == "succeeded" for i in ids), what="all done")
    assert max(seen) <= slots and worker.peak <= slots


def test_a_task_that_is_not_light_runs_alone(queue: TaskQueue) -> None:
    release = threading.Event()

    def handler(task: Task) -> object:
        if not task.payload.get("light"):
            assert release.wait(20)
        return None

    worker = ConcurrentWorker(
        queue, handler, slots=8, light=_light, reap_interval=None, poll_interval=0.05
    )
    heavy = queue.enqueue("acme", "t", {"light": False}).id
    light = [queue.enqueue("acme", "t", {"light": True}).id for _ in range(3)]
    with running(worker):
        wait_for(lambda: state_of(queue, heavy) == "running", what="the heavy task")
        # While it runs the worker claims nothing: the light tasks stay queued until
        # it is released (then all run).
        assert worker.stats.claimed == 1
        assert all(state_of(queue, i) == "queued" for i in light)
        release.set()
        wait_for(lambda: all(state_of(queue, i) == "succeeded" for i in light), what="light")
    assert state_of(queue, heavy) == "succeeded"
