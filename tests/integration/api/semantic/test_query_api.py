"""The semantic query API over real HTTP: answers equal hand-written SQL, the
formats, SQL only, bad queries, the result cache (counted executions), pinning."""

from __future__ import annotations

import io
import re
import threading
from pathlib import Path
from typing import Any

import httpx
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest

from quarry.api.app import create_app
from quarry.node.services import build_services
from quarry.runtime.semantic.service import SemanticService
from tests.conftest import Backend
from tests.integration.api.semantic.conftest import Shop, compile_shop
from tests.integration.api.semantic.shop import (
    FANOUT,
    REVENUE_BY_REGION_FOR_STATUS,
    REVENUE_BY_STATUS_FOR_TENANT,
    hand_written,
    same,
)
from tests.support.processes import serve_in_thread

QUERY = "/api/v1/workspaces/shop/semantic/query"
CATALOG = "/api/v1/workspaces/shop/semantic/catalog"
BY_REGION = {
    "topic": "sales",
    "measures": ["orders.revenue"],
    "dimensions": ["customers.region"],
    "filters": [{"field": "orders.status", "op": "eq", "value": "returned"}],
    "orders": [{"field": "customers.region", "direction": "asc"}],
}


def executions(shop: Shop) -> int:
    sem = getattr(shop.app.state, "semantic", None)
    return 0 if sem is None else int(sem.executions)


def rows(body: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [tuple(r[c] for c in body["columns"]) for r in body["rows"]]


def counted(client: httpx.Client, cache: str) -> float:
    text = client.get("/metrics").text
    found = re.search(rf'^quarry_semantic_queries_total{{cache="{cache}"}} (\S+)$', text, re.M)
    assert found is not None, text[:500]
    return float(found.group(1))


def test_query_answers_as_hand_written_sql_and_is_cached(shop: Shop) -> None:
    want = hand_written(shop.root, REVENUE_BY_REGION_FOR_STATUS, "returned")
    with shop.client() as client:
        hits, misses = counted(client, "hit"), counted(client, "miss")
        first = client.post(QUERY, json=BY_REGION)
        assert first.status_code == 200, first.text
        assert first.json()["columns"] == ["customers__region", "orders__revenue"]
        assert same(rows(first.json()), want)
        assert first.headers["x-quarry-cache"] == "miss"
        assert first.headers["x-quarry-revision"] == shop.revision_id
        etag = first.headers["etag"]
        assert etag.startswith('"') and not etag.startswith("W/")
        assert first.headers["cache-control"].startswith("private, max-age=")
        # the same query again (keys in another order): served from the cache
        again = client.post(QUERY, json=dict(reversed(list(BY_REGION.items()))))
        assert again.status_code == 200 and again.headers["x-quarry-cache"] == "hit"
        assert again.content == first.content and again.headers["etag"] == etag
        unchanged = client.post(QUERY, json=BY_REGION, headers={"If-None-Match": etag})
        assert unchanged.status_code == 304 and unchanged.content == b""
        # fan-out across two views' measures: each summed at its own grain
        fanout = client.post(
            QUERY,
            json={
                "topic": "sales",
                "measures": ["orders.revenue", "line_items.quantity"],
                "dimensions": ["customers.region"],
                "orders": [{"field": "customers.region", "direction": "asc"}],
            },
        )
        assert same(rows(fanout.json()), hand_written(shop.root, FANOUT))
        assert counted(client, "miss") - misses == 2
        assert counted(client, "hit") - hits == 2  # the 304 is a hit too
    assert executions(shop) == 2  # BY_REGION once (of three requests), the fan-out once


@pytest.mark.backend_agnostic
def test_formats_by_accept_and_parameter(shop: Shop) -> None:
    with shop.client() as client:
        as_csv = client.post(QUERY, json=BY_REGION, headers={"Accept": "text/csv"})
        assert as_csv.headers["content-type"].startswith("text/csv")
        lines = as_csv.text.strip().splitlines()
        assert lines[0] == '"customers__region","orders__revenue"' and len(lines) == 5
        arrow = client.post(QUERY, json=BY_REGION, params={"format": "arrow"})
        table = ipc.open_stream(arrow.content).read_all()
        assert table.column_names == ["customers__region", "orders__revenue"]
        assert table.num_rows == 4
        parquet = client.post(
            QUERY, json=BY_REGION, headers={"Accept": "application/vnd.apache.parquet"}
        )
        assert pq.read_table(io.BytesIO(parquet.content)).equals(table)
        etags = {as_csv.headers["etag"], arrow.headers["etag"], parquet.headers["etag"]}
        assert len(etags) == 3  # strong ETags differ per representation
        bad = client.post(QUERY, json=BY_REGION, params={"format": "xlsx"})
        assert bad.status_code == 400 and "format" in bad.text
    assert executions(shop) == 1


@pytest.mark.backend_agnostic
def test_sql_only_binds_values_and_runs_nothing(shop: Shop) -> None:
    sneaky = "returned' OR 1=1 --"
    body = {**BY_REGION, "filters": [{"field": "orders.status", "op": "eq", "value": sneaky}]}
    with shop.client() as client:
        got = client.post(QUERY, json=body, params={"sql_only": "1"})
        assert got.status_code == 200, got.text
        doc = got.json()
        assert doc["dialect"] == "duckdb" and doc["datasource"] == "warehouse"
        assert sneaky in doc["params"] and "OR 1=1" not in doc["sql"] and "$1" in doc["sql"]
        assert [c["name"] for c in doc["columns"]] == ["customers__region", "orders__revenue"]
        assert executions(shop) == 0
        # run for real, the injection is a value that matches no status
        ran = client.post(QUERY, json=body)
        assert ran.status_code == 200 and ran.json()["rows"] == []


@pytest.mark.backend_agnostic
@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"topic": "sales", "measures": ["orders.nope"]}, "orders.nope"),
        ({"topic": "sales", "measures": ["nowhere.revenue"]}, "nowhere"),
        ({"topic": "tenant_sales", "measures": ["line_items.quantity"]}, "line_items.quantity"),
        ({"topic": "no_such_topic", "measures": ["orders.revenue"]}, "no_such_topic"),
        (
            {
                "topic": "sales",
                "measures": ["orders.revenue"],
                "time_dimensions": [{"dimension": "orders.order_date", "granularity": "fortnight"}],
            },
            "granularity",
        ),
        (
            {
                "topic": "sales",
                "measures": ["orders.revenue"],
                "filters": [{"field": "orders.order_id", "op": "gt", "value": "ten"}],
            },
            "orders.order_id",
        ),
        ({"topic": "sales"}, "measure"),
        ({"topic": "sales", "measures": ["orders.revenue"], "limit": -1}, "limit"),
    ],
)
def test_bad_queries_are_400_naming_the_member(
    shop: Shop, body: dict[str, Any], named: str
) -> None:
    with shop.client() as client:
        got = client.post(QUERY, json=body)
        assert got.status_code == 400, got.text
        assert named in got.json()["message"], got.json()
        assert executions(shop) == 0
        not_json = client.post(QUERY, content=b"{not json", params={"sql_only": "1"})
        assert not_json.status_code == 400 and "JSON" in not_json.json()["message"]


