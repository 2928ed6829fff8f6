"""The page document: blocks in order, rows nested, charts as Vega-Lite with data inline."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import pyarrow as pa

from quarry.core.hashing import canonical_json
from quarry.definitions.models.app import AppConfig
from quarry.runtime.apps import build_app_result
from quarry.runtime.apps.result import TABLE_ROW_LIMIT

SALES = pa.table(
    {
        "day": pa.array([dt.date(2024, 1, 1), dt.date(2024, 1, 2)], pa.date32()),
        "region": ["North", "South"],
        "revenue": pa.array([Decimal("10.50"), Decimal("20.25")], pa.decimal128(10, 2)),
        "share": [float("nan"), 42.0],
    }
)


def _build(display: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    app = AppConfig.model_validate({"tasks": [], "display": display, **extra})
    doc = build_app_result(app, {"sales": SALES}, {}, revision_id="r1", app_name="apps/my_app")
    canonical_json(doc)  # JSON-safe: no NaN, no dates, no decimals
    return doc


def _spec(block: dict[str, Any]) -> dict[str, Any]:
    doc = _build([block])
    spec: dict[str, Any] = doc["display"][0]["spec"]
    assert spec["$schema"] == "https://vega.github.io/schema/vega-lite/v5.json"
    return spec


def test_bar_chart_spec() -> None:
    spec = _spec(
        {
            "type": "bar_chart",
            "data": "sales",
            "x": "region",
            "y": "revenue",
            "y_format": "currency",
        }
    )
    assert spec["mark"]["type"] == "bar"
    assert spec["encoding"]["x"] == {
        "field": "region",
        "type": "nominal",
        "sort": None,
        "axis": {"labelAngle": 0},
    }
    assert spec["encoding"]["y"]["field"] == "revenue"
    assert spec["encoding"]["y"]["type"] == "quantitative"
    assert spec["encoding"]["y"]["axis"]["format"].startswith("$")
    assert spec["data"]["values"] == [
        {"region": "North", "revenue": 10.5},
        {"region": "South", "revenue": 20.25},
    ]


def test_bar_chart_series_groups_by_colour() -> None:
    spec = _spec(
        {"type": "bar_chart", "data": "sales", "x": "day", "y": "revenue", "series": "region"}
    )
    assert spec["encoding"]["x"]["type"] == "temporal"
    assert spec["encoding"]["color"]["field"] == "region"
    assert spec["encoding"]["xOffset"]["field"] == "region"
    assert spec["data"]["values"][0] == {"day": "2024-01-01", "revenue": 10.5, "region": "North"}


def test_line_chart_spec() -> None:
    spec = _spec(
        {
            "type": "line_chart",
            "data": "sales",
            "x": "day",
            "y": "share",
            "x_axis_label": "Day",
            "y_axis_label": "Share",
            "y_format": "percent",
        }
    )
    assert spec["mark"]["type"] == "line"
    assert spec["encoding"]["x"] == {"field": "day", "type": "temporal", "axis": {"title": "Day"}}
    assert spec["encoding"]["y"]["axis"]["title"] == "Share"
    assert "%" in spec["encoding"]["y"]["axis"]["labelExpr"]
    assert [v["share"] for v in spec["data"]["values"]] == [None, 42.0]


def test_pie_chart_is_an_arc_with_theta_and_colour() -> None:
    spec = _spec({"type": "pie_chart", "data": "sales", "name": "region", "value": "revenue"})
    assert spec["mark"]["type"] == "arc"
    assert spec["encoding"]["theta"]["field"] == "revenue"
    assert spec["encoding"]["theta"]["type"] == "quantitative"
    assert spec["encoding"]["color"]["field"] == "region"
    assert len(spec["data"]["values"]) == 2


def test_field_names_with_dots_are_escaped() -> None:
    table = pa.table({"a.b": ["x"], "v": [1]})
    app = AppConfig.model_validate(
        {"tasks": [], "display": [{"type": "bar_chart", "data": "t", "x": "a.b", "y": "v"}]}
    )
    doc = build_app_result(app, {"t": table}, {}, revision_id="r", app_name="a")
    spec = doc["display"][0]["spec"]
    assert spec["encoding"]["x"]["field"] == "a\\.b"
    assert spec["data"]["values"] == [{"a.b": "x", "v": 1}]


def test_rows_nest_and_blocks_keep_their_order() -> None:
    doc = _build(
        [
            {"type": "markdown", "content": "# Hi"},
            {
                "type": "row",
                "children": [
                    {"type": "table", "data": "sales"},
                    {
                        "type": "row",
                        "columns": 3,
                        "children": [
                            {
                                "type": "pie_chart",
                                "data": "sales",
                                "name": "region",
                                "value": "share",
                            }
                        ],
                    },
                ],
            },
        ],
        title="Mine",
    )
    assert doc["title"] == "Mine"
    assert [b["type"] for b in doc["display"]] == ["markdown", "row"]
    assert doc["display"][0]["content"] == "# Hi"
    row = doc["display"][1]
    assert row["columns"] == 2
    assert [c["type"] for c in row["children"]] == ["table", "row"]
    assert row["children"][1]["columns"] == 3
    assert row["children"][1]["children"][0]["spec"]["mark"]["type"] == "arc"


def test_table_columns_rows_and_formats() -> None:
    doc = _build(
        [{"type": "table", "data": "sales", "title": "T", "formats": {"revenue": "currency"}}]
    )
    table = doc["display"][0]
    assert [c["name"] for c in table["columns"]] == ["day", "region", "revenue", "share"]
    assert [c["kind"] for c in table["columns"]] == ["temporal", "text", "number", "number"]
    assert table["columns"][2]["format"] == "currency"
    assert table["rows"][0] == ["2024-01-01", "North", 10.5, None]
    assert table["truncated"] is False and table["row_count"] == 2


def test_tables_are_capped_with_a_flag() -> None:
    n = TABLE_ROW_LIMIT + 5
    app = AppConfig.model_validate({"tasks": [], "display": [{"type": "table", "data": "big"}]})
    big = pa.table({"i": list(range(n))})
    doc = build_app_result(app, {"big": big}, {}, revision_id="r", app_name="a")
    table = doc["display"][0]
    assert len(table["rows"]) == TABLE_ROW_LIMIT
    assert table["truncated"] is True and table["row_count"] == n


def test_missing_data_is_an_error_on_that_block_only() -> None:
    doc = _build(
        [
            {"type": "table", "data": "nope"},
            {"type": "bar_chart", "data": "sales", "x": "region", "y": "missing"},
            {"type": "markdown", "content": "still here"},
        ]
    )
    assert "'nope'" in doc["display"][0]["error"]
    assert "'missing'" in doc["display"][1]["error"]
    assert doc["display"][2] == {"type": "markdown", "content": "still here"}


def test_controls_carry_values_and_options() -> None:
    app = AppConfig.model_validate(
        {
            "tasks": [],
            "display": [],
            "controls": [
                {"name": "region", "type": "select", "options": ["All", "North"]},
                {"name": "the_product", "type": "select", "source": "products"},
            ],
        }
    )
    products = pa.table({"p": ["Mug", "Cap", "Mug"]})
    doc = build_app_result(
        app,
        {"products": products},
        {"region": "North", "the_product": "Cap"},
        revision_id="r",
        app_name="apps/shop_floor",
    )
    assert doc["title"] == "Shop floor"
    assert doc["controls"][0]["options"] == ["All", "North"]
    assert doc["controls"][0]["value"] == "North"
    assert doc["controls"][1]["options"] == ["Mug", "Cap"]
    assert doc["controls"][1]["label"] == "The product"
    assert json.loads(canonical_json(doc)) == doc
