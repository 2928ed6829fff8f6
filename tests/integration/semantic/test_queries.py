"""Quarry's answer vs a hand-written one, on DuckDB and Postgres, for many query shapes.

Single views, multi-hop joins, every aggregation, custom and filtered measures, every
granularity, every filter operator (Oxy's and airlayer's spellings), default topic
filters, ordering and paging. ``TODAY`` is fixed so relative dates are too.
"""

from __future__ import annotations

import pytest

from quarry.semantic import RowFilter
from tests.integration.semantic.conftest import MODEL, Database, normalized, ordered

GRANULARITIES = ["second", "minute", "hour", "day", "week", "month", "quarter", "year"]

CASES: list[tuple[str, dict[str, object], str]] = [
    (
        "single-view",
        {"measures": ["orders.revenue"], "dimensions": ["orders.status"]},
        "SELECT status, SUM(amount) FROM orders GROUP BY status",
    ),
    (
        "every-aggregation",
        {
            "measures": [
                "orders.order_count",
                "orders.avg_amount",
                "orders.min_amount",
                "orders.max_amount",
                "orders.median_amount",
                "orders.buyers",
            ],
            "dimensions": ["orders.status"],
        },
        """SELECT status, COUNT(*), AVG(amount), MIN(amount), MAX(amount),
                  PERCENTILE_CONT(0.5) WITHIN GROUP (ORDER BY amount),
                  COUNT(DISTINCT customer_id)
           FROM orders GROUP BY status""",
    ),
    (
        "custom-measure-referring-to-measures",
        {"measures": ["orders.revenue_per_order"], "dimensions": ["orders.status"]},
        "SELECT status, SUM(amount) / NULLIF(COUNT(*), 0) FROM orders GROUP BY status",
    ),
    (
        "measure-with-filter",
        {"measures": ["orders.paid_revenue", "orders.revenue"], "dimensions": ["customers.region"]},
        """SELECT c.region, SUM(CASE WHEN o.status = 'paid' THEN o.amount END), SUM(o.amount)
           FROM orders o LEFT JOIN customers c ON o.customer_id = c.id GROUP BY c.region""",
    ),
    (
        "measure-with-two-filters",
        {"measures": ["orders.paid_orders"], "dimensions": ["orders.is_gift"]},
        """SELECT is_gift, COUNT(CASE WHEN status = 'paid' AND amount > 100 THEN 1 END)
           FROM orders GROUP BY is_gift""",
    ),
    (
        "multi-hop-many-to-one",
        {
            "measures": ["line_items.quantity", "line_items.median_qty"],
            "dimensions": ["customers.segment"],
        },
        """SELECT c.segment, SUM(li.qty), PERCENTILE_CONT(0.5) WITHIN GROUP (ORDER BY li.qty)
           FROM line_items li LEFT JOIN orders o ON li.order_id = o.id
           LEFT JOIN customers c ON o.customer_id = c.id GROUP BY c.segment""",
    ),
    (
        "dimensions-of-three-views",
        {
            "measures": ["line_items.line_revenue", "line_items.distinct_products"],
            "dimensions": ["customers.region", "products.category", "orders.status"],
        },
        """SELECT c.region, p.category, o.status, SUM(li.qty * li.unit_price),
                  COUNT(DISTINCT li.product_id)
           FROM line_items li LEFT JOIN orders o ON li.order_id = o.id
           LEFT JOIN customers c ON o.customer_id = c.id
           LEFT JOIN products p ON li.product_id = p.id
           GROUP BY c.region, p.category, o.status""",
    ),
    (
        "dimension-only",
        {"dimensions": ["customers.region", "customers.segment"]},
        "SELECT DISTINCT region, segment FROM customers",
    ),
    (
        "date-dimension-by-quarter",
        {
            "measures": ["customers.customer_count"],
            "time_dimensions": [{"dimension": "customers.signup_date", "granularity": "quarter"}],
        },
        "SELECT DATE_TRUNC('quarter', signup_date), COUNT(*) FROM customers GROUP BY 1",
    ),
    (
        "time-dimension-date-range",
        {
            "measures": ["orders.order_count"],
            "time_dimensions": [
                {
                    "dimension": "orders.created_at",
                    "granularity": "month",
                    "date_range": ["2023-03-01", "2023-05-31"],
                }
            ],
        },
        """SELECT DATE_TRUNC('month', created_at), COUNT(*) FROM orders
           WHERE created_at >= DATE '2023-03-01' AND created_at < DATE '2023-06-01'
           GROUP BY 1""",
    ),
    (
        "default-topic-filter",
        {"topic": "paid_sales", "measures": ["orders.revenue"], "dimensions": ["customers.region"]},
        """SELECT c.region, SUM(o.amount) FROM orders o
           LEFT JOIN customers c ON o.customer_id = c.id WHERE o.status = 'paid'
           GROUP BY c.region""",
    ),
    (
        "default-topic-filter-with-unqualified-topic-fields",
        {"topic": "paid_sales", "measures": ["orders.order_count"]},
        "SELECT COUNT(*) FROM orders WHERE status = 'paid'",
    ),
    (
        "measure-filter-is-applied-after-aggregation",
        {
            "measures": ["orders.revenue"],
            "dimensions": ["customers.name"],
            "filters": [{"field": "orders.revenue", "op": "gt", "value": 3000}],
        },
        """SELECT c.name, SUM(o.amount) FROM orders o LEFT JOIN customers c
           ON o.customer_id = c.id GROUP BY c.name HAVING SUM(o.amount) > 3000""",
    ),
    (
        "or-group-airlayer-shape",
        {
            "measures": ["orders.order_count"],
            "dimensions": ["orders.status"],
            "filters": [
                {
                    "or": [
                        {"member": "orders.status", "operator": "equals", "values": ["pending"]},
                        {
                            "and": [
                                {"member": "orders.amount", "operator": "gt", "values": ["400"]},
                                {
                                    "member": "orders.status",
                                    "operator": "notEquals",
                                    "values": ["pending"],
                                },
                            ]
                        },
                    ]
                }
            ],
        },
        """SELECT status, COUNT(*) FROM orders
           WHERE status = 'pending' OR (amount > 400 AND status <> 'pending') GROUP BY status""",
    ),
]