@pytest.mark.backend_agnostic
def test_body_size_is_limited(shop: Shop) -> None:
    huge = {**BY_REGION, "dimensions": ["customers.region"] * 20_000}
    with shop.client() as client:
        got = client.post(QUERY, json=huge)
    assert got.status_code == 413 and "limited" in got.json()["message"]
    assert executions(shop) == 0


def test_catalog_and_pinned_revisions(shop: Shop) -> None:
    with shop.client() as client:
        got = client.get(CATALOG)
        assert got.status_code == 200, got.text
        doc = got.json()
        assert {t["name"] for t in doc["topics"]} == {"sales", "tenant_sales"}
        orders = next(v for v in doc["views"] if v["name"] == "orders")
        revenue = next(m for m in orders["members"] if m["name"] == "revenue")
        assert revenue["kind"] == "measure" and revenue["description"] == "Order amounts in USD."
        region = next(
            m
            for v in doc["views"]
            for m in v["members"]
            if m["qualified_name"] == "customers.region"
        )
        assert region["synonyms"] == ["area"]
        assert (
            client.get(CATALOG, headers={"If-None-Match": got.headers["etag"]}).status_code == 304
        )

        # a new revision renames a measure; the old one stays queryable when pinned
        view = shop.root / "semantics" / "orders.view.yml"
        view.write_text(view.read_text().replace("name: revenue", "name: sales_amount"))
        _ws, new_rev = compile_shop(shop.svc, shop.root)
        assert new_rev != shop.revision_id
        old = {"revision": shop.revision_id}
        assert client.post(QUERY, json=BY_REGION, params=old).status_code == 200
        current = client.post(QUERY, json=BY_REGION)
        assert current.status_code == 400 and "orders.revenue" in current.json()["message"]
        renamed = {**BY_REGION, "measures": ["orders.sales_amount"]}
        assert client.post(QUERY, json=renamed).status_code == 200
        views = {v["name"]: v for v in client.get(CATALOG).json()["views"]}
        members = [m["name"] for m in views["orders"]["members"]]
        assert "sales_amount" in members and "revenue" not in members
        pinned = client.get(CATALOG, params=old).json()
        assert pinned["revision_id"] == shop.revision_id
        unknown = client.get(CATALOG, params={"revision": "0" * 12})
        assert unknown.status_code == 404


