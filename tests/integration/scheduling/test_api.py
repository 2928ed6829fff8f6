"""The schedules and alerts API over a real socket (FleetOk: database only)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from quarry.api.app import create_app
from quarry.fleet.routes import RouteClass, classify
from quarry.node.services import Services, build_services
from quarry.scheduling.monitors import MonitorChecker
from quarry.scheduling.ticks import tick_schedules
from quarry.store.schedule_tables import schedules
from tests.conftest import Backend
from tests.integration.scheduling.helpers import next_run
from tests.integration.scheduling.workspace import Workspace, monitor_yaml, schedule_yaml
from tests.support.processes import serve_in_thread

WS = "/api/v1/workspaces/sched"


@pytest.fixture
def api_svc(backend: Backend, tmp_path: Path) -> Iterator[Services]:
    svc = build_services(
        backend.settings(
            data_dir=tmp_path / "data",
            revision_cache_ttl=0,
            global_driver="off",
            inprocess_workers="off",
        )
    )
    yield svc
    svc.close()


@pytest.fixture
def client(api_svc: Services, tmp_path: Path) -> Iterator[tuple[httpx.Client, Workspace]]:
    ws = Workspace(tmp_path / "ws", api_svc)
    ws.write("schedules/nightly.schedule.yml", schedule_yaml("0 3 * * *", timezone="Europe/Berlin"))
    ws.write("monitors/level.monitor.yml", monitor_yaml("select level from 'level.csv'"))
    ws.compile()
    with serve_in_thread(create_app(api_svc)) as url, httpx.Client(base_url=url, timeout=30) as c:
        yield c, ws


def test_list_pause_resume_trigger_and_fires(
    client: tuple[httpx.Client, Workspace], api_svc: Services
) -> None:
    c, _ = client
    listed = c.get(f"{WS}/schedules").json()["schedules"]
    assert [(s["kind"], s["name"]) for s in listed] == [
        ("monitor", "monitors/level"),
        ("schedule", "schedules/nightly"),
    ]
    nightly = c.get(f"{WS}/schedules/schedules/nightly").json()
    assert nightly["timezone"] == "Europe/Berlin" and nightly["next_run_at"]
    assert nightly["target"] == {"workflow": "workflows/nightly.workflow.yml"}

    paused = c.post(f"{WS}/schedules/schedules/nightly/pause")
    assert paused.status_code == 200 and paused.json()["paused"] is True
    due = next_run(api_svc.engine, "schedules/nightly")
    assert tick_schedules(api_svc, now=due + timedelta(seconds=1)) == []
    resumed = c.post(f"{WS}/schedules/schedules/nightly/resume").json()
    assert resumed["paused"] is False

    fired = c.post(f"{WS}/schedules/schedules/nightly/trigger")
    assert fired.status_code == 202 and fired.json()["outcome"] == "manual"
    run = c.get(f"/api/v1/runs/{fired.json()['run_id']}").json()
    assert run["name"] == "workflows/nightly" and run["origin"] == "schedule"
    [fire] = c.get(f"{WS}/schedules/schedules/nightly/fires").json()["fires"]
    assert fire["outcome"] == "manual" and fire["run_id"] == run["id"]


def test_alerts_and_history(
    client: tuple[httpx.Client, Workspace], api_svc: Services, tmp_path: Path
) -> None:
    c, _ = client
    assert c.get(f"{WS}/alerts").json() == {"alerts": []}
    checker = MonitorChecker(api_svc, tmp_path / "cache")
    with api_svc.engine.connect() as conn:
        monitor = conn.execute(select(schedules).where(schedules.c.kind == "monitor")).one()
    checker.record(monitor, 42)
    [alert] = c.get(f"{WS}/alerts").json()["alerts"]
    assert alert["monitor"] == "monitors/level" and alert["state"] == "firing"
    history = c.get(f"{WS}/alerts/monitors/level/history").json()["events"]
    assert [e["state"] for e in history] == ["firing"]
    assert history[0]["deliveries"][0]["state"] == "pending"


def test_unknown_names_and_kinds_are_clear_errors(client: tuple[httpx.Client, Workspace]) -> None:
    c, _ = client
    missing = c.get(f"{WS}/schedules/schedules/nope")
    assert missing.status_code == 404 and "schedules/nope" in missing.json()["message"]
    assert c.post(f"{WS}/schedules/schedules/nightly/pause?kind=bogus").status_code == 400
    assert c.get("/api/v1/workspaces/nope/schedules").status_code == 404
    assert c.get(f"{WS}/alerts/monitors/none/history").status_code == 404


def test_routes_are_fleet_ok() -> None:
    for method, path in [
        ("GET", f"{WS}/schedules"),
        ("POST", f"{WS}/schedules/a/b/pause"),
        ("POST", f"{WS}/schedules/a/trigger"),
        ("GET", f"{WS}/alerts/m/history"),
    ]:
        assert classify(method, path) is RouteClass.FLEET_OK
