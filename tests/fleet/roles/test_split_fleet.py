"""The split fleet as real processes: 1 Factory (ide) + 2 serve replicas + 2 workers on
Postgres and a local S3 server (moto's), talking HTTP over real sockets.

- a file written through a serve replica (the file API, proxied to the Factory) is
  compiled, promoted and then served by both replicas;
- a run created on replica A is executed by a worker and read from replica B;
- with the Factory SIGKILLed, reads, run results and app documents keep working on
  both replicas while IdeOnly routes answer 503 with Retry-After; a Factory started
  again on the same address serves IDE routes through the same replicas.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from quarry.demo import create_demo_workspace
from tests.support.processes import ServerProcess, start_quarry, wait_healthy, wait_until
from tests.support.services import S3Server, free_port

pytestmark = pytest.mark.slow

WS = "/api/v1/workspaces/shop"
NEW_WORKFLOW = """\
description: Added through a serve replica.
tasks:
  - name: revenue
    type: execute_sql
    database: local
    sql_file: queries/monthly_revenue.sql
"""


@dataclass
class SplitFleet:
    env: dict[str, str]
    root: Path
    tmp: Path
    factory_port: int
    factory: ServerProcess
    replicas: list[ServerProcess] = field(default_factory=list)
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start_factory(self, log_name: str) -> ServerProcess:
        factory = start_quarry(
            ["serve", str(self.root), "--role", "ide", "--name", "shop"],
            {
                **self.env,
                "QUARRY_DATA_DIR": str(self.tmp / "factory"),
                # Runs must be executed by the worker processes, not by the Factory.
                "QUARRY_INPROCESS_WORKERS": "off",
            },
            self.tmp / log_name,
            port=self.factory_port,
        )
        wait_healthy(factory, timeout=120)
        self.factory = factory
        return factory

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
            for p in sorted(self.tmp.glob("*.log"))
        )


@pytest.fixture
def split_fleet(s3_server: S3Server, pg_database: str, tmp_path: Path) -> Iterator[SplitFleet]:
    env = {
        **s3_server.env,
        "QUARRY_DATABASE_URL": pg_database,
        "QUARRY_BLOB_URL": f"s3://{s3_server.create_bucket()}/quarry",
        "QUARRY_REVISION_CACHE_TTL": "0.2",
        # Every process authenticates every request itself (the suite defaults to open).
        "QUARRY_AUTH": "tokens",
    }
    root = create_demo_workspace(tmp_path / "shop")
    port = free_port()
    fleet = SplitFleet(env, root, tmp_path, port, factory=None)  # type: ignore[arg-type]
    try:
        fleet.start_factory("factory.log")
        for i in range(2):
            replica = start_quarry(
                ["serve", "--role", "serve"],
                {
                    **env,
                    "QUARRY_DATA_DIR": str(tmp_path / f"serve{i}"),
                    "QUARRY_IDE_UPSTREAM": f"http://127.0.0.1:{port}",
                    "QUARRY_IDE_CONNECT_RETRY_SECONDS": "0.5",
                    "QUARRY_IDE_RETRY_AFTER_SECONDS": "3",
                },
                tmp_path / f"serve{i}.log",
            )
            fleet.replicas.append(replica)
        for i in range(2):
            with (tmp_path / f"worker{i}.log").open("wb") as log:
                fleet.workers.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "quarry", "worker"],
                        env={
                            **os.environ,
                            **env,
                            "QUARRY_DATA_DIR": str(tmp_path / f"worker{i}"),
                            "PYTHONUNBUFFERED": "1",
                        },
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
        for replica in fleet.replicas:
            wait_healthy(replica, timeout=120)
        yield fleet
    finally:
        for replica in fleet.replicas:
            replica.stop()
        for worker in fleet.workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
        for worker in fleet.workers:
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait(timeout=10)
        if fleet.factory is not None:
            fleet.factory.stop()


def _wait_run(client: httpx.Client, url: str, run_id: str, timeout: float = 90) -> dict[str, Any]:
    final: dict[str, Any] = {}

    def finished() -> bool:
        body = client.get(f"{url}/api/v1/runs/{run_id}").json()
        final.update(body)
        return body["state"] in {"succeeded", "failed", "cancelled"}

    wait_until(finished, timeout, f"run {run_id} to finish")
    return final


def _definition(client: httpx.Client, url: str, name: str) -> httpx.Response:
    return client.get(f"{url}{WS}/definitions/workflow/{name}")


def test_split_fleet_compiles_runs_and_degrades(
    split_fleet: SplitFleet, auth_headers: dict[str, str]
) -> None:
    fleet = split_fleet
    a, b = (r.url for r in fleet.replicas)
    client = httpx.Client(headers=auth_headers, timeout=30)
    try:
        _exercise(fleet, client, a, b)
    finally:
        client.close()


def _exercise(fleet: SplitFleet, client: httpx.Client, a: str, b: str) -> None:
    # Replicas authenticate every request themselves, before any routing.
    assert httpx.get(f"{a}{WS}/definitions", timeout=15).status_code == 401
    assert httpx.post(f"{a}{WS}/compile", timeout=15).status_code == 401

    # The serve processes never loaded the Factory, and know where it is.
    for url in (a, b):
        health = client.get(f"{url}/healthz").json()
        assert health["topology"]["role"] == "serve"
        assert health["factory_imported"] is False
        ready = client.get(f"{url}/readyz")
        assert ready.status_code == 200 and ready.json()["checks"]["upstream"] == "ok"
    factory_health = client.get(f"{fleet.factory.url}/healthz").json()
    assert factory_health["factory_imported"] is True
    assert factory_health["topology"]["inprocess_workers"] is False

    # 1. A file written through replica A (the file API, proxied to the Factory) is
    #    compiled, promoted, and then served by both replicas.
    path = "workflows/fleet_check.workflow.yml"
    assert _definition(client, a, "workflows/fleet_check").status_code == 404
    written = client.put(
        f"{a}{WS}/files/{path}",
        json={"content": NEW_WORKFLOW, "expected_hash": None},
        headers={"X-Request-Id": "rq-fleet-1"},
        timeout=30,
    )
    assert written.status_code == 200, (written.text, fleet.logs())
    assert written.headers["x-request-id"] == "rq-fleet-1"
    assert (fleet.root / path).read_text() == NEW_WORKFLOW, "the Factory wrote it"
    for url in (a, b):
        wait_until(
            lambda url=url: _definition(client, url, "workflows/fleet_check").status_code == 200,
            60,
            f"{url} to serve the compiled change",
        )
    revision = _definition(client, a, "workflows/fleet_check").headers["x-quarry-revision"]
    assert _definition(client, b, "workflows/fleet_check").headers["x-quarry-revision"] == revision
    read_back = client.get(f"{b}{WS}/files/{path}")
    assert read_back.status_code == 200 and read_back.text == NEW_WORKFLOW
    assert read_back.headers["x-quarry-content-hash"] == written.json()["hash"]
    compiled = client.post(f"{a}{WS}/compile", timeout=120)
    assert compiled.status_code == 200, compiled.text
    assert compiled.json()["revision_id"] == revision, "the write was already compiled"

    # 2. A workflow run created on replica A is executed by a worker process (the
    #    Factory runs no workers here) and read from replica B; so is an app run.
    run = client.post(f"{a}{WS}/runs", json={"name": "workflows/fleet_check"}, timeout=15)
    assert run.status_code == 202, run.text
    run_id = run.json()["id"]
    done = _wait_run(client, b, run_id)
    assert done["state"] == "succeeded", (done, fleet.logs())
    assert done["revision_id"] == revision
    output = client.get(f"{b}/api/v1/runs/{run_id}/steps/tasks.0/output")
    assert output.status_code == 200 and output.json()
    app_run = client.post(
        f"{b}{WS}/runs",
        json={"kind": "app", "name": "apps/sales_overview", "variables": {"region": "North"}},
        timeout=15,
    ).json()
    assert _wait_run(client, a, app_run["id"])["state"] == "succeeded", fleet.logs()
    data_url = f"{WS}/apps/apps/sales_overview/data"
    document = client.get(f"{a}{data_url}", params={"region": "North"})
    assert document.status_code == 200, document.text

    # 3. SIGKILL the Factory: reads, run results and charts keep working on both
    #    replicas; IdeOnly routes answer 503 with Retry-After, naming the Factory.
    fleet.factory.process.send_signal(signal.SIGKILL)
    fleet.factory.process.wait(timeout=15)
    for url in (a, b):
        assert _definition(client, url, "workflows/fleet_check").status_code == 200
        assert client.get(f"{url}{WS}/definitions").status_code == 200
        assert client.get(f"{url}/api/v1/runs/{run_id}").json()["state"] == "succeeded"
        assert (
            client.get(f"{url}/api/v1/runs/{run_id}/steps/tasks.0/output").content == output.content
        )
        charts = client.get(f"{url}{data_url}", params={"region": "North"})
        assert charts.status_code == 200 and charts.content == document.content
        assert any(block["type"].endswith("_chart") for block in charts.json()["display"])
        for down in (
            client.post(f"{url}{WS}/compile", timeout=15),
            client.put(
                f"{url}{WS}/files/{path}",
                json={"content": "x", "expected_hash": None},
                timeout=15,
            ),
            client.get(f"{url}{WS}/files/{path}"),
        ):
            assert down.status_code == 503, down.text
            assert down.headers["retry-after"] == "3"
            assert down.json()["error"] == "factory_unavailable"
            assert "Factory (QUARRY_IDE_UPSTREAM=http://127.0.0.1:" in down.json()["message"]
        metrics = client.get(f"{url}/metrics").text
        assert 'quarry_proxy_errors_total{reason="connect"}' in metrics
        ready = client.get(f"{url}/readyz")
        assert ready.status_code == 200, "a Factory outage must not take replicas out"
        assert ready.json()["degraded"] == ["upstream"]
    # Workers do not need the Factory either: a run created now still executes.
    late = client.post(f"{b}{WS}/runs", json={"name": "workflows/fleet_check"}, timeout=15)
    assert _wait_run(client, a, late.json()["id"])["state"] == "succeeded"

    # 4. Start the Factory again on the same address: IDE routes recover through the
    #    same replicas, which were never restarted.
    pids = [r.process.pid for r in fleet.replicas]
    fleet.start_factory("factory-again.log")
    for url in (a, b):
        again = client.post(f"{url}{WS}/compile", timeout=120)
        assert again.status_code == 200, again.text
        assert again.json()["revision_id"] == revision
    assert [r.process.pid for r in fleet.replicas] == pids
    assert all(r.process.poll() is None for r in fleet.replicas)
