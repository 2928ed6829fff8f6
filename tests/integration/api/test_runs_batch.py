"""POST /api/v1/workspaces/{ws}/runs:batch over a real socket with the real worker:
many runs in one transaction (one bulk enqueue), all finishing; a bad item or the
tenant's queue cap refuses the whole batch and creates nothing."""

from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from quarry.api.app import create_app
from quarry.demo import create_demo_workspace
from quarry.factory.local import compile_local
from quarry.node.services import Services, build_services
from quarry.store.run_tables import runs
from tests.conftest import Backend
from tests.support.processes import serve_in_thread, wait_until

WS = "/api/v1/workspaces/shop"
RUN = {"name": "workflows/monthly_revenue"}


def _serve(
    backend: Backend, tmp_path: Path, **settings: object
) -> Generator[tuple[httpx.Client, Services], None, None]:
    svc = build_services(
        backend.settings(data_dir=tmp_path / "data", revision_cache_ttl=0, **settings)
    )
    compile_local(svc.engine, svc.store, "local", create_demo_workspace(tmp_path / "shop"), "shop")
    try:
        with serve_in_thread(create_app(svc)) as url, httpx.Client(base_url=url, timeout=30) as c:
            yield c, svc
    finally:
        svc.close()


@pytest.fixture
def api(backend: Backend, tmp_path: Path) -> Iterator[tuple[httpx.Client, Services]]:
    yield from _serve(backend, tmp_path, inprocess_workers="on")


def _run_count(svc: Services) -> int:
    with svc.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(runs)).scalar_one())


def test_a_batch_of_runs_all_finish(api: tuple[httpx.Client, Services]) -> None:
    client, svc = api
    body = {"runs": [{**RUN, "variables": {}} for _ in range(8)]}
    created = client.post(f"{WS}/runs:batch", json=body)
    assert created.status_code == 202, created.text
    ids = [r["id"] for r in created.json()["runs"]]
    assert len(set(ids)) == 8 and _run_count(svc) == 8

    def all_finished() -> bool:
        states = [client.get(f"/api/v1/runs/{i}").json()["state"] for i in ids]
        assert "failed" not in states, states
        return all(s == "succeeded" for s in states)

    wait_until(all_finished, 60, "the batch's runs to finish")


@pytest.mark.parametrize(
    ("item", "status"),
    [({"name": "workflows/nope"}, 404), ({"name": "workflows/monthly_revenue", "x": 1}, 400)],
)
def test_a_bad_item_creates_nothing(
    api: tuple[httpx.Client, Services], item: dict[str, object], status: int
) -> None:
    client, svc = api
    refused = client.post(f"{WS}/runs:batch", json={"runs": [RUN, RUN, item]})
    assert refused.status_code == status, refused.text
    assert _run_count(svc) == 0
    assert client.post(f"{WS}/runs:batch", json={"runs": []}).status_code == 400


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_the_queue_cap_counts_the_batch(backend: Backend, tmp_path: Path) -> None:
    served = _serve(backend, tmp_path, inprocess_workers="off", queue_max_queued_per_tenant=3)
    client, svc = next(served)
    try:
        refused = client.post(f"{WS}/runs:batch", json={"runs": [RUN] * 4})
        assert refused.status_code == 429, refused.text
        assert _run_count(svc) == 0
        assert client.post(f"{WS}/runs:batch", json={"runs": [RUN] * 3}).status_code == 202
        assert _run_count(svc) == 3
    finally:
        served.close()
