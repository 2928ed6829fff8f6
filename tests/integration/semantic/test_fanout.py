"""Fan-out first: measures joined across one-to-many relationships keep their value.

Each case compares Quarry's compiled query with a hand-written answer on the same
database (DuckDB and Postgres); the first one is issue #16's own example, and a
flat join (what airlayer 0.4.0 generates for it) is shown to give another number,
so the comparison can fail.
"""

from __future__ import annotations

import pytest

from tests.integration.semantic.conftest import Database, normalized

ISSUE_EXAMPLE = {
    "measures": ["orders.revenue", "line_items.quantity"],
    "dimensions": ["customers.region"],
}
ISSUE_EXAMPLE_SQL = """
WITH rev AS (
    SELECT c.region, SUM(o.amount) AS revenue
    FROM orders o LEFT JOIN customers c ON o.customer_id = c.id GROUP BY c.region
), qty AS (
    SELECT c.region, SUM(li.qty) AS quantity
    FROM line_items li LEFT JOIN orders o ON li.order_id = o.id
    LEFT JOIN customers c ON o.customer_id = c.id GROUP BY c.region
)
SELECT COALESCE(rev.region, qty.region), rev.revenue, qty.quantity
FROM rev FULL JOIN qty ON COALESCE(rev.region, '~') = COALESCE(qty.region, '~')
"""
FLAT_JOIN_SQL = """
SELECT c.region, SUM(o.amount), SUM(li.qty)
FROM line_items li LEFT JOIN orders o ON li.order_id = o.id
LEFT JOIN customers c ON o.customer_id = c.id GROUP BY c.region
"""


def test_issue_example_gives_the_unduplicated_revenue(db: Database) -> None:
    got = normalized(db.query(ISSUE_EXAMPLE))
    assert got == normalized(db.sql(ISSUE_EXAMPLE_SQL))
    # The flat join repeats each order's amount once per line item: another answer.
    assert got != normalized(db.sql(FLAT_JOIN_SQL))
    revenue_by_region = {row[0]: row[1] for row in got}
    total = normalized(db.sql("SELECT SUM(amount) FROM orders"))[0][0]
    assert sum(revenue_by_region.values()) == pytest.approx(total)


