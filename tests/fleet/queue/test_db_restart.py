"""``quarry worker`` processes survive the database (issue #13 item 3).

(a) A private PostgreSQL cluster is restarted (``pg_ctl stop -m fast`` / ``start``)
under load: while it is down past the readiness threshold every worker's ``/readyz``
answers 503 (``/healthz`` stays 200: the process is alive); once it is back the
workers reconnect on their own, ``/readyz`` is 200 again, and every run -- those
finished before, those in flight or queued at the stop, those created after --
succeeds once, promptly. (b) On the shared server, every backend of a worker's state
database is terminated (its pinned queue connection among them): it keeps claiming.
Before the fix both left the workers looping on ``PendingRollbackError`` for good.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest
from sqlalchemy import func, select

from quarry.core.settings import Settings
from quarry.factory.local import compile_local
from quarry.node.services import Services, build_services
from quarry.runtime.runs.service import RunRequest, create_run
from quarry.store.db import create_state_engine
from quarry.store.migrate import migrate
from quarry.store.queue_tables import tasks
from quarry.store.run_tables import run_steps, runs
from tests.support.private_pg import PrivateCluster, private_cluster
from tests.support.processes import wait_until
from tests.support.services import PG_ADMIN_DSN, free_port
from tests.support.warehouse import warehouse_workspace

pytestmark = pytest.mark.slow

UNREADY_AFTER = 2.0

WORKFLOW = """\
description: One step with a side effect on a warehouse that stays up.
tasks:
  - name: effect
    type: execute_sql
    database: warehouse
    sql_query: insert into side_effects(at) values (clock_timestamp()) returning 1 as one
