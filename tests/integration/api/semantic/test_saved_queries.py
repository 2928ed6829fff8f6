"""``*.query.yml`` and ``*.motif.yml`` are workspace files: compiled into the revision,
loaded into its semantic model and runnable through the query API
(``{"saved_query": name, "step": name}``) and ``quarry query --saved``; the answers
are those of hand-written SQL on the same DuckDB file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.integration.api.semantic.conftest import Shop, compile_shop
from tests.integration.api.semantic.shop import (
    REVENUE_BY_REGION_FOR_STATUS,
    hand_written,
    make_shop,
    same,
)

QUERY = "/api/v1/workspaces/shop/semantic/query"

RETURNS = """\
name: returns_by_region
description: Revenue of returned orders by region.
steps:
  - name: by_region
    query:
      topic: sales
      measures: [orders.revenue]
      dimensions: [customers.region]
      filters: [{field: orders.status, op: eq, value: returned}]
      orders: [{field: customers.region, direction: asc}]
"""
TWO_STEPS = """\
name: two_steps
steps:
  - name: plain
    query: {topic: sales, measures: [orders.revenue], dimensions: [customers.region]}
  - name: doubled
    query:
      topic: sales
      measures: [orders.revenue]
      dimensions: [customers.region]
      filters: [{field: orders.status, op: eq, value: returned}]
      orders: [{field: customers.region, direction: asc}]
      motif: doubled
"""
DOUBLED = """\
name: doubled
outputs:
  - name: doubled
    expr: "{{ measure }} * 2"
"""
BY_STATUS = """\
name: by_status
params:
  status:
    type: string
    values: [complete, returned, pending, cancelled]
    default: returned
steps:
  - name: by_region
    query:
      topic: sales
      measures: [orders.revenue]
      dimensions: [customers.region]
      filters: [{field: orders.status, op: eq, value: "{{ status }}"}]
      orders: [{field: customers.region, direction: asc}]
"""
SAVED = {
    "semantics/by_status.query.yml": BY_STATUS,
    "semantics/returns.query.yml": RETURNS,
    "semantics/two.query.yml": TWO_STEPS,
    "semantics/doubled.motif.yml": DOUBLED,
}


def _write(root: Path) -> None:
    for path, text in SAVED.items():
        (root / path).write_text(text)


def _rows(body: dict[str, Any], columns: list[str]) -> list[tuple[Any, ...]]:
    return [tuple(r[c] for c in columns) for r in body["rows"]]


def test_saved_queries_and_motifs_run_through_the_api(shop: Shop) -> None:
    _write(shop.root)
    compile_shop(shop.svc, shop.root)  # the new revision is the current one
    want = hand_written(shop.root, REVENUE_BY_REGION_FOR_STATUS, "returned")
    with shop.client() as client:
        one = client.post(QUERY, json={"saved_query": "returns_by_region"})
        assert one.status_code == 200, one.text
        assert same(_rows(one.json(), ["customers__region", "orders__revenue"]), want)

        doubled = client.post(QUERY, json={"saved_query": "two_steps", "step": "doubled"})
        assert doubled.status_code == 200, doubled.text
        got = _rows(doubled.json(), ["customers__region", "doubled"])
        assert same(got, [(region, 2 * revenue) for region, revenue in want])

        several = client.post(QUERY, json={"saved_query": "two_steps"})
        assert several.status_code == 400 and "plain, doubled" in several.text
        unknown = client.post(QUERY, json={"saved_query": "nope"})
        assert unknown.status_code == 400 and "returns_by_region" in unknown.text
        mixed = client.post(QUERY, json={"saved_query": "returns_by_region", "limit": 1})
        assert mixed.status_code == 400 and "limit" in mixed.text

        sql = client.post(QUERY, params={"sql_only": 1}, json={"saved_query": "returns_by_region"})
        assert sql.status_code == 200 and sql.json()["params"] == ["returned"]

        # params: the default, then a given value, bound (never in the SQL text)
        default = client.post(QUERY, json={"saved_query": "by_status"})
        assert default.status_code == 200, default.text
        assert same(_rows(default.json(), ["customers__region", "orders__revenue"]), want)
        given = client.post(
            QUERY, json={"saved_query": "by_status", "params": {"status": "complete"}}
        )
        assert given.status_code == 200, given.text
        complete = hand_written(shop.root, REVENUE_BY_REGION_FOR_STATUS, "complete")
        assert same(_rows(given.json(), ["customers__region", "orders__revenue"]), complete)
        bound = client.post(
            QUERY,
            params={"sql_only": 1},
            json={"saved_query": "by_status", "params": {"status": "complete"}},
        ).json()
        assert bound["params"] == ["complete"] and "complete" not in bound["sql"]
        outside = client.post(
            QUERY, json={"saved_query": "by_status", "params": {"status": "x' OR 1=1"}}
        )
        assert outside.status_code == 400 and "parameter 'status'" in outside.text
        unknown_param = client.post(
            QUERY, json={"saved_query": "by_status", "params": {"colour": 1}}
        )
        assert unknown_param.status_code == 400 and "parameter 'colour'" in unknown_param.text
        not_a_map = client.post(QUERY, json={"saved_query": "by_status", "params": ["complete"]})
        assert not_a_map.status_code == 400 and "params" in not_a_map.text

        catalog = client.get("/api/v1/workspaces/shop/semantic/catalog").text
        assert "returns_by_region" in catalog and "doubled" in catalog


def test_quarry_query_saved_from_the_command_line(tmp_path: Path) -> None:
    root = make_shop(tmp_path / "shop")
    _write(root)
    env = {**os.environ, "QUARRY_AUTH": "open", "COLUMNS": "200", "QUARRY_LOG_LEVEL": "WARNING"}

    def quarry(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "quarry", *args],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    compiled = quarry("compile", ".", "--name", "shop")
    assert compiled.returncode == 0, compiled.stderr
    ran = quarry("query", "-w", "shop", "--saved", "returns_by_region", "--format", "json")
    assert ran.returncode == 0, ran.stderr
    got = [tuple(r.values()) for r in json.loads(ran.stdout)]
    assert same(got, hand_written(root, REVENUE_BY_REGION_FOR_STATUS, "returned"))
    step = quarry("query", "-w", "shop", "--saved", "two_steps", "--step", "plain", "--sql")
    assert step.returncode == 0 and "SUM" in step.stdout.upper(), step.stderr
    given = quarry(
        "query",
        "-w",
        "shop",
        "--saved",
        "by_status",
        "--param",
        "status=complete",
        "--format",
        "json",
    )
    assert given.returncode == 0, given.stderr
    got = [tuple(r.values()) for r in json.loads(given.stdout)]
    assert same(got, hand_written(root, REVENUE_BY_REGION_FOR_STATUS, "complete"))
    bad = quarry("query", "-w", "shop", "--saved", "by_status", "-p", "status=nope")
    assert bad.returncode == 1 and "parameter 'status'" in bad.stderr, bad.stderr
    both = quarry("query", "-w", "shop", "--saved", "two_steps", "-m", "orders.revenue")
    assert both.returncode == 1 and "--saved" in both.stderr
