"""ConcurrentWorker (runtime/queue/concurrent.py): light tasks run at once, each
recorded under its own lease; a task that is not light runs alone."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

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
        # While it runs the worker holds nothing else (the light tasks its group claim
        # took with it went back at once) and claims nothing: they stay queued until
        # it is released (then all run).
        wait_for(lambda: worker.stats.claimed - worker.stats.released == 1, what="release")
        assert all(state_of(queue, i) == "queued" for i in light)
        release.set()
        wait_for(lambda: all(state_of(queue, i) == "succeeded" for i in light), what="light")
    assert state_of(queue, heavy) == "succeeded"


# -- prefetch: a group of tasks per claiming statement ------------------------------


def _tokens(queue: TaskQueue, ids: list[int]) -> set[str | None]:
    return {t.lease_token for t in (queue.get(i) for i in ids) if t is not None}


def test_light_tasks_are_claimed_as_a_group_in_one_statement(pg_queue: TaskQueue) -> None:
    ids = [pg_queue.enqueue("acme", "t", {"light": True}).id for _ in range(6)]
    together = threading.Barrier(6, timeout=20)

    def handler(task: Task) -> object:
        together.wait()
        return None

    worker = ConcurrentWorker(pg_queue, handler, slots=8, light=_light, listen=False)
    worker.drain()
    assert (worker.stats.claimed, worker.stats.succeeded, worker.peak) == (6, 6, 6)
    # One lease token per claiming statement: the first task alone (nothing known to be
    # light yet), then the other five in one round trip.
    assert len(_tokens(pg_queue, ids)) == 2 and len(_tokens(pg_queue, ids[1:])) == 1
    assert all(state_of(pg_queue, i) == "succeeded" for i in ids)


def test_a_group_claim_takes_no_more_than_the_free_slots(pg_queue: TaskQueue) -> None:
    ids = [pg_queue.enqueue("acme", "t", {"light": True}).id for _ in range(7)]
    worker = ConcurrentWorker(pg_queue, lambda t: None, slots=3, light=_light, listen=False)
    worker.drain()
    assert worker.stats.succeeded == 7 and worker.peak <= 3
    assert worker.stats.released == 0  # nothing claimed beyond what could start
    assert all(state_of(pg_queue, i) == "succeeded" for i in ids)


def test_tasks_claimed_behind_one_that_runs_alone_go_back_at_once(queue: TaskQueue) -> None:
    release = threading.Event()

    def handler(task: Task) -> object:
        if not task.payload.get("light"):
            assert release.wait(20)
        return None

    first = queue.enqueue("acme", "t", {"light": True}).id
    heavy = queue.enqueue("acme", "t", {"light": False}).id
    behind = [queue.enqueue("acme", "t", {"light": True}).id for _ in range(2)]
    worker = ConcurrentWorker(
        queue, handler, slots=8, light=_light, reap_interval=None, poll_interval=0.05
    )
    with running(worker):
        wait_for(lambda: state_of(queue, heavy) == "running", what="the heavy task")
        # The first alone, the other three in one claim; the two behind the heavy one
        # were released, not held: queued again, attempt not counted, free for others.
        wait_for(lambda: worker.stats.released == 2, what="the release")
        assert worker.stats.claimed == 4
        for i in behind:
            task = queue.get(i)
            assert task is not None and (task.state, task.attempts) == ("queued", 0)
        wait_for(lambda: state_of(queue, first) == "succeeded", what="the first light task")
        release.set()
        wait_for(lambda: all(state_of(queue, i) == "succeeded" for i in [heavy, *behind]))
    for i in behind:
        task = queue.get(i)
        assert task is not None and task.attempts == 1


def test_a_stop_between_the_claim_and_the_start_releases_the_rest(queue: TaskQueue) -> None:
    ids = [queue.enqueue("acme", "t", {"light": True}).id for _ in range(5)]
    worker: ConcurrentWorker
    seen: list[int] = []

    def light(task: Task) -> bool:
        seen.append(task.id)
        if len(seen) == 2:  # the first of the group (the first task is claimed alone)
            worker.request_stop()  # after the group was claimed, before the rest start
        return True

    worker = ConcurrentWorker(queue, lambda t: None, slots=8, light=light, listen=False)
    worker.drain()
    assert worker.stats.claimed == 5 and worker.stats.released == 3
    assert [state_of(queue, i) for i in ids[:2]] == ["succeeded", "succeeded"]
    for i in ids[2:]:
        task = queue.get(i)
        assert task is not None and (task.state, task.attempts) == ("queued", 0)


def test_the_leases_of_a_claimed_group_are_kept_by_heartbeats(queue: TaskQueue) -> None:
    lease = 1.5
    release = threading.Event()

    def handler(task: Task) -> object:
        assert release.wait(30)
        return None

    ids = [queue.enqueue("acme", "t", {"light": True}).id for _ in range(4)]
    worker = ConcurrentWorker(
        queue, handler, slots=8, light=_light, reap_interval=None, lease_seconds=lease
    )
    assert worker.prefetch >= 4
    with running(worker):
        wait_for(lambda: all(state_of(queue, i) == "running" for i in ids), what="all running")
        first = {i: queue.get(i) for i in ids}
        expiries = [t.lease_expires_at for t in first.values() if t is not None]
        assert len(expiries) == 4 and all(e is not None for e in expiries)
        claimed_until = max(e for e in expiries if e is not None)

        def past_the_first_lease() -> bool:
            return datetime.now(UTC) > claimed_until + timedelta(seconds=0.3)

        wait_for(past_the_first_lease, what="the claim's lease to run out")
        # Heartbeats extended every lease of the group: the reaper finds nothing.
        assert [r.id for r in queue.reap_expired() if r.id in ids] == []
        for i in ids:
            task = queue.get(i)
            assert task is not None and task.state == "running"
            assert task.lease_token == first[i].lease_token  # type: ignore[union-attr]
            assert task.lease_expires_at is not None and task.lease_expires_at > claimed_until
        release.set()
        wait_for(lambda: all(state_of(queue, i) == "succeeded" for i in ids), what="all done")
    assert worker.stats.lease_lost == 0
    assert all(t.attempts == 1 for t in (queue.get(i) for i in ids) if t is not None)


class _CountingQueue:
    """Counts ``complete``, ``complete_many`` and ``complete_and_claim`` statements of
    a queue (delegates)."""

    def __init__(self, queue: TaskQueue) -> None:
        self.inner = queue
        self.complete_many_sizes: list[int] = []
        self.completes = 0
        self.completes_and_claims = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def complete_many(self, done: list[tuple[Task, object]]) -> set[int]:
        self.complete_many_sizes.append(len(done))
        return self.inner.complete_many(done)

    def complete(self, task: Task, result: object = None) -> None:
        self.completes += 1
        self.inner.complete(task, result)

    def complete_and_claim(self, task: Task, result: object, owner: str, **kw: Any) -> Any:
        self.completes_and_claims += 1
        return self.inner.complete_and_claim(task, result, owner, **kw)


def test_tasks_that_are_not_light_complete_and_claim_in_one_statement(
    queue: TaskQueue,
) -> None:
    """Workflow runs (not light) run one after another; each is completed in the
    statement that claims the next, as :class:`Worker` does, not in one of its own."""
    ids = [queue.enqueue("acme", "t", {"light": False, "n": n}).id for n in range(5)]
    counting = _CountingQueue(queue)
    running_now: list[int] = []
    most = [0]

    def handler(task: Task) -> object:
        running_now.append(task.id)
        most[0] = max(most[0], len(running_now))
        running_now.remove(task.id)
        return {"n": task.payload["n"]}

    worker = ConcurrentWorker(
        counting,  # type: ignore[arg-type]
        handler,
        slots=8,
        light=_light,
        listen=False,
    )
    worker.drain()
    assert (counting.completes_and_claims, counting.completes) == (5, 0)
    assert worker.stats.succeeded == 5 and worker.stats.claimed == 5 and most[0] == 1
    for n, i in enumerate(ids):
        row = queue.get(i)
        assert row is not None and (row.state, row.result) == ("succeeded", {"n": n})


def test_successes_found_together_are_recorded_in_one_fenced_statement(
    queue: TaskQueue,
) -> None:
    ids = [queue.enqueue("acme", "t", {"light": True, "n": n}).id for n in range(4)]
    counting = _CountingQueue(queue)
    worker = ConcurrentWorker(
        counting,  # type: ignore[arg-type]
        lambda t: {"n": t.payload["n"]},
        slots=8,
        light=_light,
        listen=False,
    )
    tasks = worker.claim_group(4)
    assert sorted(t.id for t in tasks) == ids
    for task in tasks:
        worker._start(task)
    # Every handler has returned before the loop looks: one statement records them,
    # each fenced by its own lease -- the one released meanwhile is refused alone.
    wait_for(lambda: worker._finished.qsize() == 4, what="the handlers")
    queue.release(tasks[0])
    worker._settle_finished()
    assert (counting.complete_many_sizes, counting.completes) == ([4], 0)
    assert (worker.stats.succeeded, worker.stats.lease_lost) == (3, 1)
    assert state_of(queue, ids[0]) == "queued"
    for n, i in enumerate(ids[1:], start=1):
        row = queue.get(i)
        assert row is not None and (row.state, row.result) == ("succeeded", {"n": n})


def test_lights_tells_a_claimed_group_in_one_look(queue: TaskQueue) -> None:
    """With ``lights`` (the run worker's form: one query for the group), the group
    is asked about once, not once per task, and its answers are used in order: the
    task told not light runs alone, those behind it go back to the queue."""
    ids = [queue.enqueue("acme", "t", {"light": n != 2}).id for n in range(5)]
    asked: list[list[int]] = []

    def lights(tasks: list[Task]) -> list[bool]:
        asked.append([t.id for t in tasks])
        return [_light(t) for t in tasks]

    worker = ConcurrentWorker(queue, lambda t: None, slots=8, lights=lights, listen=False)
    worker.drain()
    # The first task alone; then a group of four, of which the second (ids[2]) is
    # not light: ids[3] and ids[4] are released and claimed again (alone, then as a
    # group once a light one was seen).
    assert asked[:2] == [ids[:1], ids[1:]]
    assert worker.stats.released == 2
    assert all(state_of(queue, i) == "succeeded" for i in ids)


def test_give_exactly_one_of_light_and_lights(queue: TaskQueue) -> None:
    with pytest.raises(ValueError, match="exactly one of light and lights"):
        ConcurrentWorker(queue, lambda t: None, slots=2)
    with pytest.raises(ValueError, match="exactly one of light and lights"):
        ConcurrentWorker(
            queue, lambda t: None, slots=2, light=_light, lights=lambda ts: [True] * len(ts)
        )
