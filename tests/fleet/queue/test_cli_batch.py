"""``quarry worker --batch N``: the run worker process claims runs N per statement
(the batched worker, docs/queue.md "Batched workers"), drains the queue, and stops
cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from quarry.core.settings import Settings
from quarry.factory.local import compile_local
from quarry.node.services import build_services
from quarry.runtime.runs.service import RunRequest, create_run
from quarry.store.queue_tables import tasks
from quarry.store.run_tables import runs
from tests.support.processes import wait_until
from tests.support.warehouse import warehouse_workspace

pytestmark = pytest.mark.slow

RUNS = 6
BATCH = 4


def _workspace(root: Path, warehouse_db: str) -> Path:
    quick = (
        "tasks:\n"
        "  - name: quick\n    type: execute_sql\n    database: warehouse\n"
        "    sql_query: select 1 as one\n"
    )
    return warehouse_workspace(root, warehouse_db, {"quick": quick})


def test_quarry_worker_batch_starts_and_drains(
    pg_database: str, empty_pg_database: str, tmp_path: Path
) -> None:
    root = _workspace(tmp_path / "ws", empty_pg_database.rsplit("/", 1)[1])
    env = {
        "QUARRY_DATABASE_URL": pg_database,
        "QUARRY_BLOB_URL": (tmp_path / "blobs").as_uri(),
        "QUARRY_DATA_DIR": str(tmp_path / "data"),
    }
    svc = build_services(
        Settings(database_url=pg_database, blob_url=env["QUARRY_BLOB_URL"], data_dir=tmp_path)
    )
    compile_local(svc.engine, svc.store, "local", root, "ws")
    workspace = svc.catalog.workspace("local", "ws", fresh=True)
    created = [
        create_run(svc, workspace, RunRequest("workflow", "workflows/quick", {}))
        for _ in range(RUNS)
    ]
    ids = [r.id for r in created]

    def states() -> list[str]:
        with svc.engine.connect() as conn:
            rows = conn.execute(select(runs.c.state).where(runs.c.id.in_(ids))).all()
        return [r.state for r in rows]

    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "quarry", "worker", "--batch", str(BATCH)],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(lambda: states() == ["succeeded"] * RUNS, 120, "the runs to succeed")
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(timeout=60)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(timeout=10)
    assert code == 0, log.read_text()
    with svc.engine.connect() as conn:
        rows = conn.execute(
            select(tasks.c.state, tasks.c.attempts, tasks.c.lease_token).where(
                tasks.c.id.in_([r.task_id for r in created])
            )
        ).all()
    assert [(r.state, r.attempts) for r in rows] == [("succeeded", 1)] * RUNS
    # One lease token per claiming statement: the runs were claimed BATCH at a time
    # (quarry worker's concurrent worker claims workflow runs one at a time).
    assert len({r.lease_token for r in rows}) <= -(-RUNS // BATCH), log.read_text()
    svc.close()
