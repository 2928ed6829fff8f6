"""Bulk enqueue: N tasks in one statement on Postgres (one NOTIFY per queue), all or
none, in order, deduplicated by key, counted whole against the per-tenant cap, and
claimed as fairly as tasks queued one by one."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import event, func, select

from quarry.runtime.queue import NewTask, TaskQueue, open_queue
from quarry.runtime.queue.caps import QueueFull, queued_cap
from quarry.store.queue_tables import tasks


def _count_tasks(queue: TaskQueue) -> int:
    with queue.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(tasks)).scalar_one())


def test_many_tasks_in_order_all_created(queue: TaskQueue) -> None:
    batch = [NewTask("acme", "job", {"n": i}) for i in range(200)]
    enqueued = queue.enqueue_many(batch)
    assert [e.created for e in enqueued] == [True] * 200
    ids = [e.id for e in enqueued]
    assert ids == sorted(ids) and len(set(ids)) == 200
    for e, i in zip(enqueued[:5], range(5), strict=True):
        task = queue.get(e.id)
        assert task is not None and task.payload == {"n": i}
    assert queue.enqueue_many([]) == []


def test_one_statement_on_postgres(pg_queue: TaskQueue) -> None:
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    event.listen(pg_queue.engine, "before_cursor_execute", record)
    try:
        enqueued = pg_queue.enqueue_many([NewTask(f"t{i % 7}", "job", i) for i in range(500)])
    finally:
        event.remove(pg_queue.engine, "before_cursor_execute", record)
    assert len(enqueued) == 500
    queries = [s for s in seen if not s.lstrip().upper().startswith(("BEGIN", "COMMIT"))]
    assert len(queries) == 1 and "json_to_recordset" in queries[0], queries
    assert _count_tasks(pg_queue) == 500


def test_dedupe_keys_in_and_across_batches(queue: TaskQueue) -> None:
    first = queue.enqueue("acme", "job", 1, dedupe_key="k1")
    batch = [
        NewTask("acme", "job", 2, dedupe_key="k1"),  # queued before
        NewTask("acme", "job", 3, dedupe_key="k2"),
        NewTask("acme", "job", 4, dedupe_key="k2"),  # twice in this batch
        NewTask("acme", "job", 5),
        NewTask("other", "job", 6, dedupe_key="k1"),  # another tenant's key
    ]
    got = queue.enqueue_many(batch)
    assert got[0].id == first.id and not got[0].created
    assert got[1].created and got[2].id == got[1].id and not got[2].created
    assert got[3].created and got[4].created and got[4].id != first.id
    assert _count_tasks(queue) == 4


def test_the_cap_counts_the_whole_batch(queue: TaskQueue) -> None:
    capped = open_queue(queue.engine, enqueue_guard=queued_cap(5))
    capped.enqueue("acme", "job", 0)
    with pytest.raises(QueueFull, match=r"1 queued tasks .* 5 more would pass the cap of 5"):
        capped.enqueue_many([NewTask("acme", "job", i) for i in range(5)])
    assert _count_tasks(queue) == 1  # all or none
    capped.enqueue_many([NewTask("acme", "job", i) for i in range(4)] + [NewTask("b", "job")])
    assert _count_tasks(queue) == 6


def test_claims_stay_fair_across_tenants(queue: TaskQueue) -> None:
    queue.enqueue_many([NewTask("big", "job", i) for i in range(20)])
    queue.enqueue_many([NewTask("small", "job", i) for i in range(2)])
    first = [queue.claim("w") for _ in range(4)]
    tenants = [t.tenant_id for t in first if t is not None]
    assert tenants.count("small") == 2, tenants  # not behind the 20 queued before


def test_rolled_back_with_the_callers_transaction(queue: TaskQueue) -> None:
    def fail_after_queueing() -> None:
        with queue.engine.begin() as conn:
            queue.enqueue_many([NewTask("acme", "job", i) for i in range(3)], conn=conn)
            raise RuntimeError("the caller fails after queueing")

    with pytest.raises(RuntimeError):
        fail_after_queueing()
    assert _count_tasks(queue) == 0
