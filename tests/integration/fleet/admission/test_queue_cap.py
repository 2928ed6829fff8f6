"""The per-tenant cap on queued tasks, checked at enqueue time: over it, run creation
is a 429 with Retry-After that writes nothing; other tenants are not affected, and a
started task frees its slot."""

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
from quarry.runtime.queue.caps import QueueFull
from quarry.store.queue_tables import tasks
from quarry.store.run_tables import runs
from tests.conftest import Backend
from tests.support.processes import serve_in_thread

CAP = 3
RUNS = "/api/v1/workspaces/shop/runs"
BODY = {"name": "workflows/monthly_revenue"}


@pytest.fixture
def api(backend: Backend, tmp_path: Path) -> Iterator[tuple[httpx.Client, Services]]:
    svc = build_services(
        backend.settings(
            data_dir=tmp_path / "data",
            inprocess_workers="off",
            global_driver="off",
            queue_max_queued_per_tenant=CAP,
        )
    )
    root = create_demo_workspace(tmp_path / "shop")
    compile_local(svc.engine, svc.store, "local", root, "shop", data_dir=tmp_path / "data")
    with serve_in_thread(create_app(svc)) as url, httpx.Client(base_url=url, timeout=30) as c:
        yield c, svc
    svc.close()


def _count(svc: Services, table: object) -> int:
    with svc.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


def test_over_the_cap_is_429_and_writes_nothing(api: tuple[httpx.Client, Services]) -> None:
    client, svc = api
    for _ in range(CAP):
        assert client.post(RUNS, json=BODY).status_code == 202
    refused = client.post(RUNS, json=BODY)
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"] == "queue_full"
    assert refused.headers["retry-after"].isdigit()
    assert _count(svc, runs) == CAP and _count(svc, tasks) == CAP

    # a task that starts frees its slot
    claimed = svc.queue.claim("test-worker")
    assert claimed is not None and claimed.tenant_id == "local"
    # another tenant is not affected
    assert svc.queue.enqueue("other", "noop").created
    assert client.post(RUNS, json=BODY).status_code == 202
    with pytest.raises(QueueFull):
        svc.queue.enqueue("local", "noop")
