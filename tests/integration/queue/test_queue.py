"""The task queue on real databases: SQLite (local mode) and Postgres."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from quarry.runtime.queue import LeaseLost, Task, TaskQueue, fenced
from quarry.store.queries import UnknownQuery, parse, query
from tests.integration.queue.helpers import wait_for

SHORT_LEASE = 0.3


def test_enqueue_claim_complete(queue: TaskQueue) -> None:
    enq = queue.enqueue("acme", "noop", {"n": 1})
    assert enq.created
    task = queue.claim("w1", lease_seconds=30)
    assert task is not None
    assert (task.id, task.state, task.attempts, task.payload) == (enq.id, "running", 1, {"n": 1})
    assert task.lease_owner == "w1" and task.lease_token
    assert task.lease_expires_at is not None and task.lease_expires_at > datetime.now(UTC)
    assert queue.claim("w2") is None  # nothing else eligible
    assert queue.heartbeat(task) is False
    queue.complete(task, {"rows": 3})
    done = queue.get(task.id)
    assert done is not None
    assert (done.state, done.result, done.lease_expires_at) == ("succeeded", {"rows": 3}, None)
    assert done.finished_at is not None
    counts = {(c.tenant_id, c.state): c.count for c in queue.counts()}
    assert counts == {("acme", "succeeded"): 1}


def test_queues_are_separate_and_priority_orders_within_a_tenant(queue: TaskQueue) -> None:
    low = queue.enqueue("acme", "k", priority=5)
    high = queue.enqueue("acme", "k", priority=-1)
    other = queue.enqueue("acme", "k", queue="exports")
    first = queue.claim("w", lease_seconds=30)
    second = queue.claim("w", lease_seconds=30)
    assert first is not None and second is not None
    assert (first.id, second.id) == (high.id, low.id)
    exported = queue.claim("w", queue="exports")
    assert exported is not None and exported.id == other.id


def test_dedupe_key_is_unique_per_tenant(queue: TaskQueue) -> None:
    key = "schedule:nightly@2026-11-23T00:00:00Z"
    first = queue.enqueue("acme", "run", {"a": 1}, dedupe_key=key)
    again = queue.enqueue("acme", "run", {"a": 2}, dedupe_key=key)
    other_tenant = queue.enqueue("globex", "run", {"a": 3}, dedupe_key=key)
    no_key = [queue.enqueue("acme", "run").id for _ in range(2)]
    assert first.created and not again.created and again.id == first.id
    assert other_tenant.created and other_tenant.id != first.id
    assert len(set(no_key)) == 2
    stored = queue.get(first.id)
    assert stored is not None and stored.payload == {"a": 1}


def test_enqueue_joins_the_callers_transaction(queue: TaskQueue) -> None:
    with queue.engine.connect() as conn:
        tx = conn.begin()
        queue.enqueue("acme", "run", conn=conn)
        tx.rollback()
    assert queue.claim("w") is None
    with queue.engine.begin() as conn:
        enq = queue.enqueue("acme", "run", conn=conn)
    assert queue.get(enq.id) is not None


def test_delay_defers_eligibility(queue: TaskQueue) -> None:
    enq = queue.enqueue("acme", "later", delay=3600)
    assert queue.claim("w") is None
    stored = queue.get(enq.id)
    assert stored is not None and stored.state == "queued"


def test_failure_retries_with_backoff_then_fails(queue: TaskQueue) -> None:
    enq = queue.enqueue("acme", "flaky", max_attempts=2)
    task = queue.claim("w", lease_seconds=30)
    assert task is not None
    settled = queue.fail(task, "ValueError: boom")
    assert settled.state == "queued"
    assert settled.run_after is not None and settled.run_after > task.run_after
    retried = wait_for(lambda: queue.claim("w", lease_seconds=30), what="the retry")
    assert (retried.id, retried.attempts) == (enq.id, 2)
    assert retried.lease_token != task.lease_token
    final = queue.fail(retried, "ValueError: boom again")
    assert final.state == "failed"
    stored = queue.get(enq.id)
    assert stored is not None
    assert (stored.state, stored.attempts, stored.last_error) == (
        "failed",
        2,
        "ValueError: boom again",
    )


def test_permanent_failure_does_not_retry(queue: TaskQueue) -> None:
    queue.enqueue("acme", "bad", max_attempts=5)
    task = queue.claim("w")
    assert task is not None
    assert queue.fail(task, "no such workflow", retry=False).state == "failed"


def test_reaper_requeues_expired_leases_and_fails_at_max(queue: TaskQueue) -> None:
    enq = queue.enqueue("acme", "slow", max_attempts=2)
    first = queue.claim("w1", lease_seconds=SHORT_LEASE)
    assert first is not None
    reaped = wait_for(lambda: queue.reap_expired(), what="the lease to expire")
    assert [(r.id, r.state, r.attempts) for r in reaped] == [(enq.id, "queued", 1)]
    requeued = queue.get(enq.id)
    assert requeued is not None
    assert requeued.state == "queued" and requeued.attempts == 1
    assert requeued.run_after > first.run_after  # backoff
    assert requeued.last_error is not None and "lease expired" in requeued.last_error
    second = wait_for(lambda: queue.claim("w2", lease_seconds=SHORT_LEASE), what="re-claim")
    assert second.attempts == 2
    reaped = wait_for(lambda: queue.reap_expired(), what="the second lease to expire")
    assert [(r.id, r.state) for r in reaped] == [(enq.id, "failed")]
    assert queue.claim("w3") is None
    final = queue.get(enq.id)
    assert final is not None and final.state == "failed" and final.finished_at is not None


def _checkpoints(queue: TaskQueue) -> list[tuple[int, str]]:
    with queue.engine.connect() as conn:
        rows = conn.execute(text("SELECT task_id, owner FROM checkpoints ORDER BY owner"))
        return [(int(r[0]), str(r[1])) for r in rows]


def test_fencing_a_worker_that_lost_its_lease_changes_nothing(queue: TaskQueue) -> None:
    with queue.engine.begin() as conn:
        conn.execute(text("CREATE TABLE checkpoints (task_id BIGINT, owner VARCHAR(50))"))
    enq = queue.enqueue("acme", "step")
    old = queue.claim("old", lease_seconds=SHORT_LEASE)
    assert old is not None
    wait_for(lambda: queue.reap_expired(), what="the old lease to expire")
    new = wait_for(lambda: queue.claim("new", lease_seconds=30), what="the take-over")
    assert new.id == old.id and new.lease_token != old.lease_token

    # The taker checkpoints under its lease, with the generic guard.
    with queue.engine.begin() as conn:
        fenced(conn, new)
        conn.execute(text("INSERT INTO checkpoints VALUES (:id, 'new')"), {"id": new.id})

    # Everything the old holder tries is refused and writes nothing.
    with pytest.raises(LeaseLost):
        queue.heartbeat(old)
    with pytest.raises(LeaseLost):
        queue.complete(old, {"by": "old"})
    with pytest.raises(LeaseLost):
        queue.fail(old, "old failure")
    with pytest.raises(LeaseLost):
        queue.release(old)
    with pytest.raises(LeaseLost), queue.fenced_transaction(old) as conn:
        conn.execute(text("INSERT INTO checkpoints VALUES (:id, 'old')"), {"id": old.id})
    with queue.engine.begin() as conn, pytest.raises(LeaseLost):
        fenced(conn, old)

    current = queue.get(enq.id)
    assert current is not None
    assert (current.state, current.lease_owner, current.lease_token) == (
        "running",
        "new",
        new.lease_token,
    )
    queue.complete(new, {"by": "new"})
    with pytest.raises(LeaseLost):
        queue.complete(old, {"by": "old"})
    final = queue.get(enq.id)
    assert final is not None and (final.state, final.result) == ("succeeded", {"by": "new"})
    assert _checkpoints(queue) == [(enq.id, "new")]
    # A finished task's lease is over too: its own holder cannot write again.
    with pytest.raises(LeaseLost):
        queue.heartbeat(new)


def test_cancel_queued_and_running(queue: TaskQueue) -> None:
    queued = queue.enqueue("acme", "a")
    assert queue.cancel(queued.id) == "cancelled"
    assert queue.claim("w") is None
    assert queue.cancel(queued.id) is None  # already finished

    running = queue.enqueue("acme", "b")
    task = queue.claim("w", lease_seconds=30)
    assert task is not None and task.id == running.id
    assert queue.cancel(running.id) == "running"
    assert queue.heartbeat(task) is True
    queue.acknowledge_cancel(task)
    stored = queue.get(running.id)
    assert stored is not None and stored.state == "cancelled"

    # A cancelled task whose holder died is cancelled by the reaper, not retried.
    abandoned = queue.enqueue("acme", "c")
    held = queue.claim("w", lease_seconds=SHORT_LEASE)
    assert held is not None and held.id == abandoned.id
    queue.cancel(abandoned.id)
    reaped = wait_for(lambda: queue.reap_expired(), what="the lease to expire")
    assert [(r.id, r.state) for r in reaped] == [(abandoned.id, "cancelled")]

    # A failure after cancellation was requested settles as cancelled.
    failing = queue.enqueue("acme", "d")
    held = queue.claim("w", lease_seconds=30)
    assert held is not None and held.id == failing.id
    queue.cancel(failing.id)
    assert queue.fail(held, "stopped").state == "cancelled"


def _enqueue_many(queue: TaskQueue, tenant: str, n: int) -> None:
    with queue.engine.begin() as conn:
        for i in range(n):
            queue.enqueue(tenant, "noop", {"i": i}, conn=conn)


@pytest.mark.parametrize("complete_each", [True, False])
def test_fairness_a_busy_tenant_does_not_starve_another(
    queue: TaskQueue, complete_each: bool
) -> None:
    _enqueue_many(queue, "big", 1000)
    small = queue.enqueue("small", "noop")
    claimed: list[Task] = []
    for _ in range(3):
        task = queue.claim("w", lease_seconds=30)
        assert task is not None
        claimed.append(task)
        if complete_each:
            queue.complete(task)
    assert small.id in [t.id for t in claimed], [(t.tenant_id, t.id) for t in claimed]


def test_fairness_round_robin_between_busy_tenants(queue: TaskQueue) -> None:
    for tenant in ("a", "b", "c"):
        _enqueue_many(queue, tenant, 20)
    order = []
    for _ in range(9):
        task = queue.claim("w", lease_seconds=30)
        assert task is not None
        order.append(task.tenant_id)
        queue.complete(task)
    for i in range(0, 9, 3):
        assert sorted(order[i : i + 3]) == ["a", "b", "c"], order


def test_purge_finished(queue: TaskQueue) -> None:
    queue.enqueue("acme", "x")
    task = queue.claim("w")
    assert task is not None
    queue.complete(task)
    assert queue.purge_finished(3600) == 0
    assert wait_for(lambda: queue.purge_finished(0.0), what="purge") == 1
    assert queue.get(task.id) is None


# -- Postgres only: concurrency ----------------------------------------------------


def test_skip_locked_claims_past_a_locked_row(pg_queue: TaskQueue) -> None:
    first = pg_queue.enqueue("acme", "x")
    second = pg_queue.enqueue("acme", "x")
    with pg_queue.engine.connect() as locker:
        with locker.begin():
            locker.execute(text("SELECT id FROM tasks WHERE id = :id FOR UPDATE"), {"id": first.id})
            # Another connection does not wait for the lock; it takes the next task.
            task = pg_queue.claim("w", lease_seconds=30)
            assert task is not None and task.id == second.id
            assert pg_queue.claim("w", lease_seconds=30) is None
        task = pg_queue.claim("w", lease_seconds=30)
        assert task is not None and task.id == first.id


def test_concurrent_claimers_never_share_a_task(pg_queue: TaskQueue) -> None:
    for tenant in ("a", "b", "c"):
        _enqueue_many(pg_queue, tenant, 100)
    claimed: list[list[int]] = [[] for _ in range(4)]
    errors: list[BaseException] = []

    def claimer(slot: int) -> None:
        try:
            while True:
                task = pg_queue.claim(f"w{slot}", lease_seconds=30)
                if task is None:
                    return
                claimed[slot].append(task.id)
                pg_queue.complete(task)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=claimer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    ids = [i for ids in claimed for i in ids]
    assert len(ids) == len(set(ids)) == 300
    with pg_queue.engine.connect() as conn:
        attempts = conn.execute(text("SELECT max(attempts), count(*) FROM tasks")).one()
    assert tuple(attempts) == (1, 300)


def test_enqueue_notifies_listeners(pg_queue: TaskQueue) -> None:
    import psycopg

    from quarry.runtime.queue.worker import conninfo_for

    conninfo = conninfo_for(pg_queue)
    assert conninfo is not None
    with psycopg.connect(conninfo, autocommit=True) as listener:
        listener.execute("LISTEN quarry_tasks")
        pg_queue.enqueue("acme", "x", queue="reports")
        notes = [n.payload for n in listener.notifies(timeout=5.0, stop_after=1)]
    assert notes == ["reports"]


# -- named queries -------------------------------------------------------------------


def test_named_queries_parse_and_bind() -> None:
    parsed = parse("-- intro\n-- one: first\nSELECT 1\n\n-- two: second\nSELECT :x\n")
    assert parsed == {"one": "SELECT 1", "two": "SELECT :x"}
    with pytest.raises(ValueError, match="twice"):
        parse("-- a: x\nSELECT 1\n-- a: y\nSELECT 2\n")
    with pytest.raises(UnknownQuery):
        query("queue_postgres.sql", "nope")
    claim = query("queue_sqlite.sql", "claim")
    assert {"now", "lease_until", "queue", "owner", "token"} <= set(claim._bindparams)


def test_complete_and_claim_is_fenced_and_claims_the_next(queue: TaskQueue) -> None:
    first = queue.enqueue("acme", "a")
    second = queue.enqueue("acme", "b")
    task = queue.claim("w", lease_seconds=30)
    assert task is not None and task.id == first.id
    completed, nxt = queue.complete_and_claim(task, {"ok": 1}, "w", lease_seconds=30)
    assert completed and nxt is not None and nxt.id == second.id and nxt.state == "running"
    done = queue.get(first.id)
    assert done is not None and (done.state, done.result) == ("succeeded", {"ok": 1})
    # A lost lease completes nothing, and the claim still happens (nothing is left).
    completed, nothing = queue.complete_and_claim(task, {"ok": 2}, "w")
    assert (completed, nothing) == (False, None)
    again = queue.get(first.id)
    assert again is not None and again.result == {"ok": 1}


def test_enqueue_never_uses_an_asynchronously_committing_connection(
    pg_queue: TaskQueue,
) -> None:
    with pg_queue.pinned(async_commit=True):
        held = pg_queue._pinned.conn  # type: ignore[attr-defined]
        assert held.exec_driver_sql("SHOW synchronous_commit").scalar() == "off"
        enq = pg_queue.enqueue("acme", "x")
        # The enqueue ran elsewhere: it is visible and its session was synchronous.
        with pg_queue.engine.connect() as other:
            assert other.exec_driver_sql("SHOW synchronous_commit").scalar() == "on"
        task = pg_queue.claim("w")
        assert task is not None and task.id == enq.id
    with pg_queue.engine.connect() as conn:
        # The held connection went back to the pool with the setting reset.
        assert conn.exec_driver_sql("SHOW synchronous_commit").scalar() == "on"
