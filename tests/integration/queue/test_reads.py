"""The read-only looks at the tasks table (``quarry.store.queue.reads``), on both
backends: the drain's peek, recovery's lease snapshot and the cap's bounded count."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from quarry.runtime.queue import NewTask, TaskQueue
from quarry.store.queue.reads import count_queued_up_to, earliest_queued, leases_held_by_others


def test_earliest_queued_is_an_aware_time_of_the_named_queues_only(queue: TaskQueue) -> None:
    with queue.engine.connect() as conn:
        assert earliest_queued(conn, ["default"]) is None
    before = datetime.now(UTC)
    queue.enqueue("acme", "job", queue="later", delay=3600)
    queue.enqueue("acme", "job", delay=60)
    queue.enqueue("acme", "job", delay=120)
    with queue.engine.connect() as conn:
        soonest = earliest_queued(conn, ["default"])
        both = earliest_queued(conn, ["default", "later"])
        none = earliest_queued(conn, ["other"])
    assert soonest is not None and soonest.tzinfo is not None
    assert before + timedelta(seconds=59) < soonest < before + timedelta(seconds=119)
    assert both == soonest
    assert none is None


def test_a_claimed_task_is_no_longer_queued(queue: TaskQueue) -> None:
    queue.enqueue("acme", "job")
    assert queue.claim("w") is not None
    with queue.engine.connect() as conn:
        assert earliest_queued(conn, ["default"]) is None


def test_leases_held_by_others_leave_out_the_caller_s_own(queue: TaskQueue) -> None:
    queue.enqueue_many([NewTask("acme", "job"), NewTask("acme", "job"), NewTask("acme", "job")])
    mine = queue.claim("me", lease_seconds=30)
    theirs = queue.claim("them", lease_seconds=30)
    assert mine is not None and theirs is not None
    with queue.engine.connect() as conn:
        held = leases_held_by_others(conn, "me")
    assert [lease.task_id for lease in held] == [theirs.id]
    assert held[0].token == theirs.lease_token
    assert held[0].expires_at == theirs.lease_expires_at


def test_the_queued_count_stops_at_the_cap_and_is_per_tenant_and_queue(
    queue: TaskQueue,
) -> None:
    queue.enqueue_many([NewTask("acme", "job") for _ in range(5)])
    queue.enqueue_many([NewTask("acme", "job", queue="other"), NewTask("globex", "job")])
    with queue.engine.connect() as conn:
        assert count_queued_up_to(conn, "acme", "default", 100) == 5
        assert count_queued_up_to(conn, "acme", "default", 3) == 3
        assert count_queued_up_to(conn, "acme", "other", 100) == 1
        assert count_queued_up_to(conn, "globex", "default", 100) == 1
        assert count_queued_up_to(conn, "initech", "default", 100) == 0
