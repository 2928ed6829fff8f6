"""Serve reads its listings from a streaming read replica (``QUARRY_DATABASE_READ_URL``).

A private primary cluster and a hot standby of it (``pg_basebackup -R``, both real
servers on their own ports) sit behind one real ``quarry serve --role serve``
process. The standby's replay is paused (``pg_wal_replay_pause()``): a run created
through serve is then answered by id (a read of one's own write: the primary) but
absent from the run history, and a workspace compiled meanwhile is answered by name
but absent from the workspace list (both listings: the replica). Once replay resumes
the listings catch up. Writes succeed while the replica is paused, and the run row is
on the primary only: the primary stays authoritative (a standby refuses writes).
With the replica stopped, the listings fall back to the primary.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest

from quarry.core.errors import ConfigurationError
from quarry.core.settings import Settings
from quarry.factory.local import compile_local
from quarry.node.services import Services, build_services
from quarry.store.db import create_state_engine
from quarry.store.migrate import migrate
from tests.support.private_pg import PrivateCluster, private_cluster
from tests.support.processes import ServerProcess, quarry_process, wait_until
from tests.support.replica_pg import Replica, streaming_replica
from tests.support.warehouse import warehouse_workspace

pytestmark = pytest.mark.slow

WORKFLOW = """\
description: Never executed here (no worker); it only has to compile.
tasks:
  - name: one
    type: execute_sql
    database: warehouse
    sql_query: select 1 as one
"""


@dataclass
class ReplicatedServe:
    primary: PrivateCluster
    replica: Replica
    serve: ServerProcess
    svc: Services
    tmp: Path

    def post_run(self) -> str:
        response = httpx.post(
            f"{self.serve.url}/api/v1/workspaces/ws/runs",
            json={"name": "workflows/one"},
            timeout=10,
        )
        assert response.status_code == 202, response.text
        return str(response.json()["id"])

    def listed_runs(self) -> set[str]:
        response = httpx.get(f"{self.serve.url}/api/v1/workspaces/ws/runs", timeout=10)
        assert response.status_code == 200, response.text
        return {run["id"] for run in response.json()["runs"]}

    def listed_workspaces(self) -> set[str]:
        response = httpx.get(f"{self.serve.url}/api/v1/workspaces", timeout=10)
        assert response.status_code == 200, response.text
        return {ws["name"] for ws in response.json()["workspaces"]}

    def compile(self, name: str) -> None:
        root = warehouse_workspace(self.tmp / name, "warehouse_unused", {"one": WORKFLOW})
        compile_local(self.svc.engine, self.svc.store, "local", root, name)

    def rows_on(self, dsn: str, run_id: str) -> int:
        with psycopg.connect(dsn) as conn:
            row = conn.execute("select count(*) from runs where id = %s", (run_id,)).fetchone()
        assert row is not None
        return int(row[0])


@pytest.fixture
def replicated(tmp_path: Path) -> Iterator[ReplicatedServe]:
    with private_cluster() as primary:
        url = primary.create_database("quarry")
        engine = create_state_engine(url)
        migrate(engine)
        engine.dispose()
        with streaming_replica(primary) as replica:
            env = {
                "QUARRY_DATABASE_URL": url,
                "QUARRY_DATABASE_READ_URL": replica.url("quarry"),
                "QUARRY_BLOB_URL": (tmp_path / "blobs").as_uri(),
                "QUARRY_AUTH": "open",
                "QUARRY_REVISION_CACHE_TTL": "0",
            }
            svc = build_services(
                Settings(database_url=url, blob_url=env["QUARRY_BLOB_URL"], data_dir=tmp_path)
            )
            try:
                deployment = ReplicatedServe(primary, replica, None, svc, tmp_path)  # type: ignore[arg-type]
                deployment.compile("ws")
                with quarry_process(
                    ["serve", "--role", "serve"],
                    {**env, "QUARRY_DATA_DIR": str(tmp_path / "serve")},
                    tmp_path / "serve.log",
                ) as serve:
                    deployment.serve = serve
                    yield deployment
            finally:
                svc.close()


def test_listings_lag_with_the_replica_while_reads_of_own_writes_do_not(
    replicated: ReplicatedServe,
) -> None:
    first = replicated.post_run()
    replicated.replica.wait_caught_up()
    assert first in replicated.listed_runs()
    assert replicated.listed_workspaces() == {"ws"}

    replicated.replica.pause_replay()
    second = replicated.post_run()  # a write: the primary takes it, the replica is paused
    replicated.compile("ws2")

    # Read-after-write paths read the primary: they see both at once.
    run = httpx.get(f"{replicated.serve.url}/api/v1/runs/{second}", timeout=10)
    assert run.status_code == 200, run.text
    assert run.json()["state"] == "queued"
    ws2 = httpx.get(f"{replicated.serve.url}/api/v1/workspaces/ws2", timeout=10)
    assert ws2.status_code == 200, ws2.text
    # The listings read the paused replica: neither is there yet.
    assert replicated.replica.lag_bytes() > 0
    assert replicated.listed_runs() == {first}
    assert replicated.listed_workspaces() == {"ws"}
    # The row is on the primary only.
    assert replicated.rows_on(replicated.primary.dsn("quarry"), second) == 1
    assert replicated.rows_on(replicated.replica.dsn("quarry"), second) == 0

    replicated.replica.resume_replay()
    wait_until(lambda: replicated.listed_runs() == {first, second}, 30, "run history to catch up")
    wait_until(lambda: replicated.listed_workspaces() == {"ws", "ws2"}, 30, "workspace list")
    assert "read replica unreachable" not in replicated.serve.log()


def test_listings_fall_back_to_the_primary_while_the_replica_is_down(
    replicated: ReplicatedServe,
) -> None:
    assert replicated.listed_runs() == set()  # the replica's pool now holds a connection
    replicated.replica.cluster.stop("fast")
    made = replicated.post_run()
    assert replicated.listed_runs() == {made}  # from the primary: the replica is gone
    assert replicated.listed_workspaces() == {"ws"}
    wait_until(
        lambda: "read replica unreachable, reading from the primary" in replicated.serve.log(),
        10,
        "the fallback warning",
    )


def test_a_read_url_needs_a_postgres_state_database(tmp_path: Path) -> None:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'state.db'}",
        database_read_url="postgresql://postgres@127.0.0.1:5432/postgres",
        blob_url=(tmp_path / "blobs").as_uri(),
        data_dir=tmp_path,
    )
    with pytest.raises(ConfigurationError, match="QUARRY_DATABASE_READ_URL"):
        build_services(settings)
    assert not (tmp_path / "state.db").exists()  # refused before anything was created
