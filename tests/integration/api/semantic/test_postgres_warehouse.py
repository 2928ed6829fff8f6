"""Views whose datasource is a PostgreSQL database: the compiler writes the Postgres
dialect and psycopg binds the values, in a task and over the API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from quarry.api.app import create_app
from quarry.node.services import build_services
from tests.conftest import Backend
from tests.integration.api.semantic.conftest import Shop, compile_shop
from tests.integration.api.semantic.shop import (
    FANOUT,
    REVENUE_BY_REGION_FOR_STATUS,
    REVENUE_BY_REGION_MONTH,
    hand_written,
    load_postgres,
    make_shop,
    same,
)
from tests.support.processes import serve_in_thread
from tests.support.services import create_database, drop_database, pg_url


@pytest.fixture
def pg_shop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Shop]:
    name = create_database()
    url = make_url(pg_url(name))
    for key, value in {
        "T_PGHOST": url.host or "127.0.0.1",
        "T_PGPORT": str(url.port or 5432),
        "T_PGUSER": url.username or "postgres",
        "T_PGDB": url.database or "",
    }.items():
        monkeypatch.setenv(key, value)
    load_postgres(
        f"host={url.host or '127.0.0.1'} port={url.port or 5432} "
        f"user={url.username or 'postgres'} dbname={url.database}"
    )
    state = tmp_path / "state"
    backend = Backend("sqlite", f"sqlite:///{tmp_path / 'state.db'}", state.as_uri())
    svc = build_services(backend.settings(data_dir=tmp_path / "data", inprocess_workers="off"))
    root = make_shop(tmp_path / "shop", datasource="pg")
    ws, rev = compile_shop(svc, root)
    app = create_app(svc)
    try:
        with serve_in_thread(app) as served:
            yield Shop(svc, root, ws, rev, served, app)
    finally:
        svc.close()
        drop_database(name)


def test_postgres_views_compile_to_postgres_and_match(pg_shop: Shop) -> None:
    shop = pg_shop
    body = {
        "topic": "sales",
        "measures": ["orders.revenue"],
        "dimensions": ["customers.region"],
        "filters": [{"field": "orders.status", "op": "eq", "value": "returned"}],
        "orders": [{"field": "customers.region", "direction": "asc"}],
    }
    with shop.client() as client:
        sql = client.post("/api/v1/workspaces/shop/semantic/query?sql_only=1", json=body).json()
        assert sql["datasource"] == "pg" and sql["dialect"] == "postgres"
        assert sql["params"] == ["returned"]
        got = client.post("/api/v1/workspaces/shop/semantic/query", json=body)
        assert got.status_code == 200, got.text
        rows = [tuple(r[c] for c in got.json()["columns"]) for r in got.json()["rows"]]
    assert same(rows, hand_written(shop.root, REVENUE_BY_REGION_FOR_STATUS, "returned"))

    run_id = shop.run("workflow", "workflows/semantic_report", {"region": "East"})
    with shop.client() as client:
        by_month = client.get(f"/api/v1/runs/{run_id}/steps/tasks.0/output").json()
        fanout = client.get(f"/api/v1/runs/{run_id}/steps/tasks.1/output").json()

    def table(body: dict[str, object]) -> list[tuple[object, ...]]:
        columns = body["columns"]
        assert isinstance(columns, list)
        return [tuple(r[c] for c in columns) for r in body["rows"]]  # type: ignore[attr-defined]

    assert same(table(by_month), hand_written(shop.root, REVENUE_BY_REGION_MONTH, "East"))
    assert same(table(fanout), hand_written(shop.root, FANOUT))