@pytest.mark.backend_agnostic
def test_row_filter_cannot_be_escaped(shop: Shop) -> None:
    """tenant_sales shows the caller's tenant's rows (here: local) whatever it asks."""
    want = hand_written(shop.root, REVENUE_BY_STATUS_FOR_TENANT, "local")
    base = {
        "topic": "tenant_sales",
        "measures": ["tenant_orders.revenue"],
        "dimensions": ["tenant_orders.status"],
        "orders": [{"field": "tenant_orders.status", "direction": "asc"}],
    }
    escape = {
        "or": [
            {"field": "tenant_orders.tenant_code", "op": "eq", "value": "acme"},
            {"field": "tenant_orders.tenant_code", "op": "neq", "value": "nobody"},
        ]
    }
    with shop.client() as client:
        mine = client.post(QUERY, json=base)
        assert mine.status_code == 200, mine.text
        assert same(rows(mine.json()), want)
        widened = client.post(QUERY, json={**base, "filters": [escape]})
        assert same(rows(widened.json()), want)
        other = client.post(
            QUERY,
            json={
                **base,
                "filters": [{"field": "tenant_orders.tenant_code", "op": "eq", "value": "acme"}],
            },
        )
        assert other.json()["rows"] == []
        # naming no topic is no way around the rule either
        no_topic = {k: v for k, v in base.items() if k != "topic"}
        untopical = client.post(QUERY, json=no_topic)
        assert untopical.status_code == 200, untopical.text
        assert same(rows(untopical.json()), want)


def test_row_filter_principals_never_share_a_cached_answer(shop: Shop) -> None:
    sem = SemanticService(
        shop.svc.catalog, shop.svc.store, cache_dir=shop.root.parent / "c", ttl=60
    )
    from quarry.semantic import SemanticQuery

    query = SemanticQuery.from_request(
        {
            "topic": "tenant_sales",
            "measures": ["tenant_orders.revenue"],
            "dimensions": ["tenant_orders.status"],
        }
    )
    try:
        local, hit1, _ = sem.answer(shop.workspace, shop.revision_id, query, {"tenant": "local"})
        acme, hit2, _ = sem.answer(shop.workspace, shop.revision_id, query, {"tenant": "acme"})
        again, hit3, _ = sem.answer(shop.workspace, shop.revision_id, query, {"tenant": "acme"})
    finally:
        sem.close()
    assert (hit1, hit2, hit3) == (False, False, True) and sem.executions == 2
    assert not local.table.equals(acme.table) and again.table.equals(acme.table)


def test_concurrent_identical_requests_run_once(shop: Shop) -> None:
    statuses: list[int] = []

    def ask() -> None:
        with shop.client() as client:
            statuses.append(client.post(QUERY, json=BY_REGION).status_code)

    threads = [threading.Thread(target=ask) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200] * 16
    assert executions(shop) == 1


def test_two_app_instances_share_answers_through_the_store(
    shop: Shop, backend: Backend, tmp_path: Path
) -> None:
    """A second process's worth of services (own catalog, own local caches) on the
    same database and object store answers from the first one's stored result."""
    other_svc = build_services(
        backend.settings(data_dir=tmp_path / "data2", inprocess_workers="off")
    )
    other_app = create_app(other_svc)
    try:
        with shop.client() as client:
            assert client.post(QUERY, json=BY_REGION).headers["x-quarry-cache"] == "miss"
        assert shop.app.state.semantic.results.flush()  # stored behind the answer
        with serve_in_thread(other_app) as url, shop.client() as client:
            got = client.post(url + QUERY, json=BY_REGION)
            assert got.status_code == 200 and got.headers["x-quarry-cache"] == "hit"
            first_etag = client.post(QUERY, json=BY_REGION).headers["etag"]
            assert got.headers["etag"] == first_etag
        assert executions(shop) == 1
        assert other_app.state.semantic.executions == 0
    finally:
        other_svc.close()


def test_answers_are_cut_at_the_row_limit_and_say_so(
    shop: Shop, backend: Backend, tmp_path: Path
) -> None:
    svc = build_services(
        backend.settings(data_dir=tmp_path / "d3", inprocess_workers="off", semantic_max_rows=3)
    )
    try:
        with serve_in_thread(create_app(svc)) as url, httpx.Client(base_url=url) as client:
            cut = client.post(QUERY, json=BY_REGION)
            assert cut.status_code == 200 and cut.headers["x-quarry-truncated"] == "true"
            assert cut.json()["row_count"] == 3 and cut.json()["truncated"] is True
            as_csv = client.post(QUERY, json=BY_REGION, params={"format": "csv"})
            assert len(as_csv.text.strip().splitlines()) == 4  # header + 3
            within = client.post(QUERY, json={**BY_REGION, "limit": 3})
            assert "x-quarry-truncated" not in within.headers
            assert within.json()["truncated"] is False and within.json()["row_count"] == 3
    finally:
        svc.close()
