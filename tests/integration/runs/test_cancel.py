"""Cancelling a run while it executes stops it between steps."""

from __future__ import annotations

from pathlib import Path

import httpx

from quarry.api.app import create_app
from quarry.factory.local import compile_local
from quarry.node.services import build_services
from tests.conftest import Backend
from tests.support.processes import serve_in_thread, wait_until

STEPS = 20


def test_cancel_a_running_run(backend: Backend, empty_pg_database: str, tmp_path: Path) -> None:
    warehouse = empty_pg_database.rsplit("/", 1)[1]
    root = tmp_path / "ws"
    (root / "workflows").mkdir(parents=True)
    (root / "config.yml").write_text(
        "databases:\n  - name: wh\n    type: postgres\n    host: 127.0.0.1\n"
        f"    port: 5432\n    user: postgres\n    database: {warehouse}\nmodels: []\n"
    )
    tasks = "".join(
        f"  - name: nap{i}\n    type: execute_sql\n    database: wh\n"
        "    sql_query: select pg_sleep(0.25) is not null as slept\n"
        for i in range(STEPS)
    )
    (root / "workflows" / "naps.workflow.yml").write_text(f"tasks:\n{tasks}")
    svc = build_services(
        backend.settings(data_dir=tmp_path / "data", revision_cache_ttl=0, worker_lease_seconds=0.9)
    )
    compile_local(svc.engine, svc.store, "local", root, "ws")
    with serve_in_thread(create_app(svc)) as url, httpx.Client(base_url=url, timeout=30) as client:
        run = client.post("/api/v1/workspaces/ws/runs", json={"name": "workflows/naps"}).json()

        def started() -> bool:
            steps = client.get(f"/api/v1/runs/{run['id']}").json()["steps"]
            return any(s["step_key"] == "tasks.1" for s in steps)

        wait_until(started, 30, "the second step to start")
        assert client.post(f"/api/v1/runs/{run['id']}/cancel").status_code == 200

        def finished() -> bool:
            return client.get(f"/api/v1/runs/{run['id']}").json()["state"] != "running"

        wait_until(finished, 30, "the run to stop")
        done = client.get(f"/api/v1/runs/{run['id']}").json()
        assert done["state"] == "cancelled", done
        assert len(done["steps"]) < STEPS
        # the worker goes on: a new run still succeeds
        again = client.post("/api/v1/workspaces/ws/runs", json={"name": "workflows/naps"}).json()
        wait_until(
            lambda: client.get(f"/api/v1/runs/{again['id']}").json()["state"] == "succeeded",
            60,
            "a later run to succeed",
        )
    svc.close()