CASES += [
    (
        "segment",
        {
            "measures": ["orders.revenue"],
            "dimensions": ["orders.status"],
            "segments": ["orders.big"],
        },
        "SELECT status, SUM(amount) FROM orders WHERE amount > 300 GROUP BY status",
    ),
    (
        "variable-in-a-measure-filter-is-bound",
        {
            "measures": ["orders.orders_over"],
            "dimensions": ["orders.status"],
            "variables": {"min_amount": 250},
        },
        "SELECT status, COUNT(CASE WHEN amount > 250 THEN 1 END) FROM orders GROUP BY status",
    ),
    (
        "filter-on-a-measure-that-is-not-shown",
        {
            "measures": ["orders.order_count"],
            "dimensions": ["customers.name"],
            "filters": [{"field": "orders.revenue", "op": "gt", "value": 3000}],
        },
        """SELECT c.name, COUNT(*) FROM orders o LEFT JOIN customers c
           ON o.customer_id = c.id GROUP BY c.name HAVING SUM(o.amount) > 3000""",
    ),
    (
        "dimension-only-across-a-join",
        {"dimensions": ["customers.region", "orders.status"]},
        """SELECT DISTINCT c.region, o.status FROM orders o
           LEFT JOIN customers c ON o.customer_id = c.id""",
    ),
]

