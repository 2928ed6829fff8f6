"""Runs executed by an in-process worker, end to end over a real socket."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest

from quarry.api.app import create_app
from quarry.demo import create_demo_workspace
from quarry.factory.local import compile_local
from quarry.node.services import build_services
from tests.conftest import Backend
from tests.support.processes import serve_in_thread

WS = "/api/v1/workspaces/shop"
EXTRAS = """\
tasks:
  - name: by_region
    type: execute_sql
    database: local
    sql_query: select region, count(*) as orders from 'orders.csv' group by region order by region
    export:
      format: csv
      path: exports/by_region.csv
  - name: broken
    type: execute_sql
    database: local
    sql_query: select no_such_column from 'orders.csv'
"""


@pytest.fixture
def api(backend: Backend, tmp_path: Path) -> Iterator[tuple[httpx.Client, Path]]:
    svc = build_services(backend.settings(data_dir=tmp_path / "data", revision_cache_ttl=0))
    root = create_demo_workspace(tmp_path / "shop")
    (root / "workflows" / "extras.workflow.yml").write_text(EXTRAS)
    compile_local(svc.engine, svc.store, "local", root, "shop")
    with serve_in_thread(create_app(svc)) as url, httpx.Client(base_url=url, timeout=30) as c:
        yield c, root
    svc.close()


def _wait_finished(client: httpx.Client, run_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run: dict[str, Any] = client.get(f"/api/v1/runs/{run_id}").json()
        if run["state"] in {"succeeded", "failed", "cancelled"}:
            return run
        with client.stream("GET", f"/api/v1/runs/{run_id}/events") as stream:
            for _ in stream.iter_text():
                pass
    raise TimeoutError(f"run {run_id} did not finish")


def test_workflow_run_executes_and_serves_outputs(api: tuple[httpx.Client, Path]) -> None:
    client, root = api
    run = client.post(f"{WS}/runs", json={"name": "workflows/monthly_revenue"}).json()
    done = _wait_finished(client, run["id"])
    assert done["state"] == "succeeded", done
    steps = {s["step_key"]: s for s in done["steps"]}
    assert steps["tasks.0"]["state"] == "succeeded" and steps["tasks.0"]["rows"] > 0

    got = client.get(f"/api/v1/runs/{run['id']}/steps/tasks.0/output").json()
    sql = (root / "queries" / "monthly_revenue.sql").read_text()
    con = duckdb.connect()
    con.execute(f"SET file_search_path = '{root / '.db'}'")
    relation = con.sql(sql)
    columns, rows = relation.columns, relation.fetchall()
    assert got["columns"] == columns
    assert [list(r.values()) for r in got["rows"]] == [
        [v.isoformat() if hasattr(v, "isoformat") else v for v in row] for row in rows
    ]
    csv = client.get(f"/api/v1/runs/{run['id']}/steps/tasks.0/output", params={"format": "csv"})
    assert csv.headers["content-type"].startswith("text/csv")
    assert csv.text.splitlines()[0].replace('"', "").split(",") == columns
    pq = client.get(f"/api/v1/runs/{run['id']}/steps/tasks.0/output", params={"format": "parquet"})
    assert pq.content[:4] == b"PAR1"

    with client.stream("GET", f"/api/v1/runs/{run['id']}/events") as stream:
        text = "".join(stream.iter_text())
    for name in ("run.queued", "run.started", "step.started", "step.finished", "run.succeeded"):
        assert f"event: {name}" in text, name


def test_bad_variable_is_an_error_on_the_run_and_the_worker_goes_on(
    api: tuple[httpx.Client, Path],
) -> None:
    client, _ = api
    bad = client.post(
        f"{WS}/runs",
        json={"name": "workflows/monthly_revenue", "variables": {"no_such_variable": 1}},
    ).json()
    failed = _wait_finished(client, bad["id"])
    assert failed["state"] == "failed"
    assert "no_such_variable" in failed["error"]
    good = client.post(f"{WS}/runs", json={"name": "workflows/monthly_revenue"}).json()
    assert _wait_finished(client, good["id"])["state"] == "succeeded"


def test_failing_sql_fails_the_run_after_exports_were_stored(
    api: tuple[httpx.Client, Path],
) -> None:
    client, _ = api
    run = client.post(f"{WS}/runs", json={"name": "workflows/extras"}).json()
    done = _wait_finished(client, run["id"])
    assert done["state"] == "failed"
    assert "no_such_column" in done["error"]
    steps = {s["step_key"]: s["state"] for s in done["steps"]}
    assert steps == {"tasks.0": "succeeded", "tasks.1": "failed"}
    artifacts = client.get(f"/api/v1/runs/{run['id']}/artifacts").json()["artifacts"]
    assert [(a["kind"], a["name"], a["format"]) for a in artifacts] == [
        ("export", "exports/by_region.csv", "csv")
    ]
    download = client.get(artifacts[0]["url"])
    assert download.status_code == 200
    assert download.text.splitlines()[0].replace('"', "") == "region,orders"
    assert len(download.text.splitlines()) == 5
    assert client.get(f"/api/v1/runs/{run['id']}/artifacts/nope").status_code == 404


def test_app_run_stores_the_page_document_under_its_cache_key(
    api: tuple[httpx.Client, Path],
) -> None:
    client, _ = api
    data_url = f"{WS}/apps/apps/sales_overview/data"
    missing = client.get(data_url, params={"region": "North"})
    assert missing.status_code == 404 and missing.json()["details"]["run_needed"]
    run = client.post(
        f"{WS}/runs",
        json={"kind": "app", "name": "apps/sales_overview", "variables": {"region": "North"}},
    ).json()
    assert _wait_finished(client, run["id"])["state"] == "succeeded"
    page = client.get(data_url, params={"region": "North"})
    assert page.status_code == 200, page.text
    document = page.json()
    kinds = [block["type"] for block in document["display"]]
    assert {"markdown", "table", "line_chart", "bar_chart", "pie_chart"} <= set(kinds)
    charts = [b for b in document["display"] if b["type"].endswith("_chart")]
    assert all(c["spec"]["data"]["values"] for c in charts)
    assert client.get(data_url, params={"region": "South"}).status_code == 404
    artifacts = client.get(f"/api/v1/runs/{run['id']}/artifacts").json()["artifacts"]
    assert [a["kind"] for a in artifacts] == ["app_data"]
    # A value outside the control's options is refused before anything is queued.
    before = client.get(f"{WS}/runs").json()
    assert before["runs"], before
    bad = client.post(
        f"{WS}/runs",
        json={"kind": "app", "name": "apps/sales_overview", "variables": {"region": "Mars"}},
    )
    assert bad.status_code == 400 and "region" in bad.text
    assert client.get(f"{WS}/runs").json() == before