"""


@dataclass
class WorkerProc:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    def get(self, path: str) -> httpx.Response | None:
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}{path}", timeout=2.0)
        except httpx.HTTPError:
            return None

    def status(self, path: str) -> int | None:
        response = self.get(path)
        return None if response is None else response.status_code

    def alive(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"worker exited:\n{self.log.read_text(errors='replace')[-4000:]}")
        return True


@contextmanager
def _workers(env: dict[str, str], tmp_path: Path, count: int) -> Iterator[list[WorkerProc]]:
    procs: list[WorkerProc] = []
    try:
        for i in range(count):
            port = free_port()
            log = tmp_path / f"worker-{i}.log"
            with log.open("ab") as out:
                process = subprocess.Popen(
                    [sys.executable, "-m", "quarry", "worker", "--port", str(port)],
                    env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            procs.append(WorkerProc(process, port, log))
        for w in procs:
            wait_until(lambda w=w: w.alive() and w.status("/readyz") == 200, 60, "worker ready")
        yield procs
    finally:
        for w in procs:
            if w.process.poll() is None:
                w.process.send_signal(signal.SIGTERM)
        for w in procs:
            try:
                w.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                w.process.kill()
                w.process.wait(timeout=10)


def _warehouse(empty_pg_database: str) -> tuple[str, str]:
    name = empty_pg_database.rsplit("/", 1)[1]
    dsn = PG_ADMIN_DSN.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("create table side_effects (at timestamptz not null)")
    return name, dsn


class Deployment:
    """Services on a state database, a compiled workspace, and run creation."""

    def __init__(self, database_url: str, tmp_path: Path, warehouse_db: str) -> None:
        self.env = {
            "QUARRY_DATABASE_URL": database_url,
            "QUARRY_BLOB_URL": (tmp_path / "blobs").as_uri(),
            "QUARRY_DATA_DIR": str(tmp_path / "data"),
            "QUARRY_WORKER_LEASE_SECONDS": "6",
            "QUARRY_QUEUE_UNREADY_AFTER_SECONDS": str(UNREADY_AFTER),
            "QUARRY_LOG_LEVEL": "INFO",
        }
        self.svc: Services = build_services(
            Settings(
                database_url=database_url,
                blob_url=self.env["QUARRY_BLOB_URL"],
                data_dir=tmp_path / "data",
            )
        )
        compile_local(
            self.svc.engine,
            self.svc.store,
            "local",
            warehouse_workspace(tmp_path / "ws", warehouse_db, {"effect": WORKFLOW}),
            "ws",
        )
        self.workspace = self.svc.catalog.workspace("local", "ws", fresh=True)

    def create_runs(self, n: int) -> None:
        for _ in range(n):
            create_run(
                self.svc,
                self.workspace,
                RunRequest("workflow", "workflows/effect", {}),
            )

    def run_states(self) -> dict[str, int]:
        with self.svc.engine.connect() as conn:
            rows = conn.execute(select(runs.c.state, func.count()).group_by(runs.c.state)).all()
        return {str(state): int(n) for state, n in rows}

    def succeeded(self) -> int:
        try:
            return self.run_states().get("succeeded", 0)
        except Exception:
            return -1  # the database is still coming back

    def step_reruns(self) -> int:
        """Step executions beyond the first, as the runs recorded them."""
        with self.svc.engine.connect() as conn:
            extra = conn.execute(select(func.sum(run_steps.c.attempt - 1))).scalar_one()
        return int(extra or 0)

    def task_attempts(self) -> list[tuple[str, int]]:
        with self.svc.engine.connect() as conn:
            return [
                (str(s), int(a)) for s, a in conn.execute(select(tasks.c.state, tasks.c.attempts))
            ]


def _effects(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("select count(*) from side_effects").fetchone()
        assert row is not None
        return int(row[0])


def _not_ready_because_of_loops(w: WorkerProc) -> bool:
    response = w.get("/readyz")
    if response is None or response.status_code != 503:
        return False
    return str(response.json()["checks"].get("work_loops", "")).startswith("failed: ")


def test_workers_ride_out_a_postgres_restart_under_load(
    empty_pg_database: str, tmp_path: Path
) -> None:
    warehouse, warehouse_dsn = _warehouse(empty_pg_database)
    with private_cluster() as cluster:
        state_url = cluster.create_database("quarry")
        engine = create_state_engine(state_url)
        migrate(engine)
        engine.dispose()
        deployment = Deployment(state_url, tmp_path, warehouse)
        try:
            with _workers(deployment.env, tmp_path, 2) as workers:
                deployment.create_runs(10)
                wait_until(lambda: deployment.succeeded() == 10, 60, "the first ten runs")
                # Load: queued and in-flight runs when the server goes down.
                deployment.create_runs(20)
                _restart_and_check_readiness(cluster, workers)
                back = time.monotonic()
                deployment.create_runs(10)
                wait_until(lambda: deployment.succeeded() == 40, 60, "every run after restart")
                drained_in = time.monotonic() - back
                wait_until(
                    lambda: all(w.status("/readyz") == 200 for w in workers),
                    10,
                    "readiness back to 200",
                )
                assert all(w.alive() for w in workers)
            assert deployment.run_states() == {"succeeded": 40}
            attempts = deployment.task_attempts()
            assert len(attempts) == 40 and all(s == "succeeded" for s, _ in attempts)
            # Steps are at least once (docs/runs.md): one in flight when the state
            # database went away may not have recorded its checkpoint, and runs again
            # as a new attempt of that step (the first may or may not have reached the
            # warehouse). So every extra side effect must be such a recorded
            # re-attempt -- never a silent double, never a run executed twice.
            reruns = deployment.step_reruns()
            assert 40 <= _effects(warehouse_dsn) <= 40 + reruns, (_effects(warehouse_dsn), reruns)
            # Within seconds of the database coming back (a lease is 6 s; nothing had
            # to wait for one to expire and be reaped, or be retried after backoff).
            assert drained_in < 15, f"drained {drained_in:.1f}s after the restart"
            logs = "".join(w.log.read_text(errors="replace") for w in workers)
            assert "PendingRollbackError" not in logs
            assert "reconnected the pinned connection" in logs
        finally:
            deployment.svc.close()


def _restart_and_check_readiness(cluster: PrivateCluster, workers: list[WorkerProc]) -> None:
    cluster.stop("fast")
    try:
        # Down past the threshold: 503 naming the failing loops; the process lives.
        wait_until(
            lambda: all(_not_ready_because_of_loops(w) for w in workers),
            UNREADY_AFTER + 20,
            "/readyz to fail while the database is down",
        )
        assert all(w.status("/healthz") == 200 for w in workers)
    finally:
        cluster.start()


def test_a_worker_keeps_claiming_after_its_backends_are_terminated(
    pg_database: str, empty_pg_database: str, tmp_path: Path
) -> None:
    warehouse, warehouse_dsn = _warehouse(empty_pg_database)
    deployment = Deployment(pg_database, tmp_path, warehouse)
    name = pg_database.rsplit("/", 1)[1]
    try:
        with _workers(deployment.env, tmp_path, 1) as workers:
            deployment.create_runs(3)
            wait_until(lambda: deployment.succeeded() == 3, 60, "the first runs")
            with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
                cut = admin.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = %s AND pid <> pg_backend_pid()",
                    (name,),
                ).fetchone()
            assert cut is not None and cut[0] >= 1
            deployment.create_runs(3)
            wait_until(lambda: deployment.succeeded() == 6, 30, "runs after the cut")
            assert workers[0].status("/readyz") == 200
        assert _effects(warehouse_dsn) == 6
    finally:
        deployment.svc.close()


def test_a_serve_process_with_in_process_workers_rides_out_a_restart(
    empty_pg_database: str, tmp_path: Path
) -> None:
    """``quarry serve`` on Postgres runs its workers (and the driver) in process: its
    ``/readyz`` reports them the same way."""
    warehouse, warehouse_dsn = _warehouse(empty_pg_database)
    with private_cluster() as cluster:
        state_url = cluster.create_database("quarry")
        engine = create_state_engine(state_url)
        migrate(engine)
        engine.dispose()
        deployment = Deployment(state_url, tmp_path, warehouse)
        port = free_port()
        log = tmp_path / "serve.log"
        with log.open("ab") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "quarry", "serve", "--port", str(port)],
                env={**os.environ, **deployment.env, "PYTHONUNBUFFERED": "1"},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        server = WorkerProc(process, port, log)
        try:
            wait_until(lambda: server.alive() and server.status("/readyz") == 200, 60, "serve")
            deployment.create_runs(5)
            wait_until(lambda: deployment.succeeded() == 5, 60, "runs on in-process workers")
            deployment.create_runs(5)
            _restart_and_check_readiness(cluster, [server])
            wait_until(lambda: deployment.succeeded() == 10, 60, "runs after the restart")
            wait_until(lambda: server.status("/readyz") == 200, 10, "readiness back to 200")
            assert server.alive()
            reruns = deployment.step_reruns()
            assert 10 <= _effects(warehouse_dsn) <= 10 + reruns
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
            deployment.svc.close()
