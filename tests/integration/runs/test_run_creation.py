"""Every run is created by one function, ``quarry.runtime.runs.service.write_runs``,
whoever asks: the API (one run and a batch), a schedule's fire, a Factory draft run
and ``quarry run``. Each entry point is driven for real (HTTP, a scheduler tick, the
Factory's route, the CLI in its own process) on Postgres; a spy on the store's one
``INSERT INTO runs`` records which function wrote the rows, and every run's stream
starts with exactly one ``run.queued``. tests/unit/runtime/runs/test_one_owner.py
checks that no other module writes runs or mints their ids."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from quarry.api.app import create_app
from quarry.core.settings import Settings
from quarry.demo import create_demo_workspace
from quarry.factory.local import compile_local
from quarry.node.services import Services, build_services
from quarry.runtime.runs.events import RunEvent
from quarry.scheduling.ticks import tick_schedules
from quarry.store import runs as runq
from quarry.store.runs import RunRow
from tests.conftest import Backend
from tests.integration.factory.gitrepos import factory_api
from tests.integration.scheduling.helpers import next_run
from tests.support.processes import serve_in_thread, wait_until

WS = "/api/v1/workspaces/shop"
SCHEDULE = "target:\n  workflow: workflows/monthly_revenue.workflow.yml\ncron: '* * * * * *'\n"


@pytest.fixture
def writers(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, list[str]]]:
    """(module, function, run ids) of every call that inserted run rows."""
    seen: list[tuple[str, str, list[str]]] = []
    insert = runq.insert_runs

    def spy(conn: Any, rows: Sequence[RunRow]) -> None:
        caller = sys._getframe(1)
        seen.append((caller.f_globals["__name__"], caller.f_code.co_name, [r.id for r in rows]))
        insert(conn, rows)

    monkeypatch.setattr(runq, "insert_runs", spy)
    return seen


@pytest.fixture
def settings(pg_database: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=pg_database,
        blob_url=(tmp_path / "blobs").as_uri(),
        data_dir=tmp_path / "data",
        revision_cache_ttl=0,
        inprocess_workers="off",
        global_driver="off",  # the test's own tick fires the schedule
    )


@pytest.fixture
def svc(settings: Settings, tmp_path: Path) -> Iterator[Services]:
    services = build_services(settings)
    root = create_demo_workspace(tmp_path / "shop")
    (root / "schedules").mkdir(exist_ok=True)
    (root / "schedules" / "every_second.schedule.yml").write_text(SCHEDULE)
    compile_local(services.engine, services.store, "local", root, "shop")
    yield services
    services.close()


def events(svc: Services, run_id: str) -> list[dict[str, Any]]:
    with svc.engine.connect() as conn:
        return [event for _, event in runq.events_after(conn, run_id, 0)]


def assert_created_once(
    svc: Services, writers: list[tuple[str, str, list[str]]], run_id: str
) -> dict[str, Any]:
    """The run was written by write_runs and its stream starts with one run.queued."""
    by = [(module, function) for module, function, ids in writers if run_id in ids]
    assert by == [("quarry.runtime.runs.service", "write_runs")], writers
    stream = events(svc, run_id)
    assert stream[0]["type"] == RunEvent.QUEUED
    assert [e["type"] for e in stream].count(RunEvent.QUEUED) == 1
    return stream[0]


def test_the_api_creates_runs_with_write_runs(
    svc: Services, writers: list[tuple[str, str, list[str]]]
) -> None:
    with serve_in_thread(create_app(svc)) as url, httpx.Client(base_url=url, timeout=30) as c:
        one = c.post(f"{WS}/runs", json={"name": "workflows/monthly_revenue"})
        batch = c.post(
            f"{WS}/runs:batch",
            json={"runs": [{"name": "workflows/monthly_revenue"}] * 3},
        )
    assert one.status_code == 202 and batch.status_code == 202, (one.text, batch.text)
    ids = [one.json()["id"], *(r["id"] for r in batch.json()["runs"])]
    for run_id in ids:
        queued = assert_created_once(svc, writers, run_id)
        assert queued == {"type": "run.queued", "revision_id": one.json()["revision_id"]}
    assert ids[1:] in [ids for _, _, ids in writers], "a batch is one insert"
    with svc.engine.connect() as conn:
        rows = [runq.get_run(conn, "local", run_id) for run_id in ids]
    assert all(r.task_id is not None and r.origin == "api" for r in rows)


def test_a_schedule_fire_creates_its_run_with_write_runs(
    svc: Services, writers: list[tuple[str, str, list[str]]]
) -> None:
    due = next_run(svc.engine, "schedules/every_second")
    [fire] = tick_schedules(svc, now=due, node="test")
    assert fire.run_id is not None and fire.task_id is not None
    assert_created_once(svc, writers, fire.run_id)
    with svc.engine.connect() as conn:
        run = runq.get_run(conn, "local", fire.run_id)
    assert run.task_id == fire.task_id and run.origin == "schedule"


def test_a_factory_draft_run_is_created_with_write_runs(
    pg_database: str, tmp_path: Path, writers: list[tuple[str, str, list[str]]]
) -> None:
    backend = Backend("postgres", pg_database, (tmp_path / "blobs").as_uri())
    with factory_api(backend, tmp_path) as api:
        created = api.client.post(f"{WS}/draft-runs", json={"name": "workflows/monthly_revenue"})
        assert created.status_code == 202, created.text
        run_id = created.json()["id"]
        queued = assert_created_once(api.svc, writers, run_id)
        assert queued["draft"] is True
        wait_until(
            lambda: events(api.svc, run_id)[-1]["type"] in {"run.succeeded", "run.failed"},
            120,
            "the draft run to end",
        )
        kinds = [e["type"] for e in events(api.svc, run_id)]
    assert kinds[:2] == [RunEvent.QUEUED, RunEvent.STARTED] and kinds[-1] == RunEvent.SUCCEEDED
    assert kinds.count(RunEvent.STARTED) == 1


def test_quarry_run_records_one_stream_without_duplicates(
    settings: Settings, tmp_path: Path
) -> None:
    """The bug of issue #14: ``quarry run`` on the demo workspace wrote two
    run.started and both run.finished and run.succeeded."""
    root = create_demo_workspace(tmp_path / "demo")
    env = {
        **os.environ,
        "QUARRY_DATABASE_URL": str(settings.database_url),
        "QUARRY_BLOB_URL": str(settings.blob_url),
        "QUARRY_DATA_DIR": str(tmp_path / "cli-data"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "quarry", "run", "workflows/monthly_revenue.workflow.yml", "--json"],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    run_id = json.loads(done.stdout)["run_id"]
    svc = build_services(settings)
    try:
        stream = events(svc, run_id)
        with svc.engine.connect() as conn:
            steps = [s.step_key for s in runq.get_steps(conn, run_id)]
    finally:
        svc.close()
    expected: list[str] = [RunEvent.QUEUED, RunEvent.STARTED]
    expected += [RunEvent.STEP_STARTED, RunEvent.STEP_FINISHED] * len(steps)
    assert [e["type"] for e in stream] == [*expected, RunEvent.SUCCEEDED]
    assert stream[1] == {"type": "run.started", "attempt": 1}
    assert steps, "the workflow has steps"
