"""airlayer's query ``timezone``, ``ungrouped`` queries and ``rolling_window`` measures,
on real DuckDB and Postgres against answers computed independently (Python over the
loaded rows, or hand-written SQL), and rendered for every dialect as SQL that sqlglot
reads back in that dialect."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlglot

from quarry.definitions.models.semantic import ViewConfig
from quarry.semantic import DIALECTS, SemanticError, SemanticModel, SemanticQuery, compile_query
from tests.integration.semantic.conftest import (
    ROWS,
    TODAY,
    TOPICS,
    VIEWS,
    Database,
    normalized,
    ordered,
)

ROLLING = [
    {
        "name": "running_revenue",
        "type": "sum",
        "expr": "amount",
        "rolling_window": {"trailing": "unbounded"},
    },
    {
        "name": "orders_3_periods",
        "type": "count",
        "rolling_window": {"trailing": "2", "leading": "current row"},
    },
    {
        "name": "max_of_3",
        "type": "max",
        "expr": "amount",
        "rolling_window": {"trailing": 1, "leading": 1},
    },
    {"name": "avg_rolling", "type": "average", "expr": "amount", "rolling_window": {}},
]


def _model() -> SemanticModel:
    views = []
    for view in VIEWS:
        if view.name == "orders":
            data = view.model_dump(by_alias=True, exclude_none=True)
            data["measures"] = [*data["measures"], *ROLLING]
            view = ViewConfig.model_validate(data)
        views.append(view)
    return SemanticModel.from_definitions(views, TOPICS)


MODEL = _model()
NEW_YORK = ZoneInfo("America/New_York")


def compiled(query: dict[str, Any], dialect: str) -> Any:
    return compile_query(MODEL, SemanticQuery.from_request(query), dialect=dialect, today=TODAY)


def run(db: Database, query: dict[str, Any]) -> list[tuple[Any, ...]]:
    return db.run(compiled(query, db.dialect))


# -- timezone ---------------------------------------------------------------------


def _local(moment: datetime) -> datetime:
    """A stored (naive, UTC) moment as New York wall-clock time, naive."""
    return moment.replace(tzinfo=ZoneInfo("UTC")).astimezone(NEW_YORK).replace(tzinfo=None)


def test_time_dimensions_group_and_filter_in_the_query_time_zone(db: Database) -> None:
    query = {
        "measures": ["orders.revenue", "orders.order_count"],
        "time_dimensions": [{"dimension": "orders.created_at", "granularity": "day"}],
        "filters": [
            {
                "field": "orders.created_at",
                "op": "in_date_range",
                "from": "2023-03-01",
                "to": "2023-04-30",
            }
        ],
        "timezone": "America/New_York",
    }
    expected: dict[datetime, list[Any]] = defaultdict(lambda: [Decimal(0), 0])
    for _id, _c, _s, amount, created, *_ in ROWS["orders"]:
        local = _local(created)
        if date(2023, 3, 1) <= local.date() <= date(2023, 4, 30):
            day = datetime(local.year, local.month, local.day)
            expected[day][0] += amount
            expected[day][1] += 1
    want = [(day, revenue, count) for day, (revenue, count) in expected.items()]
    got = normalized(run(db, query))
    assert got == normalized(want)
    # UTC days differ: some orders fall on another day in New York
    utc = normalized(run(db, {k: v for k, v in query.items() if k != "timezone"}))
    assert utc != got


def test_a_month_in_the_time_zone(db: Database) -> None:
    query = {
        "measures": ["orders.order_count"],
        "time_dimensions": [{"dimension": "orders.created_at", "granularity": "month"}],
        "timezone": "Asia/Tokyo",
    }
    tokyo = ZoneInfo("Asia/Tokyo")
    expected: dict[datetime, int] = defaultdict(int)
    for row in ROWS["orders"]:
        local = row[4].replace(tzinfo=ZoneInfo("UTC")).astimezone(tokyo)
        expected[datetime(local.year, local.month, 1)] += 1
    assert normalized(run(db, query)) == normalized(list(expected.items()))


@pytest.mark.parametrize(
    "zone", ["Mars/Olympus", "America/New_York'; DROP TABLE orders; --", "../etc"]
)
def test_an_unknown_time_zone_is_refused_by_name(zone: str) -> None:
    with pytest.raises(SemanticError) as caught:
        compiled({"measures": ["orders.revenue"], "timezone": zone}, "duckdb")
    assert f"timezone '{zone}'" in caught.value.message


def test_utc_changes_nothing() -> None:
    query = {
        "measures": ["orders.revenue"],
        "time_dimensions": [{"dimension": "orders.created_at", "granularity": "day"}],
    }
    assert (
        compiled({**query, "timezone": "UTC"}, "postgres").text == compiled(query, "postgres").text
    )


# -- ungrouped --------------------------------------------------------------------


def test_ungrouped_rows_are_the_rows_of_the_measures_view(db: Database) -> None:
    query = {
        "measures": ["orders.revenue", "orders.order_count", "orders.paid_revenue"],
        "dimensions": ["customers.region", "orders.status"],
        "filters": [{"field": "orders.amount", "op": "gt", "value": 200}],
        "ungrouped": True,
    }
    want = db.sql(
        """SELECT c.region, o.status, o.amount, 1,
                  CASE WHEN o.status = 'paid' THEN o.amount END
           FROM orders o LEFT JOIN customers c ON o.customer_id = c.id
           WHERE o.amount > 200"""
    )
    got = run(db, query)
    assert len(got) == len(want) > 20
    assert normalized(got) == normalized(want)


def test_ungrouped_with_order_and_limit(db: Database) -> None:
    query = {
        "measures": ["orders.revenue"],
        "dimensions": ["orders.id"],
        "orders": [{"field": "orders.revenue", "direction": "desc"}, {"field": "orders.id"}],
        "limit": 5,
        "ungrouped": True,
    }
    want = db.sql("SELECT id, amount FROM orders ORDER BY amount DESC, id LIMIT 5")
    assert ordered(run(db, query)) == ordered(want)


def test_ungrouped_dimensions_only_with_a_time_dimension(db: Database) -> None:
    query = {
        "dimensions": ["orders.id"],
        "time_dimensions": [{"dimension": "orders.created_at", "granularity": "month"}],
        "ungrouped": True,
    }
    want = db.sql("SELECT id, DATE_TRUNC('month', created_at) FROM orders")
    assert normalized(run(db, query)) == normalized(want)


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ({"measures": ["orders.revenue_per_order"]}, "orders.revenue_per_order"),
        ({"measures": ["orders.revenue", "line_items.quantity"]}, "'line_items'"),
        ({"measures": ["orders.revenue"], "dimensions": ["line_items.product_id"]}, "line_items"),
        (
            {
                "measures": ["orders.revenue"],
                "filters": [{"field": "orders.revenue", "op": "gt", "value": 1}],
            },
            "cannot filter on a measure",
        ),
    ],
)
def test_what_has_no_row_value_is_refused(query: dict[str, Any], named: str) -> None:
    with pytest.raises(SemanticError) as caught:
        compiled({**query, "ungrouped": True}, "duckdb")
    assert named in caught.value.message


# -- rolling_window ---------------------------------------------------------------

MONTHLY = """SELECT DATE_TRUNC('month', created_at) AS m, SUM(amount) AS revenue,
                    COUNT(*) AS n, MAX(amount) AS top FROM orders GROUP BY 1"""


def test_rolling_window_measures_match_window_functions_over_months(db: Database) -> None:
    query = {
        "measures": [
            "orders.revenue",
            "orders.running_revenue",
            "orders.orders_3_periods",
            "orders.max_of_3",
        ],
        "time_dimensions": [{"dimension": "orders.created_at", "granularity": "month"}],
        "orders": [{"field": "orders.created_at"}],
    }
    want = db.sql(
        f"""SELECT m, revenue,
               SUM(revenue) OVER (ORDER BY m ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW),
               SUM(n) OVER (ORDER BY m ROWS BETWEEN 2 PRECEDING AND CURRENT ROW),
               MAX(top) OVER (ORDER BY m ROWS BETWEEN 1 PRECEDING AND 1 FOLLOWING)
            FROM ({MONTHLY}) AS t ORDER BY m"""
    )
    got = ordered(run(db, query))
    assert got == ordered(want)
    running = [row[2] for row in got]
    assert running == sorted(running) and running[-1] == round(
        float(sum(r[3] for r in ROWS["orders"])), 6
    )


def test_rolling_partitions_by_the_other_dimensions_and_stays_fan_out_safe(db: Database) -> None:
    # Filtering orders by a product category joins line_items (many per order): the
    # running total must still count each order once per month.
    query = {
        "measures": ["orders.running_revenue"],
        "dimensions": ["orders.status"],
        "time_dimensions": [{"dimension": "orders.created_at", "granularity": "quarter"}],
        "filters": [{"field": "products.category", "op": "eq", "value": "Books"}],
    }
    want = db.sql(
        """SELECT status, q, SUM(r) OVER (PARTITION BY status ORDER BY q
                  ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
           FROM (SELECT o.status, DATE_TRUNC('quarter', o.created_at) AS q, SUM(o.amount) AS r
                 FROM orders o
                 WHERE o.id IN (SELECT li.order_id FROM line_items li
                                JOIN products p ON li.product_id = p.id
                                WHERE p.category = 'Books')
                 GROUP BY 1, 2) AS t"""
    )
    assert normalized(run(db, query)) == normalized(want)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"measures": ["orders.running_revenue"]}, "needs a time dimension with a granularity"),
        (
            {
                "measures": ["orders.avg_rolling"],
                "time_dimensions": [{"dimension": "orders.created_at", "granularity": "month"}],
            },
            "orders.avg_rolling': rolling_window works on sum, count, min and max",
        ),
    ],
)
def test_rolling_windows_that_cannot_be_right_are_refused(
    query: dict[str, Any], message: str
) -> None:
    with pytest.raises(SemanticError) as caught:
        compiled(query, "duckdb")
    assert message in caught.value.message


def test_a_bad_rolling_window_is_a_file_error() -> None:
    from quarry.core.errors import CompileFailed
    from quarry.definitions.parse import parse_definition

    text = (
        "name: v\ntable: t\nentities: []\ndimensions:\n  - {name: d, type: date, expr: d}\n"
        "measures:\n  - name: m\n    type: sum\n    expr: x\n    rolling_window:\n"
        "      trailing: a week\n"
    )
    with pytest.raises(CompileFailed) as caught:
        parse_definition("v.view.yml", text.encode())
    assert any("trailing" in p.message and p.line >= 10 for p in caught.value.problems)


# -- every dialect ----------------------------------------------------------------

FEATURES = {
    "timezone": {
        "measures": ["orders.revenue"],
        "dimensions": ["customers.region"],
        "time_dimensions": [{"dimension": "orders.created_at", "granularity": "week"}],
        "filters": [{"field": "orders.created_at", "op": "gte", "value": "2023-06-01"}],
        "timezone": "Europe/Paris",
    },
    "ungrouped": {
        "measures": ["orders.revenue", "orders.paid_orders"],
        "dimensions": ["customers.region"],
        "time_dimensions": [{"dimension": "orders.created_at", "granularity": "day"}],
        "ungrouped": True,
        "limit": 10,
    },
    "rolling": {
        "measures": ["orders.running_revenue", "orders.orders_3_periods", "line_items.quantity"],
        "dimensions": ["customers.region"],
        "time_dimensions": [{"dimension": "orders.created_at", "granularity": "month"}],
        "filters": [{"field": "orders.running_revenue", "op": "gt", "value": 10}],
        "timezone": "America/New_York",
    },
}


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("feature", list(FEATURES))
def test_every_dialect_renders_sql_it_can_parse(dialect: str, feature: str) -> None:
    assert len(DIALECTS) == 7
    plan = compiled(FEATURES[feature], dialect)
    text = plan.text
    for i in range(len(plan.params)):
        text = text.replace(f"{plan.token}{i}{plan.token}", "'x'")
    assert plan.token not in text
    sqlglot.parse_one(text, read=dialect)
    if feature == "timezone":
        assert "Europe/Paris" in text
    if feature == "rolling":
        assert "ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW" in text.upper()
