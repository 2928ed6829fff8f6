"""The run event stream is a contract (docs/runs.md, "The event stream"): these tests
pin the exact sequence of a run that succeeds, fails, is cancelled while queued or
while running, on Postgres with a real worker (its thread, its heartbeats, its
leases). Retry after a SIGKILLed worker: tests/fleet/runs/test_durable_runs.py."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from quarry.core.settings import Settings
from quarry.factory.local import compile_local
from quarry.node.services import Services, build_services
from quarry.runtime.queue.reaper import reap_once
from quarry.runtime.queue.worker import Worker
from quarry.runtime.runs.events import RunEvent
from quarry.runtime.runs.executor import RunExecutor
from quarry.runtime.runs.journal import RunWriter
from quarry.runtime.runs.service import (
    RunRequest,
    cancel_run,
    create_run,
    end_abandoned_runs,
)
from quarry.store import runs as runq
from quarry.store.runs import RunRow
from tests.support.processes import wait_until

WORKFLOWS = {
    "two_steps": """\
tasks:
  - name: first
    type: execute_sql
    database: wh
    sql_query: select 1 as one
  - name: second
    type: execute_sql
    database: wh
    sql_query: select 2 as two
""",
    "breaks": """\
tasks:
  - name: fine
    type: execute_sql
    database: wh
    sql_query: select 1 as one
  - name: broken
    type: execute_sql
    database: wh
    sql_query: select no_such_column
  - name: never
    type: execute_sql
    database: wh
    sql_query: select 3 as three
""",
    "sleeps": """\
tasks:
  - name: nap
    type: execute_sql
    database: wh
    sql_query: select pg_sleep(60) is not null as slept
  - name: never
    type: execute_sql
    database: wh
    sql_query: select 1 as one
