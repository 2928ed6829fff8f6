"""Tenant SQL never runs with the fleet's secrets (issue 13): on the Factory in fleet
mode a run's SQL executes in a child process whose environment holds no secret, the
child is interrupted by a cancel, and it ends with the run.

The fleet here is role ``all`` on Postgres + S3 with its in-process worker: the test
process *is* the Factory, so the connector host is a child of this process."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.integration.runtime.connectors.conftest import FLEET_SECRET, Fleet, running_fleet
from tests.support.processes import wait_until
from tests.support.tenancy import GLOBEX, s3_url

HOST_MODULE = "quarry.runtime.connectors.host_main"
# About 10^10 rows of cross join: minutes of work, unless interrupted.
SPIN = "SELECT sum(a.range * b.range) AS s FROM range(100000) a, range(100000) b"
SPIN_WORKFLOW = (
    "tasks:\n  - name: spin\n    type: execute_sql\n"
    f"    database: local\n    sql_query: {json.dumps(SPIN)}\n"
)


@pytest.fixture(autouse=True)
def _default_isolation(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests are about the default (and the explicit opt-out), whatever the
    environment the suite runs in says."""
    monkeypatch.delenv("QUARRY_TENANT_SQL_ISOLATION", raising=False)


def connector_hosts() -> list[int]:
    """Live children of this process running the connector host."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        state, ppid = stat[0], int(stat[1])
        if ppid == os.getpid() and state != "Z" and HOST_MODULE.encode() in cmdline:
            found.append(int(entry.name))
    return found


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_spin(fleet: Fleet) -> str:
    fleet.add_workflows({"spin": SPIN_WORKFLOW})
    with fleet.dep.client(f"{GLOBEX}:editor") as client:
        created = client.post("/api/v1/workspaces/globex-ws/runs", json={"name": "workflows/spin"})
        assert created.status_code in (200, 201, 202), created.text
        run_id: str = created.json()["id"]

        def step_running() -> bool:
            run = client.get(f"/api/v1/runs/{run_id}").json()
            return any(step["state"] == "running" for step in run.get("steps", []))

        wait_until(step_running, 30, "the spin step to start")
    return run_id


def cancel_and_wait(fleet: Fleet, run_id: str) -> dict[str, object]:
    with fleet.dep.client(f"{GLOBEX}:editor") as client:
        assert client.post(f"/api/v1/runs/{run_id}/cancel").status_code == 200
        finished: dict[str, object] = {}

        def done() -> bool:
            finished.update(client.get(f"/api/v1/runs/{run_id}").json())
            return finished["state"] in {"succeeded", "failed", "cancelled"}

        wait_until(done, 15, "the cancelled run to end")
    return finished


def test_tenant_sql_runs_in_a_child_without_the_fleets_secrets(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What a Factory's environment holds (the settings here come from arguments).
    monkeypatch.setenv("QUARRY_DATABASE_URL", fleet.state_url)
    assert os.environ["QUARRY_FLEET_SECRET_FOR_TESTS"] == FLEET_SECRET
    assert any(name.startswith("AWS_") for name in os.environ)  # the object store's keys
    run_id = start_spin(fleet)

    hosts: list[int] = []

    def host_started() -> bool:
        hosts[:] = connector_hosts()
        return bool(hosts)

    wait_until(host_started, 30, "the run's connector host")
    [pid] = hosts
    assert pid != os.getpid()
    environ = Path(f"/proc/{pid}/environ").read_bytes().decode()
    names = {entry.split("=", 1)[0] for entry in environ.split("\0") if entry}
    assert not {n for n in names if n.startswith(("QUARRY_", "AWS_", "PG"))}, names
    assert FLEET_SECRET not in environ and fleet.state_url not in environ
    # The statement is being executed there: the child is the one spending CPU.
    wait_until(lambda: cpu_seconds(pid) > 1.0, 30, "the child to execute the statement")

    finished = cancel_and_wait(fleet, run_id)
    assert finished["state"] == "cancelled", finished
    wait_until(lambda: pid not in connector_hosts(), 15, "the connector host to end")


def test_inline_isolation_keeps_sql_in_the_factory(
    fleet_env: None,
    request: pytest.FixtureRequest,
    pg_database: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The operator's opt-out (QUARRY_TENANT_SQL_ISOLATION=inline): no child."""
    bucket = s3_url(request, monkeypatch)
    with running_fleet(pg_database, bucket, tmp_path, tenant_sql_isolation="inline") as fleet:
        run_id = start_spin(fleet)
        assert connector_hosts() == []
        assert cancel_and_wait(fleet, run_id)["state"] == "cancelled"
