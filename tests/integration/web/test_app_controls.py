"""Controls declared both ways Oxy allows, with templated options and defaults, run by
the real worker over HTTP; markdown rendered against the task results; results cached
per (revision, control values)."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tests.conftest import Backend
from tests.integration.web.conftest import Served, serve_demo

APP_NAME = "apps/filters"
DATA = f"/api/v1/workspaces/shop/apps/{APP_NAME}/data"

FILTERS_APP = """\
name: filters
title: Filters
controls:
  - name: region
    type: select
    label: Region
    source: regions
    default: All
tasks:
  - name: regions
    type: execute_sql
    database: local
    sql_query: SELECT 'All' AS region UNION ALL (SELECT DISTINCT region FROM orders ORDER BY 1)
  - name: kpis
    type: execute_sql
    database: local
    sql_query: |
      SELECT count(*) AS orders, sum(quantity) AS units
      FROM orders
      WHERE ({{ controls.region | sqlquote }} = 'All' OR region = {{ controls.region | sqlquote }})
        {% if controls.big_only %}AND quantity >= 3{% endif %}
        AND order_date <= CAST({{ controls.until | sqlquote }} AS DATE)
display:
  - type: control
    name: year
    control_type: select
    label: Year
    options: ["All", "{{ now(fmt='%Y') }}", "{{ now(fmt='%Y') | int - 1 }}"]
    default: "{{ now(fmt='%Y') }}"
  - type: controls
    items:
      - name: until
        type: date
        default: "{{ now(fmt='%Y-%m-%d') }}"
      - name: big_only
        type: toggle
        default: false
  - type: markdown
    content: |
      **{{ kpis.orders[0] }}** orders in {{ controls.region -}}
      {% if controls.big_only %} (3+ units){% endif %}
      {% for r in regions %}{% if not loop.first %}, {% endif %}{{ r.region }}{% endfor %}
  - type: row
    children:
      - type: table
        data: kpis
      - type: markdown
        content: "{{ missing.column[0] }}{{ kpis.orders[0] // 0 }}"
"""


def _expected(root: Path, region: str, big_only: bool, until: str) -> tuple[int, int]:
    where = "1=1" if region == "All" else "region = ?"
    if big_only:
        where += " AND quantity >= 3"
    sql = (
        f"SELECT count(*), sum(quantity) FROM '{root / '.db' / 'orders.csv'}' "
        f"WHERE {where} AND order_date <= CAST(? AS DATE)"
    )
    params = ([region] if region != "All" else []) + [until]
    row = duckdb.execute(sql, params).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def run_app(served: Served, variables: dict[str, Any], *, key: str = "variables") -> str:
    """Start an app run over the runs API and wait (polling with a deadline) for it."""
    started = served.client.post(
        "/api/v1/workspaces/shop/runs", json={"kind": "app", "name": APP_NAME, key: variables}
    )
    assert started.status_code in (200, 201, 202), started.text
    run_id = started.json()["id"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        run = served.client.get(f"/api/v1/runs/{run_id}").json()
        if run.get("finished_at"):
            assert run["state"] == "succeeded", run
            return str(run_id)
        time.sleep(0.1)  # polling a condition, with a deadline
    raise AssertionError(f"run {run_id} did not finish in time")


@pytest.fixture
def served(backend: Backend, tmp_path: Path) -> Any:
    extra = {"apps/filters.app.yml": FILTERS_APP}
    with serve_demo(backend, tmp_path, extra_files=extra, workers=True) as got:
        yield got


def test_controls_both_ways_templated_and_cached(served: Served) -> None:
    today = dt.date.today()
    year = str(today.year)
    missing = served.client.get(DATA)
    assert missing.status_code == 404
    defaults = missing.json()["details"]["controls"]
    # top-level and inline (single and group) controls, defaults rendered as templates
    assert defaults == {
        "region": "All",
        "year": year,
        "until": today.isoformat(),
        "big_only": False,
    }

    run_app(served, {})
    doc = served.client.get(DATA).json()
    controls = {c["name"]: c for c in doc["controls"]}
    assert list(controls) == ["region", "year", "until", "big_only"]
    assert controls["year"]["options"] == ["All", year, str(today.year - 1)]
    assert controls["year"]["type"] == "select" and controls["year"]["label"] == "Year"
    assert controls["until"]["type"] == "date" and controls["big_only"]["type"] == "toggle"
    regions = ["All", "East", "North", "South", "West"]
    assert controls["region"]["options"] == regions  # first column of the source task
    orders, units = _expected(served.root, "All", False, today.isoformat())
    markdown = doc["display"][0]
    assert markdown == {
        "type": "markdown",
        "content": f"**{orders}** orders in All\n{', '.join(regions)}",
    }
    row = doc["display"][1]
    assert row["children"][0]["rows"] == [[orders, units]]
    assert "error" in row["children"][1] and "markdown template" in row["children"][1]["error"]

    # other values: a new run, its own cache entry; query text and JSON meet on one key
    chosen = {"region": "North", "big_only": True, "until": "2023-06-30"}
    run_app(served, chosen, key="controls")
    text_query = {"region": "North", "big_only": "true", "until": "2023-06-30"}
    north = served.client.get(DATA, params=text_query)
    assert north.status_code == 200, north.text
    orders_n, units_n = _expected(served.root, "North", True, "2023-06-30")
    assert north.json()["display"][1]["children"][0]["rows"] == [[orders_n, units_n]]
    assert north.json()["display"][0]["content"].startswith(f"**{orders_n}** orders in North (3+")
    assert orders_n < orders
    assert served.client.get(DATA).json() == doc  # the default view is still stored
    other = served.client.get(DATA, params={**text_query, "year": str(today.year - 1)})
    assert other.status_code == 404 and other.json()["details"]["run_needed"] is True


def test_bad_control_values_are_refused(served: Served) -> None:
    for params, word in [
        ({"year": "1999"}, "options"),
        ({"until": "yesterday"}, "YYYY-MM-DD"),
        ({"big_only": "maybe"}, "toggle"),
        ({"nope": "1"}, "unknown control"),
        ({"region": "x" * 5000}, "limit"),
    ]:
        got = served.client.get(DATA, params=params)
        assert got.status_code == 400, (params, got.text)
        assert word in got.json()["message"], got.json()
    started = served.client.post(
        "/api/v1/workspaces/shop/runs",
        json={"kind": "app", "name": APP_NAME, "controls": {"year": "1999"}},
    )
    assert started.status_code == 400, started.text
    assert "options" in started.json()["message"]
