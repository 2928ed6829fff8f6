"""Scale-to-zero acceptance: a real Factory (``quarry serve PATH --role all`` on
Postgres) behind a harness that scales like an HTTP-request scaler.

- a run lasting several cooldowns, with no client request open, finishes without
  the Factory being stopped (its keep-alive long-polls keep a request in flight);
- an idle Factory is stopped after the cooldown, and the next request starts it;
- a Factory evicted mid-run (SIGKILL) is started by the next request, and startup
  recovery finishes the interrupted run (each step with a side effect ran once).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest
from sqlalchemy import create_engine, select

from quarry.store.run_tables import run_steps, runs
from tests.fleet.scale_to_zero.harness import ScalerHarness
from tests.support.processes import serve_in_thread, wait_until
from tests.support.services import PG_ADMIN_DSN, free_port
from tests.support.warehouse import warehouse_workspace

pytestmark = pytest.mark.slow

COOLDOWN = 1.5
FACTORY = [sys.executable, "-m", "quarry", "serve"]

LONG = """\
description: Outlives several cooldowns of the scaler, with no client connected.
tasks:
  - name: one
    type: execute_sql
    database: warehouse
    sql_query: select pg_sleep(2) is not null as slept
  - name: two
    type: execute_sql
    database: warehouse
    sql_query: select pg_sleep(2) is not null as slept
  - name: three
    type: execute_sql
    database: warehouse
    sql_query: select pg_sleep(2) is not null as slept
"""

DURABLE = """\
description: The first and last steps leave a row behind; the middle one is slow.
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


@dataclass
class Stack:
    harness: ScalerHarness
    url: str  # the scaler's address: what clients (and QUARRY_SELF_URL) use
    state_url: str
    warehouse_dsn: str

    def run_state(self, run_id: str) -> str | None:
        engine = create_engine(self.state_url.replace("postgresql://", "postgresql+psycopg://"))
        try:
            with engine.connect() as conn:
                return conn.execute(select(runs.c.state).where(runs.c.id == run_id)).scalar()
        finally:
            engine.dispose()

    def step_state(self, run_id: str, key: str) -> str | None:
        engine = create_engine(self.state_url.replace("postgresql://", "postgresql+psycopg://"))
        try:
            with engine.connect() as conn:
                return conn.execute(
                    select(run_steps.c.state).where(
                        run_steps.c.run_id == run_id, run_steps.c.step_key == key
                    )
                ).scalar()
        finally:
            engine.dispose()

    def side_effects(self) -> list[str]:
        with psycopg.connect(self.warehouse_dsn) as conn:
            return [r[0] for r in conn.execute("select step from side_effects order by step")]

    def start_run(self, name: str) -> str:
        response = httpx.post(
            f"{self.url}/api/v1/workspaces/ws/runs",
            json={"kind": "workflow", "name": f"workflows/{name}"},
            timeout=120,
        )
        assert response.status_code == 202, response.text
        return str(response.json()["id"])


@pytest.fixture
def stack(pg_database: str, empty_pg_database: str, tmp_path: Path) -> Iterator[Stack]:
    warehouse = empty_pg_database.rsplit("/", 1)[1]
    warehouse_dsn = PG_ADMIN_DSN.rsplit("/", 1)[0] + f"/{warehouse}"
    with psycopg.connect(warehouse_dsn, autocommit=True) as conn:
        conn.execute("create table side_effects (step text not null)")
    root = warehouse_workspace(tmp_path / "ws", warehouse, {"long": LONG, "durable": DURABLE})
    port = free_port()
    logs = tmp_path / "factory.log"
    holder: dict[str, str] = {}

    def start_factory() -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "QUARRY_DATABASE_URL": pg_database,
            "QUARRY_BLOB_URL": (tmp_path / "blobs").as_uri(),
            "QUARRY_DATA_DIR": str(tmp_path / "data"),
            "QUARRY_AUTH": "open",
            "QUARRY_SELF_URL": holder["url"],
            "QUARRY_KEEPALIVE_HOLD_SECONDS": "2",
            "QUARRY_WORKER_LEASE_SECONDS": "2",
            "QUARRY_WORKER_SHUTDOWN_GRACE": "1",
        }
        with logs.open("ab") as out:
            return subprocess.Popen(
                [*FACTORY, str(root), "--role", "all", "--port", str(port)],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    harness = ScalerHarness(start_factory, f"http://127.0.0.1:{port}", cooldown=COOLDOWN)
    with serve_in_thread(harness) as url:
        holder["url"] = url
        harness.start_monitor()
        try:
            yield Stack(harness, url, pg_database, warehouse_dsn)
        except BaseException:
            print(logs.read_text(errors="replace")[-20_000:])
            raise
        finally:
            harness.close()


def test_idle_factory_scales_to_zero_and_the_next_request_starts_it(stack: Stack) -> None:
    harness = stack.harness
    assert not harness.running and harness.count("start") == 0
    assert httpx.get(f"{stack.url}/healthz", timeout=120).status_code == 200
    assert harness.count("start") == 1
    # Nothing held: stopped after the cooldown, gracefully.
    wait_until(lambda: harness.count("stop") == 1, COOLDOWN + 30, "the idle Factory to stop")
    stop = next(e for e in harness.events if e.what == "stop")
    assert stop.detail.startswith("SIGTERM"), stop.detail
    assert not harness.running
    # The next request wakes it and is answered.
    response = httpx.get(f"{stack.url}/api/v1/workspaces", timeout=120)
    assert response.status_code == 200, response.text
    assert harness.count("start") == 2


def test_long_run_holds_the_factory_and_eviction_is_recovered(stack: Stack) -> None:
    harness = stack.harness
    # 1. A run lasting four cooldowns, no client connected while it runs.
    long_run = stack.start_run("long")

    def finished_unstopped() -> bool:
        assert harness.count("stop") == 0, f"stopped mid-run: {harness.events}"
        return stack.run_state(long_run) == "succeeded"

    wait_until(finished_unstopped, 60, "the long run to finish")
    assert harness.count("start") == 1
    # Its 2-second long-polls were renewed (overlapping) through the scaler.
    assert harness.keepalive_requests() >= 3

    # 2. A run evicted mid-step by the platform (the Factory may have gone idle and
    # been stopped after the first run; the request starts it again if so).
    durable = stack.start_run("durable")
    wait_until(lambda: stack.step_state(durable, "tasks.1") == "running", 60, "the slow step")
    assert stack.step_state(durable, "tasks.0") == "succeeded"
    stops, starts = harness.count("stop"), harness.count("start")
    harness.evict()
    assert stack.run_state(durable) == "running"
    # Nobody is there to finish it until a request arrives (the accepted gap).
    assert not harness.running
    assert httpx.get(f"{stack.url}/healthz", timeout=120).status_code == 200
    assert harness.count("start") == starts + 1

    def recovered_unstopped() -> bool:
        assert harness.count("stop") == stops, f"stopped while recovering: {harness.events}"
        return stack.run_state(durable) == "succeeded"

    wait_until(recovered_unstopped, 60, "recovery to finish the run")
    assert stack.side_effects() == ["first", "last"]  # nothing that finished ran twice
    # Recovery and the drain let go: the idle Factory is scaled to zero again.
    wait_until(lambda: harness.count("stop") == stops + 1, COOLDOWN + 30, "the Factory to stop")
