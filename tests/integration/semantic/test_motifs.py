"""Motifs over the aggregated result, against hand-written SQL on DuckDB and Postgres."""

from __future__ import annotations

import pytest

from quarry.definitions.models.semantic import MotifConfig
from quarry.semantic import SemanticModel, SemanticQuery, compile_query
from tests.integration.semantic.conftest import TODAY, TOPICS, VIEWS, Database, normalized

MONTHLY = """SELECT DATE_TRUNC('month', created_at) AS m, SUM(amount) AS r FROM orders GROUP BY 1"""
BY_STATUS_MONTHLY = """SELECT status, DATE_TRUNC('month', created_at) AS m, SUM(amount) AS r
                       FROM orders GROUP BY 1, 2"""

CASES = [
    (
        "mom-compares-the-same-group-one-month-earlier",
        {
            "measures": ["orders.revenue"],
            "dimensions": ["orders.status"],
            "time_dimensions": [{"dimension": "orders.created_at", "granularity": "month"}],
            "motif": "mom",
        },
        f"""WITH b AS ({BY_STATUS_MONTHLY})
            SELECT b.status, b.m, b.r, p.r,
                   CASE WHEN p.r IS NOT NULL AND p.r <> 0 THEN (b.r - p.r) * 1.0 / ABS(p.r) END
            FROM b LEFT JOIN b AS p ON p.status = b.status
             AND p.m = b.m - INTERVAL '1 month'""",
    ),
    (
        "yoy-on-months",
        {
            "measures": ["orders.revenue"],
            "time_dimensions": [{"dimension": "orders.created_at", "granularity": "month"}],
            "motif": "yoy",
        },
        f"""WITH b AS ({MONTHLY})
            SELECT b.m, b.r, p.r,
                   CASE WHEN p.r IS NOT NULL AND p.r <> 0 THEN (b.r - p.r) * 1.0 / ABS(p.r) END
            FROM b LEFT JOIN b AS p ON p.m = b.m - INTERVAL '1 year'""",
    ),
    (
        "contribution",
        {"measures": ["orders.revenue"], "dimensions": ["orders.status"], "motif": "contribution"},
        """WITH b AS (SELECT status, SUM(amount) AS r FROM orders GROUP BY 1)
           SELECT status, r, SUM(r) OVER (), r * 1.0 / SUM(r) OVER () FROM b""",
    ),
    (
        "percent_of_total-per-measure",
        {
            "measures": ["orders.revenue", "orders.order_count"],
            "dimensions": ["orders.status"],
            "motif": "percent_of_total",
        },
        """WITH b AS (SELECT status, SUM(amount) AS r, COUNT(*) AS n FROM orders GROUP BY 1)
           SELECT status, r, n, 100 * r / SUM(r) OVER (), 100 * n / SUM(n) OVER () FROM b""",
    ),
    (
        "cumulative",
        {
            "measures": ["orders.order_count"],
            "time_dimensions": [{"dimension": "orders.created_at", "granularity": "quarter"}],
            "motif": "cumulative",
        },
        """WITH b AS (SELECT DATE_TRUNC('quarter', created_at) AS q, COUNT(*) AS n
                      FROM orders GROUP BY 1)
           SELECT q, n, SUM(n) OVER (ORDER BY q ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
           FROM b""",
    ),
    (
        "rank",
        {"measures": ["orders.revenue"], "dimensions": ["customers.region"], "motif": "rank"},
        """WITH b AS (SELECT c.region, SUM(o.amount) AS r FROM orders o
                      LEFT JOIN customers c ON o.customer_id = c.id GROUP BY 1)
           SELECT region, r, RANK() OVER (ORDER BY r DESC) FROM b""",
    ),
    (
        "custom-motif",
        {
            "measures": ["orders.revenue"],
            "dimensions": ["orders.status"],
            "motif": "margin",
            "motif_params": {"factor": 2},
        },
        """WITH b AS (SELECT status, SUM(amount) AS r FROM orders GROUP BY 1)
           SELECT status, r, r * 2 - MIN(r) OVER () FROM b""",
    ),
]

MOTIF = MotifConfig.model_validate(
    {
        "name": "margin",
        "params": {"factor": {"type": "number", "default": 1}},
        "outputs": [
            {
                "name": "stretched",
                "expr": "{{ measure }} * {{ factor }} - MIN({{ measure }}) OVER ()",
            }
        ],
    }
)
MODEL = SemanticModel.from_definitions(VIEWS, TOPICS, motifs=[MOTIF])


@pytest.mark.parametrize(("query", "sql"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_motif_matches_hand_written_sql(db: Database, query: dict[str, object], sql: str) -> None:
    compiled = compile_query(
        MODEL, SemanticQuery.from_request(query), dialect=db.dialect, today=TODAY
    )
    assert normalized(db.run(compiled)) == normalized(db.sql(sql))