FILTERS: list[tuple[str, dict[str, object], str]] = [
    ("eq", {"field": "orders.status", "op": "eq", "value": "paid"}, "status = 'paid'"),
    ("neq", {"field": "orders.status", "op": "neq", "value": "paid"}, "status <> 'paid'"),
    ("gt", {"field": "orders.amount", "op": "gt", "value": 250}, "amount > 250"),
    ("gte", {"field": "orders.amount", "op": "gte", "value": "250.5"}, "amount >= 250.5"),
    ("lt", {"field": "orders.amount", "op": "lt", "value": 99.5}, "amount < 99.5"),
    ("lte", {"field": "orders.customer_id", "op": "lte", "value": 10}, "customer_id <= 10"),
    (
        "in",
        {"field": "orders.customer_id", "op": "in", "values": [1, 2, "3"]},
        "customer_id IN (1, 2, 3)",
    ),
    (
        "not_in",
        {"field": "orders.status", "op": "not_in", "values": ["paid", "pending"]},
        "status NOT IN ('paid', 'pending')",
    ),
    (
        "in_date_range-on-datetime-includes-the-whole-last-day",
        {
            "field": "orders.created_at",
            "op": "in_date_range",
            "from": "2023-02-01",
            "to": "2023-02-28",
        },
        "created_at >= DATE '2023-02-01' AND created_at < DATE '2023-03-01'",
    ),
    (
        "not_in_date_range",
        {
            "field": "orders.created_date",
            "op": "not_in_date_range",
            "from": "2023-01-01",
            "to": "2023-12-31",
        },
        "NOT (CAST(created_at AS DATE) >= DATE '2023-01-01'"
        " AND CAST(created_at AS DATE) <= DATE '2023-12-31')",
    ),
    (
        "relative-dates",
        {
            "field": "orders.created_at",
            "op": "in_date_range",
            "from": "6 months ago",
            "to": "today",
        },
        "created_at >= DATE '2024-01-15' AND created_at < DATE '2024-07-16'",
    ),
    (
        "relative-period",
        {"field": "orders.created_date", "op": "gte", "value": "last year"},
        "CAST(created_at AS DATE) >= DATE '2023-01-01'",
    ),
    (
        "eq-date-on-datetime-means-that-day",
        {"field": "orders.created_at", "op": "eq", "value": "2023-01-08"},
        "created_at >= DATE '2023-01-08' AND created_at < DATE '2023-01-09'",
    ),
    ("boolean", {"field": "orders.is_gift", "op": "eq", "value": "true"}, "is_gift"),
    (
        "contains-escapes-wildcards",
        {"member": "products.category", "operator": "contains", "values": ["0% C"]},
        "p.category LIKE '%0!% C%' ESCAPE '!'",
    ),
    (
        "starts_with",
        {"member": "customers.name", "operator": "startsWith", "values": ["Customer 1"]},
        "c.name LIKE 'Customer 1%'",
    ),
    (
        "ends_with",
        {"member": "customers.name", "operator": "endsWith", "values": ["7"]},
        "c.name LIKE '%7'",
    ),
    (
        "not_contains",
        {"member": "orders.status", "operator": "notContains", "values": ["ai"]},
        "status NOT LIKE '%ai%'",
    ),
    ("set", {"member": "customers.region", "operator": "set"}, "c.region IS NOT NULL"),
    ("not_set", {"member": "customers.region", "operator": "notSet"}, "c.region IS NULL"),
    (
        "before_date",
        {"member": "orders.created_at", "operator": "beforeDate", "values": ["2023-04-01"]},
        "created_at < DATE '2023-04-01'",
    ),
    (
        "after_or_on_date",
        {"member": "orders.created_date", "operator": "afterOrOnDate", "values": ["2024-05-01"]},
        "CAST(created_at AS DATE) >= DATE '2024-05-01'",
    ),
    (
        "equals-many-is-in",
        {"member": "orders.status", "operator": "equals", "values": ["paid", "refunded"]},
        "status IN ('paid', 'refunded')",
    ),
]

for name, filt, condition in FILTERS:
    CASES.append(
        (
            f"filter-{name}",
            {
                "measures": ["orders.revenue", "orders.order_count"],
                "dimensions": ["orders.status"],
                "filters": [filt],
            },
            f"""SELECT o.status, SUM(o.amount), COUNT(*) FROM orders o
                LEFT JOIN customers c ON o.customer_id = c.id
                WHERE o.id IN (SELECT o.id FROM orders o
                               LEFT JOIN customers c ON o.customer_id = c.id
                               LEFT JOIN line_items li ON li.order_id = o.id
                               LEFT JOIN products p ON li.product_id = p.id
                               WHERE {condition})
                GROUP BY o.status""",
        )
    )

