"""The queue with real worker processes on real Postgres."""

from __future__ import annotations

import signal
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, insert, text

from quarry.runtime.queue import open_queue
from quarry.store.db import create_state_engine
from quarry.store.queue_tables import tasks
from tests.fleet.queue.conftest import Fleet
from tests.integration.queue.helpers import wait_for

pytestmark = pytest.mark.slow

HANDLERS = "tests.fleet.queue.handlers"


def _scalar(engine: Engine, sql: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(sql)).scalar_one())


# The default worker, the batched one (claims 10 per statement, buffers completions),
# and quarry worker's concurrent one (claims a group per statement, runs it at once).
MODES = pytest.mark.parametrize(
    "mode", [[], ["--batch", "10"], ["--slots", "4"]], ids=["single", "batch", "slots"]
)


@MODES
def test_four_workers_drain_ten_thousand_tasks_exactly_once(fleet: Fleet, mode: list[str]) -> None:
    engine = create_state_engine(fleet.database_url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE queue_executions (task_id BIGINT PRIMARY KEY, owner TEXT)"))
        now = datetime.now(UTC)
        rows = [
            {
                "tenant_id": f"tenant-{i % 3}",
                "queue": "default",
                "kind": "record",
                "payload": "null",
                "state": "queued",
                "run_after": now,
                "created_at": now,
            }
            for i in range(10_000)
        ]
        conn.execute(insert(tasks), rows)
    started = time.monotonic()
    workers = [
        fleet.start(f"w{i}", "--handler", f"{HANDLERS}:record", "--poll", "0.5", *mode)
        for i in range(4)
    ]
    for w in workers:
        w.wait_line("READY", 30)

    def drained() -> bool:
        return _scalar(engine, "SELECT count(*) FROM tasks WHERE state = 'succeeded'") == 10_000

    wait_for(drained, timeout=90, what="10,000 tasks to drain")
    elapsed = time.monotonic() - started
    stats = [w.stop() for w in workers]

    assert _scalar(engine, "SELECT count(*) FROM queue_executions") == 10_000
    assert _scalar(engine, "SELECT count(*) FROM tasks WHERE attempts <> 1") == 0
    assert _scalar(engine, "SELECT count(*) FROM tasks WHERE state <> 'succeeded'") == 0
    assert sum(s["succeeded"] for s in stats) == 10_000
    assert all(s["lease_lost"] == 0 for s in stats)
    # Work was spread: every worker took part.
    assert all(s["succeeded"] > 0 for s in stats), stats
    print(f"drained 10,000 tasks with 4 worker processes in {elapsed:.1f}s")
    engine.dispose()


@MODES
def test_a_paused_worker_cannot_complete_or_checkpoint_a_taken_over_task(
    fleet: Fleet, tmp_path: Path, mode: list[str]
) -> None:
    engine = create_state_engine(fleet.database_url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE queue_checkpoints (task_id BIGINT, owner TEXT)"))
        conn.execute(text("CREATE TABLE queue_events (task_id BIGINT, owner TEXT, event TEXT)"))
    gate = tmp_path / "gate"
    paused = fleet.start(
        "paused",
        "--handler",
        f"{HANDLERS}:gated_step",
        "--lease",
        "1.0",
        "--poll",
        "0.1",
        *mode,
        env={"QUARRY_TEST_GATE": str(gate)},
    )
    paused.wait_line("READY", 30)
    task_id = open_queue(engine).enqueue("acme", "step", max_attempts=3).id

    def events(owner: str) -> list[str]:
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT event FROM queue_events WHERE owner = :o ORDER BY event"),
                {"o": owner},
            )
            return [r[0] for r in rows]

    wait_for(lambda: events("paused") == ["started"], timeout=30, what="the first start")
    paused.process.send_signal(signal.SIGSTOP)

    taker = fleet.start(
        "taker",
        "--handler",
        f"{HANDLERS}:gated_step",
        "--lease",
        "30",
        "--poll",
        "0.1",
        "--reap-interval",
        "0.2",
    )
    queue = open_queue(engine)

    def taken_over() -> bool:
        task = queue.get(task_id)
        return task is not None and task.state == "succeeded"

    wait_for(taken_over, timeout=40, what="the take-over to finish")
    done = queue.get(task_id)
    assert done is not None
    assert (done.lease_owner, done.attempts, done.result) == ("taker", 2, {"owner": "taker"})

    # Resume the paused worker: its checkpoint and its completion are refused.
    gate.touch()
    paused.process.send_signal(signal.SIGCONT)
    wait_for(
        lambda: events("paused") == ["checkpoint_refused", "started"],
        timeout=30,
        what="the paused worker to try its checkpoint",
    )
    paused_stats = paused.stop()
    taker_stats = taker.stop()
    assert paused_stats["lease_lost"] >= 1 and paused_stats["succeeded"] == 0
    assert taker_stats["succeeded"] == 1

    final = queue.get(task_id)
    assert final is not None
    assert (final.state, final.lease_owner, final.result) == (
        "succeeded",
        "taker",
        {"owner": "taker"},
    )
    with engine.connect() as conn:
        checkpoints = conn.execute(text("SELECT task_id, owner FROM queue_checkpoints")).all()
    assert [tuple(r) for r in checkpoints] == [(task_id, "taker")]
    engine.dispose()


# The batched worker buffers the quick task's success (an hour's flush interval); the
# concurrent worker (quarry worker's, --slots) records it at once.
KILLED = pytest.mark.parametrize(
    ("mode", "buffered"),
    [(["--batch", "10", "--flush-interval", "3600"], True), (["--slots", "4"], False)],
    ids=["batch", "slots"],
)


@KILLED
def test_a_killed_worker_s_claimed_group_is_rerun_never_lost(
    fleet: Fleet, tmp_path: Path, mode: list[str], buffered: bool
) -> None:
    """Tasks claimed as a group in one statement. SIGKILL the worker while one is
    blocked: a second worker reaps the group's unfinished tasks and runs them again
    (attempt 2); a success the dead worker had only buffered (batch) runs again too --
    a re-run, never a loss.

    batch: quick, blocking and waiting are one batch; quick finished (its success
    buffered, the flush interval being an hour), blocking is blocked, waiting was
    claimed but never started. slots: quick is claimed alone (nothing known to be
    light yet) and recorded at once; blocking and waiting are the next group, both
    running and blocked."""
    engine = create_state_engine(fleet.database_url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE queue_runs (task_id BIGINT, owner TEXT)"))
    queue = open_queue(engine)
    quick = queue.enqueue("acme", "record_or_block", {"block": False}).id
    blocking = queue.enqueue("acme", "record_or_block", {"block": True}).id
    waiting = queue.enqueue("acme", "record_or_block", {"block": True}).id
    gate = tmp_path / "gate"
    victim = fleet.start(
        "victim",
        "--handler",
        f"{HANDLERS}:record_or_block",
        *mode,
        "--lease",
        "1.0",
        "--reap-interval",
        "0",
        env={"QUARRY_TEST_GATE": str(gate)},
    )
    victim.wait_line("READY", 30)

    def state(task_id: int) -> str:
        task = queue.get(task_id)
        assert task is not None
        return task.state

    def runs() -> list[tuple[int, str]]:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT task_id, owner FROM queue_runs ORDER BY owner"))
            return [(int(r[0]), str(r[1])) for r in rows]

    started = [quick, blocking] if buffered else [quick, blocking, waiting]
    group = [quick, blocking, waiting] if buffered else [blocking, waiting]
    wait_for(lambda: len(runs()) == len(started), timeout=30, what="the tasks to start")
    assert sorted(runs()) == sorted((i, "victim") for i in started)
    held = [queue.get(i) for i in group]
    assert len({t.lease_token for t in held if t is not None}) == 1  # one statement
    if not buffered:
        wait_for(lambda: state(quick) == "succeeded", timeout=30, what="the quick task")
    assert [state(i) for i in group] == ["running"] * len(group)
    victim.process.kill()
    victim.process.wait(10)

    gate.touch()
    taker = fleet.start(
        "taker",
        "--handler",
        f"{HANDLERS}:record_or_block",
        *mode[:2],  # the same kind of worker, without the hour-long flush interval
        "--poll",
        "0.1",
        "--reap-interval",
        "0.2",
        env={"QUARRY_TEST_GATE": str(gate)},
    )

    def finished() -> bool:
        return all(state(i) == "succeeded" for i in (quick, blocking, waiting))

    wait_for(finished, timeout=40, what="the taker to re-run the group")
    taker.stop()
    for task_id in group:
        task = queue.get(task_id)
        assert task is not None
        assert (task.state, task.attempts, task.lease_owner) == ("succeeded", 2, "taker")
    # A task whose success was buffered ran again (once per holder); nothing was lost.
    expected = [*((i, "victim") for i in started), *((i, "taker") for i in group)]
    assert sorted(runs()) == sorted(expected)
    if not buffered:
        task = queue.get(quick)
        assert task is not None
        assert (task.state, task.attempts, task.lease_owner) == ("succeeded", 1, "victim")
    engine.dispose()
