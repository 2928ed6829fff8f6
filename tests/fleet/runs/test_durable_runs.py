"""SIGKILL a worker process in the middle of a multi-step run: another worker
finishes it, a step with a side effect that finished before the kill ran once, and
the run's event stream shows the retry exactly as docs/runs.md says. When the killed
attempt was the last one allowed (or a cancel was waiting for it), the reaper of
another process ends the run ``failed`` (``cancelled``) with exactly one outcome."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import select

from quarry.core.settings import Settings
from quarry.factory.local import compile_local
from quarry.node.services import build_services
from quarry.runtime.runs.events import RunEvent
from quarry.runtime.runs.service import RunRequest, cancel_run, create_run
from quarry.runtime.services import Services
from quarry.store import runs as runq
from quarry.store.run_tables import run_steps
from tests.support.processes import wait_until
from tests.support.services import PG_ADMIN_DSN
from tests.support.warehouse import warehouse_workspace

pytestmark = pytest.mark.slow

WORKFLOW = """\
description: Three steps; the first and last leave a row behind.
tasks:
  - name: first
    type: execute_sql
    database: warehouse
    sql_query: insert into side_effects(step) values ('first') returning step
  - name: slow
    type: execute_sql
    database: warehouse
    sql_query: select pg_sleep(4) is not null as slept
  - name: last
    type: execute_sql
    database: warehouse
    sql_query: insert into side_effects(step) values ('last') returning step
"""


def _worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "quarry", "worker"],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def test_killed_worker_loses_nothing(
    pg_database: str, empty_pg_database: str, tmp_path: Path
) -> None:
    svc, env, run_id = _started_run(pg_database, empty_pg_database, tmp_path, max_attempts=3)

    def step_state(key: str) -> str | None:
        with svc.engine.connect() as conn:
            return conn.execute(
                select(run_steps.c.state).where(
                    run_steps.c.run_id == run_id, run_steps.c.step_key == key
                )
            ).scalar_one_or_none()

    # Killed once the slow step's event is written, so the stream below is exact; a
    # killed worker writes nothing more, so the states read after it are those it left.
    _kill_in_slow_step(svc, env, run_id, tmp_path / "worker-a.log")
    assert step_state("tasks.1") == "running"
    assert step_state("tasks.0") == "succeeded"
    log = tmp_path / "worker-b.log"
    assert _reap_in_another_worker(svc, env, run_id, log) == "succeeded", log.read_text()
    warehouse_dsn = PG_ADMIN_DSN.rsplit("/", 1)[0] + "/" + empty_pg_database.rsplit("/", 1)[1]
    with psycopg.connect(warehouse_dsn) as conn:
        counts = dict(
            conn.execute("select step, count(*) from side_effects group by step").fetchall()
        )
    assert counts == {"first": 1, "last": 1}
    with svc.engine.connect() as conn:
        attempts = dict(
            conn.execute(
                select(run_steps.c.step_key, run_steps.c.attempt).where(
                    run_steps.c.run_id == run_id
                )
            ).all()
        )
    assert attempts["tasks.0"] == 1, "the first step was replayed, not executed again"
    assert attempts["tasks.2"] == 2
    # The stream shows the crash as one run.resumed (attempt 2) and the replay; each of
    # run.queued, run.started and the outcome is there once (docs/runs.md).
    assert _events(svc, run_id) == [
        (RunEvent.QUEUED, "", None),
        (RunEvent.STARTED, "", 1),
        (RunEvent.STEP_STARTED, "tasks.0", None),
        (RunEvent.STEP_FINISHED, "tasks.0", None),
        (RunEvent.STEP_STARTED, "tasks.1", None),
        (RunEvent.RESUMED, "", 2),
        (RunEvent.STEP_REPLAYED, "tasks.0", None),
        (RunEvent.STEP_STARTED, "tasks.1", None),
        (RunEvent.STEP_FINISHED, "tasks.1", None),
        (RunEvent.STEP_STARTED, "tasks.2", None),
        (RunEvent.STEP_FINISHED, "tasks.2", None),
        (RunEvent.SUCCEEDED, "", None),
    ]
    svc.close()


def _started_run(
    pg_database: str, empty_pg_database: str, tmp_path: Path, *, max_attempts: int
) -> tuple[Services, dict[str, str], str]:
    """The durable workflow queued with ``max_attempts``: (services, worker env, run id).
    Its side effects go to ``side_effects`` in ``empty_pg_database``."""
    warehouse = empty_pg_database.rsplit("/", 1)[1]
    warehouse_dsn = PG_ADMIN_DSN.rsplit("/", 1)[0] + f"/{warehouse}"
    with psycopg.connect(warehouse_dsn, autocommit=True) as conn:
        conn.execute("create table side_effects (step text not null)")
    root = warehouse_workspace(tmp_path / "ws", warehouse, {"durable": WORKFLOW})
    env = {
        "QUARRY_DATABASE_URL": pg_database,
        "QUARRY_BLOB_URL": (tmp_path / "blobs").as_uri(),
        "QUARRY_DATA_DIR": str(tmp_path / "data"),
        "QUARRY_WORKER_LEASE_SECONDS": "2",
    }
    svc = build_services(
        Settings(
            database_url=pg_database, blob_url=env["QUARRY_BLOB_URL"], data_dir=tmp_path / "data"
        )
    )
    compile_local(svc.engine, svc.store, "local", root, "ws")
    workspace = svc.catalog.workspace("local", "ws", fresh=True)
    run = create_run(
        svc,
        workspace,
        RunRequest("workflow", "workflows/durable", {}),
        max_attempts=max_attempts,
    )
    return svc, env, run.id


def _events(svc: Services, run_id: str) -> list[tuple[str, str, int | None]]:
    with svc.engine.connect() as conn:
        return [
            (e["type"], e.get("step", ""), e.get("attempt"))
            for _, e in runq.events_after(conn, run_id, 0)
        ]


def _kill_in_slow_step(svc: Services, env: dict[str, str], run_id: str, log: Path) -> None:
    """Start a worker and SIGKILL it once the slow step has started: a crash mid-run,
    with the run's lease left behind."""
    worker = _worker(env, log)
    try:
        wait_until(
            lambda: (RunEvent.STEP_STARTED, "tasks.1", None) in _events(svc, run_id),
            60,
            "the slow step to start",
        )
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
    finally:
        if worker.poll() is None:
            worker.kill()


