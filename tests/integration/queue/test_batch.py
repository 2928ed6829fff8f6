"""Batched claims and buffered completions (``runtime/queue/batch.py``), on every backend:
each task in a batch keeps its own fenced lease, fairness holds inside a batch, a
buffered success is recorded within its flush interval, heartbeats cover tasks not
yet started, and a stop records what finished and gives back what did not start."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable

import pytest
from sqlalchemy import text

from quarry.runtime.queue import Task, TaskQueue
from quarry.runtime.queue.batch import BatchWorker, make_worker
from quarry.runtime.queue.worker import Worker
from tests.integration.queue.helpers import wait_for


def _enqueue_many(queue: TaskQueue, tenant: str, n: int) -> list[int]:
    with queue.engine.begin() as conn:
        return [queue.enqueue(tenant, "noop", {"i": i}, conn=conn).id for i in range(n)]


def _task(queue: TaskQueue, task_id: int) -> Task:
    task = queue.get(task_id)
    assert task is not None
    return task


def batch_worker(queue: TaskQueue, handler: Callable[[Task], object], **kw: float) -> BatchWorker:
    options: dict[str, float] = {"lease_seconds": 30.0, "poll_interval": 0.05}
    options.update(kw)
    batch = int(options.pop("batch_size", 10))
    return BatchWorker(
        queue,
        handler,
        batch_size=batch,
        reap_interval=None,
        listen=False,
        **options,  # type: ignore[arg-type]
    )


# -- the queue's batch operations --------------------------------------------------------


def test_a_batch_claim_interleaves_tenants_in_fairness_order(queue: TaskQueue) -> None:
    big = _enqueue_many(queue, "big", 200)
    small = queue.enqueue("small", "noop").id
    _, first = queue.complete_many_and_claim([], "w", limit=10)
    assert len(first) == 10
    assert small in [t.id for t in first[:2]], [(t.tenant_id, t.id) for t in first]
    assert [t.id for t in first if t.tenant_id == "big"] == big[:9]  # in (priority, id) order
    assert all(t.state == "running" and t.attempts == 1 for t in first)

    for tenant in ("a", "b", "c"):
        _enqueue_many(queue, tenant, 20)
    queue.complete_many([(t, None) for t in first])
    _, batch = queue.complete_many_and_claim([], "w", limit=9)
    tenants = [t.tenant_id for t in batch]
    # a, b and c were never served, so they go first, then "big"; then turns again.
    assert tenants[:4] == ["a", "b", "c", "big"], tenants
    assert sorted(Counter(tenants).values()) == [2, 2, 2, 3], tenants
    assert len({t.id for t in batch}) == len(batch)


def test_each_task_in_a_batch_is_fenced_by_its_own_lease(queue: TaskQueue) -> None:
    _enqueue_many(queue, "acme", 3)
    _, held = queue.complete_many_and_claim([], "old", lease_seconds=1.0, limit=3)
    assert len(held) == 3
    keep = [held[0], held[2]]
    assert set(queue.heartbeat_many(keep, lease_seconds=30)) == {t.id for t in keep}
    # Only the middle task's lease runs out; another worker takes it over.
    reaped = wait_for(lambda: queue.reap_expired(), what="the middle lease to expire")
    assert [r.id for r in reaped] == [held[1].id]
    taken = wait_for(lambda: queue.claim("new", lease_seconds=30), what="the take-over")
    assert taken.id == held[1].id and taken.lease_token != held[1].lease_token

    assert queue.heartbeat_many(held, lease_seconds=30) == {held[0].id: False, held[2].id: False}
    assert queue.release_many([held[1]]) == set()
    completed = queue.complete_many([(t, {"by": "old", "n": i}) for i, t in enumerate(held)])
    assert completed == {held[0].id, held[2].id}

    middle = _task(queue, held[1].id)
    assert (middle.state, middle.lease_owner, middle.result) == ("running", "new", None)
    assert _task(queue, held[0].id).result == {"by": "old", "n": 0}
    queue.complete(taken, {"by": "new"})
    assert _task(queue, held[1].id).result == {"by": "new"}
    # Finished tasks are no longer held by anyone.
    assert queue.heartbeat_many(held) == {}


def test_complete_many_and_claim_records_and_claims_in_one_call(queue: TaskQueue) -> None:
    ids = _enqueue_many(queue, "acme", 5)
    _, first = queue.complete_many_and_claim([], "w", limit=2)
    completed, second = queue.complete_many_and_claim(
        [(t, t.payload["i"]) for t in first], "w", limit=2
    )
    assert completed == set(ids[:2])
    assert [t.id for t in second] == ids[2:4]
    assert [_task(queue, i).result for i in ids[:2]] == [0, 1]
    # Releasing gives them back without counting the attempt.
    assert queue.release_many(second) == set(ids[2:4])
    again = _task(queue, ids[2])
    assert (again.state, again.attempts) == ("queued", 0)
    completed, rest = queue.complete_many_and_claim([(t, 9) for t in second], "w", limit=10)
    assert completed == set() and [t.id for t in rest] == ids[2:]


# -- the batched worker ---------------------------------------------------------------------


def test_a_batched_worker_drains_every_task_once(queue: TaskQueue) -> None:
    ids = [i for tenant in ("a", "b", "c") for i in _enqueue_many(queue, tenant, 9)]
    seen: list[int] = []
    worker = batch_worker(queue, lambda t: seen.append(t.id) or t.payload["i"])
    assert isinstance(make_worker(queue, lambda t: None, batch_size=10), BatchWorker)
    assert type(make_worker(queue, lambda t: None)) is Worker
    stats = worker.drain()
    assert sorted(seen) == sorted(ids)
    assert (stats.claimed, stats.succeeded, stats.lease_lost, stats.released) == (27, 27, 0, 0)
    with queue.engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT count(*), min(attempts), max(attempts) FROM tasks WHERE state = 'succeeded'"
            )
        ).one()
    assert tuple(row) == (27, 1, 1)
    assert [_task(queue, i).result for i in ids[:9]] == list(range(9))


def test_a_buffered_success_is_recorded_within_the_flush_interval(queue: TaskQueue) -> None:
    quick, slow = _enqueue_many(queue, "acme", 2)
    slow_started = threading.Event()
    release = threading.Event()

    def handler(task: Task) -> object:
        if task.id == slow:
            slow_started.set()
            release.wait(20)
        return task.id

    worker = batch_worker(queue, handler, flush_interval=0.05)
    thread = threading.Thread(target=worker.drain, daemon=True)
    thread.start()
    try:
        assert slow_started.wait(20)
        # The second task of the batch is still running; the first is recorded anyway.
        wait_for(lambda: _task(queue, quick).state == "succeeded", what="the buffered success")
        assert _task(queue, slow).state == "running"
    finally:
        release.set()
        thread.join(20)
    assert not thread.is_alive()
    assert (_task(queue, slow).state, worker.stats.succeeded) == ("succeeded", 2)


def test_stopping_records_finished_tasks_and_releases_unstarted_ones(queue: TaskQueue) -> None:
    ids = _enqueue_many(queue, "acme", 5)
    stuck = threading.Event()
    never = threading.Event()

    def handler(task: Task) -> object:
        if task.id == ids[1]:
            stuck.set()
            never.wait(20)
        return "ok"

    # A flush interval of an hour: only the stop can record the first task's success.
    worker = batch_worker(queue, handler, flush_interval=3600, shutdown_grace=0.2)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    assert stuck.wait(20)
    assert _task(queue, ids[0]).state == "running"  # finished, success buffered
    worker.request_stop()
    thread.join(20)
    assert not thread.is_alive()
    never.set()
    states = [(_task(queue, i).state, _task(queue, i).attempts) for i in ids]
    assert states == [("succeeded", 1)] + [("queued", 0)] * 4
    assert (worker.stats.succeeded, worker.stats.released) == (1, 4)


def test_heartbeats_keep_the_leases_of_tasks_not_yet_started(queue: TaskQueue) -> None:
    ids = _enqueue_many(queue, "acme", 4)
    stop_reaping = threading.Event()
    reaped: list[int] = []

    def reaper() -> None:
        while not stop_reaping.is_set():
            reaped.extend(r.id for r in queue.reap_expired())
            stop_reaping.wait(0.05)

    def work(task: Task) -> object:
        threading.Event().wait(0.3)  # the work itself: the batch outlasts one lease
        return None

    reaping = threading.Thread(target=reaper, daemon=True)
    reaping.start()
    try:
        stats = batch_worker(queue, work, lease_seconds=0.6, batch_size=4).drain()
    finally:
        stop_reaping.set()
        reaping.join(10)
    assert reaped == []
    assert (stats.succeeded, stats.lease_lost) == (4, 0)
    assert {(_task(queue, i).state, _task(queue, i).attempts) for i in ids} == {("succeeded", 1)}


def test_a_task_cancelled_before_it_started_never_runs(queue: TaskQueue) -> None:
    first, second = _enqueue_many(queue, "acme", 2)
    started: list[int] = []
    release = threading.Event()

    def handler(task: Task) -> object:
        started.append(task.id)
        if task.id == first:
            release.wait(20)
        return None

    worker = batch_worker(queue, handler, lease_seconds=0.3, batch_size=2)
    thread = threading.Thread(target=worker.drain, daemon=True)
    thread.start()
    try:
        wait_for(lambda: started == [first], what="the first task to start")
        assert queue.cancel(second) == "running"  # claimed in the batch, not started
        wait_for(lambda: _task(queue, second).state == "cancelled", what="the cancellation")
    finally:
        release.set()
        thread.join(20)
    assert not thread.is_alive()
    assert started == [first]
    assert (_task(queue, first).state, worker.stats.cancelled) == ("succeeded", 1)


@pytest.mark.parametrize("size", [0, -1])
def test_a_batch_size_below_one_is_refused(queue: TaskQueue, size: int) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        BatchWorker(queue, lambda t: None, batch_size=size, listen=False, reap_interval=None)
