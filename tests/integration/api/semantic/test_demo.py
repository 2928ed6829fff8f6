"""The demo workspace's own view and topic (``orders.csv`` in a DuckDB dataset
folder): asked over the API and by a ``semantic_query`` task, the answers equal
hand-written SQL on the same CSV."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from quarry.api.app import create_app
from quarry.core.settings import Settings
from quarry.demo import create_demo_workspace
from quarry.node.services import build_services
from tests.integration.api.semantic.conftest import Shop, compile_shop
from tests.integration.api.semantic.shop import same
from tests.support.processes import serve_in_thread

WORKFLOW = """\
tasks:
  - name: by_category
    type: semantic_query
    topic: sales
    measures: [revenue, units_sold]
    dimensions: [category]
    filters:
      - field: region
        op: eq
        value: "{{ region }}"
    orders:
      - field: category
        direction: asc
variables:
  region:
    type: string
    default: North
"""

BY_REGION = """
SELECT region, sum(quantity * unit_price), count(*), count(DISTINCT customer_id)
FROM read_csv_auto(?) GROUP BY 1 ORDER BY 1
"""
BY_CATEGORY = """
SELECT category, sum(quantity * unit_price), sum(quantity)
FROM read_csv_auto(?) WHERE region = ? GROUP BY 1 ORDER BY 1
"""


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Shop]:
    root = create_demo_workspace(tmp_path / "shop")
    (root / "workflows" / "semantic_demo.workflow.yml").write_text(WORKFLOW)
    settings = Settings(data_dir=tmp_path / "data", inprocess_workers="off")  # type: ignore[arg-type]
    svc = build_services(settings.with_local_defaults(root))
    ws, rev = compile_shop(svc, root)
    app = create_app(svc)
    try:
        with serve_in_thread(app) as url:
            yield Shop(svc, root, ws, rev, url, app)
    finally:
        svc.close()


def _hand(root: Path, sql: str, *params: object) -> list[tuple[object, ...]]:
    csv = str(root / ".db" / "orders.csv")
    with duckdb.connect() as con:
        return [tuple(r) for r in con.execute(sql, [csv, *params]).fetchall()]


def test_demo_topic_over_the_api_and_in_a_task(demo: Shop) -> None:
    body = {
        "topic": "sales",
        "measures": ["orders.revenue", "orders.order_count", "orders.unique_customers"],
        "dimensions": ["orders.region"],
        "orders": [{"field": "orders.region", "direction": "asc"}],
    }
    with demo.client() as client:
        got = client.post("/api/v1/workspaces/shop/semantic/query", json=body)
    assert got.status_code == 200, got.text
    rows = [tuple(r[c] for c in got.json()["columns"]) for r in got.json()["rows"]]
    want = _hand(demo.root, BY_REGION)
    assert len(want) == 4 and same(rows, want)

    run_id = demo.run("workflow", "workflows/semantic_demo", {"region": "South"})
    with demo.client() as client:
        out = client.get(f"/api/v1/runs/{run_id}/steps/tasks.0/output").json()
    assert out["columns"] == ["orders__category", "orders__revenue", "orders__units_sold"]
    got_rows = [tuple(r[c] for c in out["columns"]) for r in out["rows"]]
    assert same(got_rows, _hand(demo.root, BY_CATEGORY, "South"))