def _reap_in_another_worker(svc: Services, env: dict[str, str], run_id: str, log: Path) -> str:
    """Start a second worker (its reaper thread reaps the dead lease) and wait for
    the run's outcome."""

    def state() -> str:
        with svc.engine.connect() as conn:
            return runq.get_run_by_id(conn, run_id).state

    assert state() == "running"
    reaper = _worker(env, log)
    try:
        wait_until(lambda: state() not in {"queued", "running"}, 90, "the run to end")
    finally:
        reaper.terminate()
        reaper.wait(timeout=30)
    return state()


def test_last_attempt_killed_fails_the_run(
    pg_database: str, empty_pg_database: str, tmp_path: Path
) -> None:
    svc, env, run_id = _started_run(pg_database, empty_pg_database, tmp_path, max_attempts=1)
    try:
        _kill_in_slow_step(svc, env, run_id, tmp_path / "worker-a.log")
        assert _reap_in_another_worker(svc, env, run_id, tmp_path / "worker-b.log") == "failed"
        with svc.engine.connect() as conn:
            run = runq.get_run_by_id(conn, run_id)
            last = runq.events_after(conn, run_id, 0)[-1][1]
        assert run.finished_at is not None
        assert run.error is not None and "last allowed attempt (1 of 1)" in run.error
        task = svc.queue.get(run.task_id or 0)
        assert task is not None and task.state == "failed"
        assert _events(svc, run_id) == [
            (RunEvent.QUEUED, "", None),
            (RunEvent.STARTED, "", 1),
            (RunEvent.STEP_STARTED, "tasks.0", None),
            (RunEvent.STEP_FINISHED, "tasks.0", None),
            (RunEvent.STEP_STARTED, "tasks.1", None),
            (RunEvent.FAILED, "", None),
        ]
        assert last["error"]["error"] == "worker_lost"
    finally:
        svc.close()


def test_cancel_waiting_for_a_killed_worker_cancels_the_run(
    pg_database: str, empty_pg_database: str, tmp_path: Path
) -> None:
    svc, env, run_id = _started_run(pg_database, empty_pg_database, tmp_path, max_attempts=3)
    try:
        _kill_in_slow_step(svc, env, run_id, tmp_path / "worker-a.log")
        with svc.engine.connect() as conn:
            tenant = runq.get_run_by_id(conn, run_id).tenant_id
        assert cancel_run(svc.engine, svc.queue, tenant, run_id).state == "running"
        assert _reap_in_another_worker(svc, env, run_id, tmp_path / "worker-b.log") == "cancelled"
        assert _events(svc, run_id) == [
            (RunEvent.QUEUED, "", None),
            (RunEvent.STARTED, "", 1),
            (RunEvent.STEP_STARTED, "tasks.0", None),
            (RunEvent.STEP_FINISHED, "tasks.0", None),
            (RunEvent.STEP_STARTED, "tasks.1", None),
            (RunEvent.CANCEL_REQUESTED, "", None),
            (RunEvent.CANCELLED, "", None),
        ]
    finally:
        svc.close()