""",
}


@pytest.fixture
def svc(pg_database: str, empty_pg_database: str, tmp_path: Path) -> Iterator[Services]:
    warehouse = empty_pg_database.rsplit("/", 1)[1]
    root = tmp_path / "ws"
    (root / "workflows").mkdir(parents=True)
    (root / "config.yml").write_text(
        "databases:\n  - name: wh\n    type: postgres\n    host: 127.0.0.1\n"
        f"    port: 5432\n    user: postgres\n    database: {warehouse}\nmodels: []\n"
    )
    for name, body in WORKFLOWS.items():
        (root / "workflows" / f"{name}.workflow.yml").write_text(body)
    services = build_services(
        Settings(
            database_url=pg_database,
            blob_url=(tmp_path / "blobs").as_uri(),
            data_dir=tmp_path / "data",
            revision_cache_ttl=0,
        )
    )
    compile_local(services.engine, services.store, "local", root, "ws")
    yield services
    services.close()


@contextmanager
def worker(svc: Services, tmp_path: Path) -> Iterator[Worker]:
    """A real worker on a thread (heartbeats every 0.3 s, so a cancel arrives fast)."""
    executor = RunExecutor(svc, tmp_path / "cache")
    running = Worker(svc.queue, executor.handle, lease_seconds=0.9)
    thread = threading.Thread(target=running.run, name="test-worker", daemon=True)
    thread.start()
    running.wait_ready()
    try:
        yield running
    finally:
        running.request_stop()
        thread.join(30)


def queue_run(svc: Services, workflow: str) -> RunRow:
    workspace = svc.catalog.workspace("local", "ws", fresh=True)
    return create_run(
        svc,
        workspace,
        RunRequest("workflow", f"workflows/{workflow}", {}),
    )


def events(svc: Services, run_id: str) -> list[dict[str, Any]]:
    with svc.engine.connect() as conn:
        return [event for _, event in runq.events_after(conn, run_id, 0)]


def sequence(svc: Services, run_id: str) -> list[tuple[str, str]]:
    """(type, step) of every event, in stream order; step is "" for run events."""
    return [(e["type"], e.get("step", "")) for e in events(svc, run_id)]


def state(svc: Services, run_id: str) -> str:
    with svc.engine.connect() as conn:
        return runq.get_run(conn, "local", run_id).state


def wait_finished(svc: Services, run_id: str) -> str:
    wait_until(lambda: state(svc, run_id) in runq.TERMINAL, 60, f"run {run_id} to finish")
    return state(svc, run_id)


def test_a_run_that_succeeds(svc: Services, tmp_path: Path) -> None:
    run = queue_run(svc, "two_steps")
    with worker(svc, tmp_path):
        assert wait_finished(svc, run.id) == "succeeded"
    assert sequence(svc, run.id) == [
        (RunEvent.QUEUED, ""),
        (RunEvent.STARTED, ""),
        (RunEvent.STEP_STARTED, "tasks.0"),
        (RunEvent.STEP_FINISHED, "tasks.0"),
        (RunEvent.STEP_STARTED, "tasks.1"),
        (RunEvent.STEP_FINISHED, "tasks.1"),
        (RunEvent.SUCCEEDED, ""),
    ]
    stream = events(svc, run.id)
    assert stream[0] == {"type": "run.queued", "revision_id": run.revision_id}
    assert stream[1] == {"type": "run.started", "attempt": 1}
    assert stream[-1] == {"type": "run.succeeded"}
    step = stream[3]
    assert step["task"] == "first" and step["task_type"] == "execute_sql" and step["rows"] == 1
    assert not any(e["type"] == "run.finished" for e in stream)


def test_a_run_that_fails(svc: Services, tmp_path: Path) -> None:
    run = queue_run(svc, "breaks")
    with worker(svc, tmp_path):
        assert wait_finished(svc, run.id) == "failed"
    assert sequence(svc, run.id) == [
        (RunEvent.QUEUED, ""),
        (RunEvent.STARTED, ""),
        (RunEvent.STEP_STARTED, "tasks.0"),
        (RunEvent.STEP_FINISHED, "tasks.0"),
        (RunEvent.STEP_STARTED, "tasks.1"),
        (RunEvent.STEP_FAILED, "tasks.1"),
        (RunEvent.FAILED, ""),
    ]
    outcome = events(svc, run.id)[-1]
    assert outcome["error"]["details"] == {"step": "tasks.1", "task": "broken"}
    assert "no_such_column" in outcome["error"]["message"]
    with svc.engine.connect() as conn:
        steps = {s.step_key: (s.state, s.error) for s in runq.get_steps(conn, run.id)}
    assert steps["tasks.0"] == ("succeeded", None)
    assert steps["tasks.1"][0] == "failed" and "no_such_column" in (steps["tasks.1"][1] or "")


def test_a_run_cancelled_while_queued(svc: Services) -> None:
    run = queue_run(svc, "two_steps")
    assert cancel_run(svc.engine, svc.queue, "local", run.id).state == "cancelled"
    assert cancel_run(svc.engine, svc.queue, "local", run.id).state == "cancelled"
    assert sequence(svc, run.id) == [(RunEvent.QUEUED, ""), (RunEvent.CANCELLED, "")]


def test_a_run_cancelled_while_running(svc: Services, tmp_path: Path) -> None:
    run = queue_run(svc, "sleeps")
    with worker(svc, tmp_path):
        wait_until(
            lambda: (RunEvent.STEP_STARTED, "tasks.0") in sequence(svc, run.id),
            30,
            "the sleeping step to start",
        )
        assert cancel_run(svc.engine, svc.queue, "local", run.id).state == "running"
        assert wait_finished(svc, run.id) == "cancelled"
    assert sequence(svc, run.id) == [
        (RunEvent.QUEUED, ""),
        (RunEvent.STARTED, ""),
        (RunEvent.STEP_STARTED, "tasks.0"),
        (RunEvent.CANCEL_REQUESTED, ""),
        (RunEvent.CANCELLED, ""),
    ]
    # A cancel after the end adds nothing after the outcome.
    cancel_run(svc.engine, svc.queue, "local", run.id)
    assert sequence(svc, run.id)[-1] == (RunEvent.CANCELLED, "")


def test_an_outcome_and_a_start_are_recorded_once(svc: Services) -> None:
    """Two writers racing to end a run (or a late attempt starting a finished one)
    record nothing more: the outcome is conditional on the run row."""
    run = queue_run(svc, "two_steps")
    writer = RunWriter(svc, run, None)
    assert writer.begin() is RunEvent.STARTED
    assert writer.begin() is RunEvent.RESUMED
    assert writer.finish("succeeded", None, None)
    assert not writer.finish("failed", "too late", {"error": "late"})
    assert writer.begin() is None
    assert sequence(svc, run.id) == [
        (RunEvent.QUEUED, ""),
        (RunEvent.STARTED, ""),
        (RunEvent.RESUMED, ""),
        (RunEvent.SUCCEEDED, ""),
    ]
    assert state(svc, run.id) == "succeeded"
    with pytest.raises(ValueError, match=r"run\.succeeded"):
        writer.event({"type": RunEvent.SUCCEEDED})


def test_a_run_whose_last_worker_died_before_starting_it_fails_once(svc: Services) -> None:
    """A worker claims the run's only attempt and dies before it can start the run: the
    reaper (this process's, with the hook build_services installed) fails the task and
    the run ends ``failed`` with one ``run.failed``; reporting the same task again, or
    a reaped task that is not a run, adds nothing. The SIGKILL version, mid-step, is
    in tests/fleet/runs/test_durable_runs.py."""
    workspace = svc.catalog.workspace("local", "ws", fresh=True)
    run = create_run(
        svc, workspace, RunRequest("workflow", "workflows/two_steps", {}), max_attempts=1
    )
    other = svc.queue.enqueue("local", "not-a-run", {"x": 1}, max_attempts=1)
    claimed = [svc.queue.claim("dead-worker", lease_seconds=0.05) for _ in range(2)]
    assert {t.id for t in claimed if t is not None} == {run.task_id, other.id}
    reaped: list[Any] = []

    def reap() -> bool:
        reaped.extend(reap_once(svc.queue))
        return len(reaped) == 2

    wait_until(reap, 10, "both leases to expire and be reaped")
    assert {(r.id, r.state) for r in reaped} == {(run.task_id, "failed"), (other.id, "failed")}
    assert state(svc, run.id) == "failed"
    end_abandoned_runs(svc.queue, reaped)
    assert sequence(svc, run.id) == [(RunEvent.QUEUED, ""), (RunEvent.FAILED, "")]
    assert events(svc, run.id)[-1]["error"]["error"] == "worker_lost"