for granularity in GRANULARITIES:
    CASES.append(
        (
            f"granularity-{granularity}",
            {
                "measures": ["orders.order_count", "orders.revenue"],
                "time_dimensions": [{"dimension": "orders.created_at", "granularity": granularity}],
            },
            f"SELECT DATE_TRUNC('{granularity}', created_at), COUNT(*), SUM(amount) "
            "FROM orders GROUP BY 1",
        )
    )


@pytest.mark.parametrize(("query", "sql"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_matches_hand_written_sql(db: Database, query: dict[str, object], sql: str) -> None:
    got = normalized(db.query(query))
    assert got, "the dataset should give every case some rows"
    assert got == normalized(db.sql(sql))


def test_there_are_at_least_forty_query_shapes() -> None:
    assert len(CASES) >= 40


def test_order_limit_offset(db: Database) -> None:
    query = {
        "measures": ["orders.revenue"],
        "dimensions": ["customers.name"],
        "orders": [
            {"field": "orders.revenue", "direction": "desc"},
            {"field": "customers.name", "direction": "asc"},
        ],
        "limit": 5,
        "offset": 2,
    }
    expected = """SELECT c.name, SUM(o.amount) AS r FROM orders o LEFT JOIN customers c
                  ON o.customer_id = c.id GROUP BY c.name ORDER BY r DESC, c.name ASC
                  LIMIT 5 OFFSET 2"""
    assert ordered(db.query(query)) == ordered(db.sql(expected))


def test_row_filter_limits_every_measure_view(db: Database) -> None:
    rules = MODEL.row_filters_for("secure", {"tenant": "acme"})
    secured = frozenset({"orders", "customers", "line_items", "products", "payments"})
    assert rules == [RowFilter("orders.tenant", ("acme",), secured)]
    query = {
        "topic": "secure",
        "measures": ["orders.revenue", "payments.paid_amount"],
        "dimensions": ["customers.region"],
    }
    expected = """
        WITH rev AS (SELECT c.region, SUM(o.amount) AS r FROM orders o
                     LEFT JOIN customers c ON o.customer_id = c.id
                     WHERE o.tenant = 'acme' GROUP BY c.region),
             pay AS (SELECT c.region, SUM(p.amount) AS a FROM payments p
                     LEFT JOIN orders o ON p.order_id = o.id
                     LEFT JOIN customers c ON o.customer_id = c.id
                     WHERE o.tenant = 'acme' GROUP BY c.region)
        SELECT rev.region, rev.r, pay.a FROM rev
        FULL JOIN pay ON COALESCE(rev.region, '~') = COALESCE(pay.region, '~')"""
    assert normalized(db.query(query, row_filters=tuple(rules))) == normalized(db.sql(expected))


def test_row_filter_cannot_be_escaped_with_an_or(db: Database) -> None:
    rules = tuple(MODEL.row_filters_for("secure", {"tenant": "acme"}))
    escape = {
        "topic": "secure",
        "measures": ["orders.order_count"],
        "dimensions": ["orders.tenant"],
        "filters": [
            {
                "or": [
                    {"field": "orders.tenant", "op": "eq", "value": "globex"},
                    {"field": "orders.tenant", "op": "neq", "value": "globex"},
                    {"field": "orders.status", "op": "set"},
                ]
            }
        ],
    }
    rows = db.query(escape, row_filters=rules)
    assert [r[0] for r in rows] == ["acme"]
    assert normalized(rows) == normalized(
        db.sql("SELECT tenant, COUNT(*) FROM orders WHERE tenant = 'acme' GROUP BY tenant")
    )


def test_row_filter_applies_to_dimension_only_queries(db: Database) -> None:
    rules = tuple(MODEL.row_filters_for("secure", {"tenant": "globex"}))
    rows = db.query(
        {"topic": "secure", "dimensions": ["orders.tenant", "orders.status"]}, row_filters=rules
    )
    assert {r[0] for r in rows} == {"globex"}


@pytest.mark.parametrize("topic", [None, "shop", "paid_sales"])
def test_row_filter_holds_whatever_topic_the_query_names(db: Database, topic: str | None) -> None:
    rules = tuple(MODEL.row_filters_for(topic, {"tenant": "acme"}))
    query: dict[str, object] = {"measures": ["orders.order_count"], "dimensions": ["orders.tenant"]}
    if topic:
        query["topic"] = topic
    assert {r[0] for r in db.query(query, row_filters=rules)} == {"acme"}
    products = db.query({"measures": ["products.product_count"]}, row_filters=rules)
    expected = """SELECT COUNT(DISTINCT li.product_id) FROM line_items li
                  JOIN orders o ON li.order_id = o.id WHERE o.tenant = 'acme'"""
    assert normalized(products) == normalized(db.sql(expected))


def test_a_principal_without_the_attribute_sees_nothing(db: Database) -> None:
    rules = tuple(MODEL.row_filters_for("secure", {}))
    rows = db.query({"topic": "secure", "measures": ["orders.order_count"]}, row_filters=rules)
    assert normalized(rows) == [(0.0,)]


def test_sql_in_a_string_value_is_only_a_value(db: Database) -> None:
    evil = "paid' OR '1'='1"
    rows = db.query(
        {
            "measures": ["orders.order_count"],
            "filters": [{"field": "orders.status", "op": "eq", "value": evil}],
        }
    )
    assert normalized(rows) == [(0.0,)]
    assert normalized(db.sql("SELECT COUNT(*) FROM orders")) == [(240.0,)]


def test_order_and_limit_on_measures_of_several_views(db: Database) -> None:
    query = {
        "measures": ["orders.revenue", "payments.paid_amount"],
        "dimensions": ["customers.region"],
        "orders": [{"field": "payments.paid_amount", "direction": "desc"}],
        "limit": 3,
    }
    expected = """
        WITH pay AS (SELECT c.region, SUM(p.amount) AS a FROM payments p
                     LEFT JOIN orders o ON p.order_id = o.id
                     LEFT JOIN customers c ON o.customer_id = c.id GROUP BY c.region),
             rev AS (SELECT c.region, SUM(o.amount) AS r FROM orders o
                     LEFT JOIN customers c ON o.customer_id = c.id GROUP BY c.region)
        SELECT pay.region, rev.r, pay.a FROM pay
        JOIN rev ON COALESCE(rev.region, '~') = COALESCE(pay.region, '~')
        ORDER BY pay.a DESC LIMIT 3"""
    assert ordered(db.query(query)) == ordered(db.sql(expected))


def test_a_view_defined_by_sql_with_a_bound_variable(db: Database) -> None:
    from quarry.definitions.models.semantic import ViewConfig
    from quarry.semantic import SemanticModel, SemanticQuery, compile_query

    view = ViewConfig.model_validate(
        {
            "name": "big_orders",
            "sql": "SELECT id, status, amount FROM orders WHERE amount > {{variables.floor}}",
            "entities": [{"name": "big_order", "type": "primary", "key": "id"}],
            "dimensions": [
                {"name": "id", "type": "number", "expr": "id"},
                {"name": "status", "type": "string", "expr": "status"},
            ],
            "measures": [{"name": "total", "type": "sum", "expr": "amount"}],
        }
    )
    model = SemanticModel.from_definitions([view], [])
    query = SemanticQuery.from_request(
        {
            "measures": ["big_orders.total"],
            "dimensions": ["big_orders.status"],
            "variables": {"floor": 400},
        }
    )
    compiled = compile_query(model, query, dialect=db.dialect)
    assert "400" not in compiled.text
    expected = "SELECT status, SUM(amount) FROM orders WHERE amount > 400 GROUP BY status"
    assert normalized(db.run(compiled)) == normalized(db.sql(expected))
