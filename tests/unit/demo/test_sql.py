"""Every SQL statement the demo ships runs in DuckDB against the generated CSV files.

Jinja is rendered first with sample values: each loop value for a loop body, each
option of the app's controls. Queries run with the dataset folder as the working
directory, which is how the ``local`` database resolves ``FROM 'orders.csv'``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import jinja2
import pytest

from quarry.demo import DATASET_DIR
from tests.unit.demo.helpers import SqlUse, load_yaml, shipped_sql

_JINJA = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)


def run(sql: str, context: dict[str, Any]) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Render the Jinja, run the SQL in a fresh in-memory DuckDB: (columns, rows)."""
    with duckdb.connect() as connection:
        relation = connection.sql(_JINJA.from_string(sql).render(context))
        return relation.columns, relation.fetchall()


def test_finds_the_sql_of_every_workflow_and_the_app(demo_workspace: Path) -> None:
    where = {use.where.split(":")[0] for use in shipped_sql(demo_workspace)}
    assert where == {
        "apps/sales_overview.app.yml",
        "workflows/monthly_revenue.workflow.yml",
        "workflows/region_report.procedure.yml",
    }


def test_every_statement_runs_and_returns_rows(
    demo_workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(demo_workspace / DATASET_DIR)
    uses: list[SqlUse] = shipped_sql(demo_workspace)
    assert len(uses) >= 9
    for use in uses:
        assert use.contexts
        for context in use.contexts:
            _, result = run(use.sql, context)
            assert result, f"{use.where} returned no rows for {context}"


def test_loop_bodies_see_their_region(
    demo_workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(demo_workspace / DATASET_DIR)
    [use] = [u for u in shipped_sql(demo_workspace) if u.where.endswith("category_revenue")]
    for context in use.contexts:
        _, result = run(use.sql, context)
        regions = {row[0] for row in result}
        assert regions == {context["regions"]["value"]}


def test_app_displays_name_columns_their_task_returns(
    demo_workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(demo_workspace / DATASET_DIR)
    app = load_yaml(demo_workspace / "apps/sales_overview.app.yml")
    defaults = {"controls": {c["name"]: c["default"] for c in app["controls"]}}
    columns = {task["name"]: run(task["sql_query"], defaults)[0] for task in app["tasks"]}
    kinds = set()
    for block in app["display"]:
        kinds.add(block["type"])
        if block["type"] == "markdown":
            continue
        returned = columns[block["data"]]
        for key in ("x", "y", "name", "value"):
            if key in block:
                assert block[key] in returned, (block, returned)
        for column in block.get("formats") or {}:
            assert column in returned, (block, returned)
    assert kinds == {"markdown", "table", "line_chart", "bar_chart", "pie_chart"}


def test_region_filter_narrows_the_app(
    demo_workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(demo_workspace / DATASET_DIR)
    app = load_yaml(demo_workspace / "apps/sales_overview.app.yml")
    [kpis] = [task for task in app["tasks"] if task["name"] == "kpis"]

    def orders(region: str) -> int:
        _, result = run(kpis["sql_query"], {"controls": {"region": region}})
        return int(result[0][0])

    by_region = [orders(region) for region in app["controls"][0]["options"][1:]]
    assert all(count > 0 for count in by_region)
    assert sum(by_region) == orders("All")
