"""SIGTERM to a real ``quarry worker`` process in the middle of a run: with a grace
longer than the step, the run finishes and the worker exits cleanly; with a grace
shorter than the step, the worker exits within the grace (plus shutdown overhead) and
the task goes back to the queue with its attempt not counted, for another worker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from quarry.core.settings import Settings
from quarry.factory.local import compile_local
from quarry.node.services import build_services
from quarry.runtime.runs.service import RunRequest, create_run
from quarry.store.queue_tables import tasks
from quarry.store.run_tables import run_steps, runs
from tests.support.processes import wait_until
from tests.support.warehouse import warehouse_workspace

pytestmark = pytest.mark.slow

OVERHEAD = 5.0  # seconds a stopping worker may take beyond the grace (shared machine)


def _workspace(root: Path, warehouse_db: str, seconds: int) -> Path:
    slow = (
        "tasks:\n"
        "  - name: slow\n    type: execute_sql\n    database: warehouse\n"
        f"    sql_query: select pg_sleep({seconds}) is not null as slept\n"
    )
    return warehouse_workspace(root, warehouse_db, {"slow": slow})


@pytest.mark.parametrize(("grace", "step_seconds"), [(30.0, 8), (1.0, 120)])
def test_sigterm_drains_within_the_grace(
    pg_database: str, empty_pg_database: str, tmp_path: Path, grace: float, step_seconds: int
) -> None:
    warehouse = empty_pg_database.rsplit("/", 1)[1]
    root = _workspace(tmp_path / "ws", warehouse, step_seconds)
    env = {
        "QUARRY_DATABASE_URL": pg_database,
        "QUARRY_BLOB_URL": (tmp_path / "blobs").as_uri(),
        "QUARRY_DATA_DIR": str(tmp_path / "data"),
        "QUARRY_WORKER_SHUTDOWN_GRACE": str(grace),
    }
    svc = build_services(
        Settings(database_url=pg_database, blob_url=env["QUARRY_BLOB_URL"], data_dir=tmp_path)
    )
    compile_local(svc.engine, svc.store, "local", root, "ws")
    workspace = svc.catalog.workspace("local", "ws", fresh=True)
    run = create_run(svc, workspace, RunRequest("workflow", "workflows/slow", {}))

    def step_running() -> bool:
        with svc.engine.connect() as conn:
            state = conn.execute(
                select(run_steps.c.state).where(run_steps.c.run_id == run.id)
            ).scalar_one_or_none()
        return state == "running"

    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "quarry", "worker"],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(step_running, 90, "the slow step to start")
        signalled = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(timeout=grace + 60)
        took = time.monotonic() - signalled
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(timeout=10)
    assert code == 0, log.read_text()
    assert took <= grace + OVERHEAD, f"stopped after {took:.1f}s with a {grace}s grace"
    with svc.engine.connect() as conn:
        state = conn.execute(select(runs.c.state).where(runs.c.id == run.id)).scalar_one()
        task = conn.execute(select(tasks).where(tasks.c.id == run.task_id)).one()
    if step_seconds < grace:
        assert state == "succeeded" and task.state == "succeeded"
    else:
        assert took >= grace * 0.9, "it did not wait for the grace"
        assert task.state == "queued" and task.attempts == 0, log.read_text()
        assert state != "failed"
    svc.close()
