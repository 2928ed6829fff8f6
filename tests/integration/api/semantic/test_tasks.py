"""``semantic_query`` tasks in a procedure and in an app, run by the real executor,
give the answers of hand-written SQL on the same DuckDB database."""

from __future__ import annotations

from tests.integration.api.semantic.conftest import Shop
from tests.integration.api.semantic.shop import (
    FANOUT,
    LARGE_ORDERS,
    REVENUE_BY_REGION_FOR_STATUS,
    REVENUE_BY_REGION_MONTH,
    hand_written,
    same,
)


def _rows(body: dict[str, object]) -> list[tuple[object, ...]]:
    columns = body["columns"]
    assert isinstance(columns, list)
    rows = body["rows"]
    assert isinstance(rows, list)
    return [tuple(r[c] for c in columns) for r in rows]


def client_get(shop: Shop, path: str) -> dict[str, object]:
    with shop.client() as client:
        got = client.get(path)
    assert got.status_code == 200, got.text
    body = got.json()
    assert isinstance(body, dict)
    return body


def test_procedure_semantic_query_matches_hand_written_sql(shop: Shop) -> None:
    run_id = shop.run("workflow", "workflows/semantic_report", {"region": "West", "threshold": 400})
    with shop.client() as client:
        run = client.get(f"/api/v1/runs/{run_id}").json()
        by_month = client.get(f"/api/v1/runs/{run_id}/steps/tasks.0/output").json()
        fanout = client.get(f"/api/v1/runs/{run_id}/steps/tasks.1/output").json()
        artifacts = client.get(f"/api/v1/runs/{run_id}/artifacts").json()
    # Oxy's column names: view__member, view__member__granularity
    assert by_month["columns"] == [
        "customers__region",
        "orders__order_date__month",
        "orders__revenue",
        "orders__order_count",
    ], by_month["columns"]
    want = hand_written(shop.root, REVENUE_BY_REGION_MONTH, "West")
    assert len(want) > 12 and same(_rows(by_month), want)
    # revenue is summed once per order even though line items fan the join out
    assert same(_rows(fanout), hand_written(shop.root, FANOUT))
    # variables: a templated threshold bound where the view's expression names it;
    # a measure without a view is qualified with the topic (as Oxy does); offset
    large = client_get(shop, f"/api/v1/runs/{run_id}/steps/tasks.2/output")
    assert same(_rows(large), hand_written(shop.root, LARGE_ORDERS, 400))
    # the templated value was bound, not spliced, and the export landed at its path
    steps = {s["step_key"]: s for s in run["steps"]}
    assert "'West'" not in str(steps["tasks.0"])
    paths = [a["name"] for a in artifacts["artifacts"]]
    assert "exports/West_by_month.csv" in paths, artifacts


def test_app_semantic_query_matches_hand_written_sql(shop: Shop) -> None:
    shop.run("app", "apps/semantic_dash", {"status": "returned"})
    with shop.client() as client:
        got = client.get("/api/v1/workspaces/shop/apps/apps/semantic_dash/data?status=returned")
    assert got.status_code == 200, got.text
    table = next(b for b in got.json()["display"] if b["type"] == "table")
    assert [c["name"] for c in table["columns"]] == ["customers__region", "orders__revenue"]
    want = hand_written(shop.root, REVENUE_BY_REGION_FOR_STATUS, "returned")
    assert len(want) == 4 and same([tuple(r) for r in table["rows"]], want)
