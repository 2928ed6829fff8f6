"""The runs API over a real socket: creation queues a task in the same transaction;
list pages; cancel; events stream as server-sent events from the database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from quarry.api.app import create_app
from quarry.demo import create_demo_workspace
from quarry.factory.local import compile_local
from quarry.node.services import Services, build_services
from quarry.store.queue_tables import tasks
from tests.conftest import Backend
from tests.support.processes import serve_in_thread

WS = "/api/v1/workspaces/shop"


@pytest.fixture
def api(backend: Backend, tmp_path: Path) -> Iterator[tuple[httpx.Client, Services]]:
    svc = build_services(
        backend.settings(data_dir=tmp_path / "data", revision_cache_ttl=0, inprocess_workers="off")
    )
    root = create_demo_workspace(tmp_path / "shop")
    compile_local(svc.engine, svc.store, "local", root, "shop")
    with serve_in_thread(create_app(svc)) as url, httpx.Client(base_url=url, timeout=10) as c:
        yield c, svc
    svc.close()


def _task_count(svc: Services) -> int:
    with svc.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(tasks)).scalar_one())


def test_create_queues_exactly_one_task(api: tuple[httpx.Client, Services]) -> None:
    client, svc = api
    created = client.post(f"{WS}/runs", json={"name": "workflows/monthly_revenue"})
    assert created.status_code == 202, created.text
    run = created.json()
    assert run["state"] == "queued" and run["revision_id"]
    assert _task_count(svc) == 1
    got = client.get(f"/api/v1/runs/{run['id']}").json()
    assert got["id"] == run["id"] and got["steps"] == []


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"name": "workflows/nope"}, 404),
        ({"name": "workflows/monthly_revenue", "kind": "agent"}, 400),
        ({"name": "workflows/monthly_revenue", "extra": 1}, 400),
        ({"name": "workflows/monthly_revenue", "revision": "f" * 32}, 404),
        ({"name": ""}, 400),
    ],
)
def test_bad_run_requests_change_nothing(
    api: tuple[httpx.Client, Services], body: dict[str, object], status: int
) -> None:
    client, svc = api
    got = client.post(f"{WS}/runs", json=body)
    assert got.status_code == status, got.text
    assert got.json()["message"]
    assert _task_count(svc) == 0


def test_list_pages_newest_first(api: tuple[httpx.Client, Services]) -> None:
    client, _ = api
    ids = [
        client.post(f"{WS}/runs", json={"name": "workflows/monthly_revenue"}).json()["id"]
        for _ in range(5)
    ]
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get(f"{WS}/runs", params=params).json()
        seen += [r["id"] for r in page["runs"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(ids) and len(seen) == 5
    assert client.get(f"{WS}/runs", params={"cursor": "!!"}).status_code == 400


def test_cancel_a_queued_run_and_follow_its_events(api: tuple[httpx.Client, Services]) -> None:
    client, _ = api
    run = client.post(f"{WS}/runs", json={"name": "workflows/monthly_revenue"}).json()
    cancelled = client.post(f"/api/v1/runs/{run['id']}/cancel").json()
    assert cancelled["state"] == "cancelled"
    with client.stream("GET", f"/api/v1/runs/{run['id']}/events") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        text = "".join(stream.iter_text())
    assert "event: run.queued" in text
    assert "event: run.cancelled" in text
    assert text.rstrip().endswith("data: {}")
    assert client.get("/api/v1/runs/nope").status_code == 404


def test_events_resume_after_last_event_id(api: tuple[httpx.Client, Services]) -> None:
    client, _ = api
    run = client.post(f"{WS}/runs", json={"name": "workflows/monthly_revenue"}).json()
    client.post(f"/api/v1/runs/{run['id']}/cancel")
    with client.stream("GET", f"/api/v1/runs/{run['id']}/events") as stream:
        full = "".join(stream.iter_text())
    ids = [int(line[4:]) for line in full.splitlines() if line.startswith("id: ")]
    assert len(ids) == 2 and ids == sorted(ids)
    headers = {"Last-Event-ID": str(ids[0])}
    with client.stream("GET", f"/api/v1/runs/{run['id']}/events", headers=headers) as stream:
        resumed = "".join(stream.iter_text())
    assert "event: run.queued" not in resumed
    assert f"id: {ids[1]}" in resumed and "event: run.cancelled" in resumed
    bad = client.get(f"/api/v1/runs/{run['id']}/events", headers={"Last-Event-ID": "x"})
    assert bad.status_code == 400
