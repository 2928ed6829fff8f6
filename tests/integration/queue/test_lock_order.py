"""The lock order of complete-and-claim (issue #20's three-way deadlock), made
deterministic.

A claim's ``FOR UPDATE SKIP LOCKED`` never waits, but a statement whose snapshot is
older than a peer's claim can leave a lock on that peer's now-running row. If the
completing half of a complete-and-claim statement then waits (on its own task, behind
such a stray lock) while its claiming half already holds locks, the waits can close
a cycle. Here a plain session stands in for the peer holding the stray lock: it
locks the worker's running task, waits until the worker's statement blocks on it,
then locks the next queued task (as another claimer's statement would). Before the
fix the worker's statement already held that queued row: a deadlock. With the fix it
holds nothing while it waits, so the session gets the row at once and the worker's
statement finishes once the session commits.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from sqlalchemy import text

from quarry.runtime.queue import Task, TaskQueue
from tests.integration.queue.helpers import wait_for


def _waiting_on_a_lock(queue: TaskQueue, pid: int) -> bool:
    with queue.engine.connect() as conn:
        row = conn.execute(
            text("SELECT wait_event_type FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}
        ).first()
    return row is not None and row.wait_event_type == "Lock"


def _complete_many(queue: TaskQueue, task: Task) -> tuple[set[int], list[Task]]:
    return queue.complete_many_and_claim([(task, "done")], "w", limit=2)


def _complete_one(queue: TaskQueue, task: Task) -> tuple[set[int], list[Task]]:
    completed, nxt = queue.complete_and_claim(task, "done", "w")
    return ({task.id} if completed else set()), ([] if nxt is None else [nxt])


@pytest.mark.parametrize(
    "complete_and_claim", [_complete_many, _complete_one], ids=["batched", "single"]
)
def test_completing_waits_before_it_takes_any_claim_lock(
    pg_queue: TaskQueue,
    complete_and_claim: Callable[[TaskQueue, Task], tuple[set[int], list[Task]]],
) -> None:
    held_id = pg_queue.enqueue("acme", "x").id
    queued = [pg_queue.enqueue("acme", "x").id for _ in range(3)]
    task = pg_queue.claim("w")
    assert task is not None and task.id == held_id

    url = pg_queue.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    outcome: dict[str, Any] = {}
    with psycopg.connect(url) as peer:
        peer.execute("SET lock_timeout = '20s'")
        peer.execute("SELECT 1 FROM tasks WHERE id = %s FOR UPDATE", (held_id,))
        # The worker's statement runs on its own thread's pinned connection.
        pid: dict[str, int] = {}

        def worker() -> None:
            with pg_queue.pinned():
                pid["pid"] = _pinned_pid(pg_queue)
                try:
                    outcome["result"] = complete_and_claim(pg_queue, task)
                except Exception as exc:
                    outcome["error"] = exc

        thread = threading.Thread(target=worker)
        thread.start()
        wait_for(lambda: "pid" in pid, timeout=10, what="the worker's connection")
        wait_for(
            lambda: _waiting_on_a_lock(pg_queue, pid["pid"]) or not thread.is_alive(),
            timeout=10,
            what="the worker's statement to wait on its own task's row",
        )
        # A peer's stray lock on the next queued task: before the fix the worker's
        # statement held it already (a deadlock, detected after deadlock_timeout).
        peer.execute("SELECT 1 FROM tasks WHERE id = %s FOR UPDATE", (queued[0],))
        peer.commit()
    thread.join(30)
    assert not thread.is_alive()
    assert "error" not in outcome, outcome.get("error")
    completed, claimed = outcome["result"]
    assert completed == {held_id}
    assert claimed and claimed[0].id == queued[0]


def _pinned_pid(queue: TaskQueue) -> int:
    held = queue._pinned.conn  # type: ignore[attr-defined]
    return int(held.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())
