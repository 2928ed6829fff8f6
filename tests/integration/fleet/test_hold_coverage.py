"""On a real Factory application (role all, real in-process drain), the hold count
never drops to zero while a run whose request has completed is still queued or
running — on SQLite (kicked by the write request itself; no NOTIFY) and on
PostgreSQL (NOTIFY as well).

Every transition of the count to zero, and the moment each POST is answered, is
checked against the database: a run whose POST already answered is finished, or
something holds.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from quarry.api.app import create_app
from quarry.api.fleet.keepalive import ScaleToZero
from quarry.demo import create_demo_workspace
from quarry.factory.local import compile_local
from quarry.node.services import Services, build_services
from quarry.store.run_tables import runs
from tests.conftest import Backend
from tests.support.processes import serve_in_thread, wait_until

WS = "/api/v1/workspaces/shop"


@pytest.fixture
def factory(
    backend: Backend, tmp_path: Path
) -> Iterator[tuple[httpx.Client, Services, ScaleToZero]]:
    svc = build_services(backend.settings(data_dir=tmp_path / "data", auth="open"))
    root = create_demo_workspace(tmp_path / "shop")
    compile_local(svc.engine, svc.store, "local", root, "shop")
    app = create_app(svc)
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        yield client, svc, app.state.scale_to_zero
    svc.close()


def test_no_zero_while_answered_runs_are_unfinished(
    factory: tuple[httpx.Client, Services, ScaleToZero],
) -> None:
    client, svc, scale = factory
    assert client.get("/healthz").status_code == 200  # the first request: recovery
    assert scale.recovery is not None
    assert scale.recovery.done.wait(30)
    wait_until(lambda: svc.holds.count == 0, 30, "recovery's hold to go")

    answered: set[str] = set()
    lock = threading.Lock()
    violations: list[str] = []
    zeros = 0
    reasons: set[str] = set()

    def on_change(count: int) -> None:
        nonlocal zeros
        reasons.update(svc.holds.by_reason())
        if count != 0 or svc.holds.count != 0:
            return
        zeros += 1
        with lock:
            ids = set(answered)
        if not ids:
            return
        with svc.engine.connect() as conn:
            unfinished = conn.execute(
                select(runs.c.id, runs.c.state).where(
                    runs.c.id.in_(ids), runs.c.state.in_(["queued", "running"])
                )
            ).all()
        if unfinished:
            violations.append(f"holds reached 0 with {unfinished}")

    unsubscribe = svc.holds.subscribe(on_change)
    try:
        for _ in range(4):
            created = client.post(f"{WS}/runs", json={"name": "workflows/monthly_revenue"})
            assert created.status_code == 202, created.text
            run_id = created.json()["id"]
            if svc.holds.count == 0:  # answered: held from now on, unless already done
                with svc.engine.connect() as conn:
                    state = conn.execute(select(runs.c.state).where(runs.c.id == run_id))
                    if state.scalar_one() in {"queued", "running"}:
                        violations.append(f"run {run_id} answered with no hold")
            with lock:
                answered.add(run_id)

        def all_finished() -> bool:
            with svc.engine.connect() as conn:
                states = conn.execute(select(runs.c.state).where(runs.c.id.in_(answered))).scalars()
                return all(s == "succeeded" for s in states)

        wait_until(all_finished, 120, "the runs to finish")
        wait_until(lambda: svc.holds.count == 0, 30, "the holds to be released")
    finally:
        unsubscribe()
    assert violations == []
    assert zeros >= 1  # the check ran
    assert {"run", "request"} <= reasons
