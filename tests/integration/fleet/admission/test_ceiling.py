"""200 concurrent run requests against a ceiling of 20, over a real socket: the 180
over the ceiling are refused with 503 and a numeric Retry-After *while the 20 admitted
ones are still in flight* (they block on a row lock the test holds), and every
admitted run is then created and executed to the end."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from quarry.api.app import create_app
from quarry.core.settings import Settings
from quarry.demo import create_demo_workspace
from quarry.factory.local import compile_local
from quarry.node.services import Services, build_services
from quarry.store import runs as runq
from tests.integration.fleet.admission.conftest import async_client, post_runs, tenant_row_locked
from tests.support.processes import serve_in_thread, wait_until
from tests.support.tenancy import s3_url

CEILING = 20
REQUESTS = 200


@pytest.fixture
def served(
    request: pytest.FixtureRequest,
    pg_database: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[str, Services, object]]:
    svc = build_services(
        Settings(
            database_url=pg_database,
            blob_url=s3_url(request, monkeypatch),
            data_dir=tmp_path / "data",
            admission_expensive_max=CEILING,
            admission_tenant_share=1.0,
            admission_retry_after=2,
            global_driver="off",
        )
    )
    root = create_demo_workspace(tmp_path / "shop")
    compile_local(svc.engine, svc.store, "local", root, "shop", data_dir=tmp_path / "data")
    app = create_app(svc)
    with serve_in_thread(app) as url:
        yield url, svc, app
    svc.close()


def test_over_the_ceiling_is_refused_at_once_while_admitted_runs_are_in_flight(
    served: tuple[str, Services, object], pg_database: str
) -> None:
    url, svc, app = served
    admission = app.state.admission  # type: ignore[attr-defined]

    async def scenario() -> None:
        async with async_client(url, REQUESTS) as client:
            with tenant_row_locked(pg_database, "local") as lock:
                tasks = post_runs(client, "/api/v1/workspaces/shop/runs", REQUESTS)
                deadline = time.monotonic() + 60
                while sum(t.done() for t in tasks) < REQUESTS - CEILING:
                    assert time.monotonic() < deadline, "refusals did not arrive"
                    await asyncio.sleep(0.02)
                finished = [t.result() for t in tasks if t.done()]
                # the admitted ones are still blocked on the lock: nothing else finished
                assert len(finished) == REQUESTS - CEILING
                assert admission.in_flight("expensive") == CEILING
                for seconds, got in finished:
                    assert got.status_code == 503, got.text
                    assert got.headers["retry-after"] == "2"
                    assert got.json()["details"]["reason"] == "expensive_global"
                    assert seconds < 10
                # (asked on the lock's own connection: the admitted requests hold the pool)
                assert lock.execute("SELECT count(*) FROM runs").fetchone() == (0,)
                await asyncio.to_thread(lock.rollback)
                results = [got for _, got in await asyncio.gather(*tasks)]
        admitted = [got for got in results if got.status_code == 202]
        assert len(admitted) == CEILING, [g.status_code for g in results]
        assert sum(got.status_code == 503 for got in results) == REQUESTS - CEILING
        ids = {got.json()["id"] for got in admitted}

        def all_succeeded() -> bool:
            with svc.engine.connect() as conn:
                states = {runq.get_run(conn, "local", i).state for i in ids}
            assert "failed" not in states
            return states == {"succeeded"}

        await asyncio.to_thread(wait_until, all_succeeded, 240, "every admitted run to finish")

    asyncio.run(scenario())
    assert admission.in_flight("expensive") == 0