CASES = [
    (
        "order-measure-by-line-item-dimension",
        {"measures": ["orders.revenue"], "dimensions": ["line_items.product_id"]},
        """SELECT product_id, SUM(amount) FROM (
               SELECT DISTINCT li.product_id, o.id, o.amount
               FROM orders o LEFT JOIN line_items li ON li.order_id = o.id) AS t
           GROUP BY product_id""",
    ),
    (
        "order-measure-two-hops-down",
        {"measures": ["orders.revenue", "orders.order_count"], "dimensions": ["products.category"]},
        """SELECT category, SUM(amount), COUNT(*) FROM (
               SELECT DISTINCT p.category, o.id, o.amount
               FROM orders o LEFT JOIN line_items li ON li.order_id = o.id
               LEFT JOIN products p ON li.product_id = p.id) AS t
           GROUP BY category""",
    ),
    (
        "both-children-of-orders",
        {
            "measures": ["line_items.quantity", "payments.paid_amount", "orders.revenue"],
            "dimensions": ["orders.status"],
        },
        """SELECT o.status,
                  (SELECT SUM(li.qty) FROM line_items li JOIN orders o2 ON li.order_id = o2.id
                    WHERE o2.status = o.status),
                  (SELECT SUM(p.amount) FROM payments p JOIN orders o3 ON p.order_id = o3.id
                    WHERE o3.status = o.status),
                  SUM(o.amount)
           FROM orders o GROUP BY o.status""",
    ),
    (
        "children-grouped-by-each-other",
        {
            "measures": ["orders.revenue", "payments.paid_amount"],
            "dimensions": ["products.category"],
        },
        """WITH rev AS (
               SELECT category, SUM(amount) AS revenue FROM (
                   SELECT DISTINCT p.category, o.id, o.amount FROM orders o
                   LEFT JOIN line_items li ON li.order_id = o.id
                   LEFT JOIN products p ON li.product_id = p.id) t GROUP BY category
           ), pay AS (
               SELECT category, SUM(amount) AS paid FROM (
                   SELECT DISTINCT pr.category, pa.id, pa.amount FROM payments pa
                   LEFT JOIN orders o ON pa.order_id = o.id
                   LEFT JOIN line_items li ON li.order_id = o.id
                   LEFT JOIN products pr ON li.product_id = pr.id) t GROUP BY category
           )
           SELECT COALESCE(rev.category, pay.category), rev.revenue, pay.paid
           FROM rev FULL JOIN pay ON COALESCE(rev.category, '~') = COALESCE(pay.category, '~')""",
    ),
    (
        "count-distinct-under-fan-out",
        {"measures": ["orders.buyers"], "dimensions": ["products.category"]},
        """SELECT p.category, COUNT(DISTINCT o.customer_id)
           FROM orders o LEFT JOIN line_items li ON li.order_id = o.id
           LEFT JOIN products p ON li.product_id = p.id GROUP BY p.category""",
    ),
    (
        "median-under-fan-out",
        {"measures": ["orders.median_amount"], "dimensions": ["payments.method"]},
        """SELECT method, PERCENTILE_CONT(0.5) WITHIN GROUP (ORDER BY amount) FROM (
               SELECT DISTINCT pa.method, o.id, o.amount
               FROM orders o LEFT JOIN payments pa ON pa.order_id = o.id) AS t
           GROUP BY method""",
    ),
    (
        "average-under-fan-out",
        {"measures": ["orders.avg_amount"], "dimensions": ["payments.method"]},
        """SELECT method, AVG(amount) FROM (
               SELECT DISTINCT pa.method, o.id, o.amount
               FROM orders o LEFT JOIN payments pa ON pa.order_id = o.id) AS t
           GROUP BY method""",
    ),
    (
        "totals-of-parent-and-child",
        {"measures": ["orders.order_count", "payments.payment_count", "line_items.line_count"]},
        """SELECT (SELECT COUNT(*) FROM orders), (SELECT COUNT(*) FROM payments),
                  (SELECT COUNT(*) FROM line_items)""",
    ),
    (
        "customer-count-by-order-status",
        {"measures": ["customers.customer_count"], "dimensions": ["orders.status"]},
        """SELECT status, COUNT(*) FROM (
               SELECT DISTINCT o.status, c.id FROM customers c
               LEFT JOIN orders o ON o.customer_id = c.id) AS t
           GROUP BY status""",
    ),
    (
        "products-sold-per-region",
        {"measures": ["products.product_count"], "dimensions": ["customers.region"]},
        """SELECT c.region, COUNT(DISTINCT p.id) FROM products p
           LEFT JOIN line_items li ON li.product_id = p.id
           LEFT JOIN orders o ON li.order_id = o.id
           LEFT JOIN customers c ON o.customer_id = c.id GROUP BY c.region""",
    ),
    (
        "fan-out-with-filter-on-the-far-side",
        {
            "measures": ["orders.revenue"],
            "dimensions": ["customers.region"],
            "filters": [{"field": "line_items.product_id", "op": "in", "values": [1, 2, 3]}],
        },
        """SELECT c.region, SUM(o.amount) FROM orders o
           LEFT JOIN customers c ON o.customer_id = c.id
           WHERE o.id IN (SELECT order_id FROM line_items WHERE product_id IN (1, 2, 3))
           GROUP BY c.region""",
    ),
]


@pytest.mark.parametrize(("query", "sql"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_fan_out_matches_hand_written_sql(db: Database, query: dict[str, object], sql: str) -> None:
    assert normalized(db.query(query)) == normalized(db.sql(sql))
