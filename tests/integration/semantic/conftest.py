"""A shop with joins that fan out, loaded into real DuckDB and a real Postgres database.

customers 1-n orders 1-n line_items n-1 products, and orders 1-n payments: a
measure of ``orders`` grouped by anything on ``line_items`` or ``payments`` (or both)
repeats order rows, which is exactly where a flat join gets numbers wrong.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import duckdb
import psycopg
import pytest

from quarry.definitions.models.semantic import TopicConfig, ViewConfig
from quarry.runtime.connectors.base import BoundSql
from quarry.semantic import CompiledQuery, RowFilter, SemanticModel, SemanticQuery, compile_query
from tests.support.services import PG_ADMIN_DSN, create_database, drop_database

TODAY = date(2024, 7, 15)

_SCHEMA = [
    "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT, region TEXT, segment TEXT,"
    " signup_date DATE)",
    "CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT, category TEXT,"
    " price NUMERIC(10, 2))",
    "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER, status TEXT,"
    " amount NUMERIC(10, 2), created_at TIMESTAMP, tenant TEXT, is_gift BOOLEAN)",
    "CREATE TABLE line_items (id INTEGER PRIMARY KEY, order_id INTEGER, product_id INTEGER,"
    " qty INTEGER, unit_price NUMERIC(10, 2))",
    "CREATE TABLE payments (id INTEGER PRIMARY KEY, order_id INTEGER, method TEXT,"
    " amount NUMERIC(10, 2))",
]


def _rows() -> dict[str, list[tuple[Any, ...]]]:
    rnd = random.Random(16)
    regions = ["East", "West", "North", "South", None]
    customers = [
        (
            i,
            f"Customer {i}",
            regions[i % 5],
            "smb" if i % 3 else "enterprise",
            date(2022, 1, 1) + timedelta(days=17 * i),
        )
        for i in range(1, 31)
    ]
    categories = ["Books", "Garden", "Toys", "100% Cotton"]
    products = [
        (i, f"Product {i}", categories[i % 4], Decimal(rnd.randint(200, 9000)) / 100)
        for i in range(1, 13)
    ]
    orders, items, payments = [], [], []
    start = datetime(2023, 1, 1)
    item_id = payment_id = 0
    for i in range(1, 241):
        created = start + timedelta(minutes=rnd.randint(0, 60 * 24 * 600))
        status = rnd.choice(["paid", "paid", "paid", "refunded", "pending"])
        amount = Decimal(rnd.randint(500, 50000)) / 100
        orders.append(
            (
                i,
                rnd.randint(1, 30),
                status,
                amount,
                created,
                "acme" if i % 2 else "globex",
                i % 7 == 0,
            )
        )
        for _ in range(rnd.randint(0, 4)):  # some orders have no line items
            item_id += 1
            product = rnd.choice(products)
            items.append((item_id, i, product[0], rnd.randint(1, 5), product[3]))
        for _ in range(rnd.randint(1, 3)):
            payment_id += 1
            payments.append(
                (
                    payment_id,
                    i,
                    rnd.choice(["card", "cash", "wire"]),
                    Decimal(rnd.randint(100, 20000)) / 100,
                )
            )
    return {
        "customers": customers,
        "products": products,
        "orders": orders,
        "line_items": items,
        "payments": payments,
    }


ROWS = _rows()


def _view(data: dict[str, Any]) -> ViewConfig:
    return ViewConfig.model_validate(data)


def _dim(name: str, type_: str = "number", expr: str | None = None) -> dict[str, str]:
    return {"name": name, "type": type_, "expr": expr or name}


VIEWS = [
    _view(
        {
            "name": "orders",
            "description": "One row per order.",
            "datasource": "shop",
            "table": "orders",
            "entities": [
                {"name": "order", "type": "primary", "key": "id"},
                {"name": "customer", "type": "foreign", "key": "customer_id"},
            ],
            "dimensions": [
                _dim("id"),
                _dim("customer_id"),
                _dim("status", "string"),
                _dim("amount"),
                _dim("created_at", "datetime"),
                _dim("created_date", "date", "CAST(created_at AS DATE)"),
                _dim("tenant", "string"),
                _dim("is_gift", "boolean"),
            ],
            "measures": [
                {"name": "revenue", "type": "sum", "expr": "amount"},
                {"name": "order_count", "type": "count"},
                {"name": "avg_amount", "type": "average", "expr": "amount"},
                {"name": "median_amount", "type": "median", "expr": "amount"},
                {"name": "min_amount", "type": "min", "expr": "amount"},
                {"name": "max_amount", "type": "max", "expr": "amount"},
                {"name": "buyers", "type": "count_distinct", "expr": "customer_id"},
                {
                    "name": "paid_revenue",
                    "type": "sum",
                    "expr": "amount",
                    "filters": [{"expr": "status = 'paid'"}],
                },
                {
                    "name": "paid_orders",
                    "type": "count",
                    "filters": [{"expr": "status = 'paid'"}, {"expr": "amount > 100"}],
                },
                {
                    "name": "revenue_per_order",
                    "type": "custom",
                    "expr": "{{orders.revenue}} / NULLIF({{orders.order_count}}, 0)",
                },
                {
                    "name": "orders_over",
                    "type": "count",
                    "filters": [{"expr": "amount > {{variables.min_amount}}"}],
                },
            ],
            "segments": [{"name": "big", "expr": "{{TABLE}}.amount > 300"}],
        }
    ),
    _view(
        {
            "name": "line_items",
            "description": "One row per product line of an order.",
            "datasource": "shop",
            "table": "line_items",
            "entities": [
                {"name": "line_item", "type": "primary", "key": "id"},
                {"name": "order", "type": "foreign", "key": "order_id"},
                {"name": "product", "type": "foreign", "key": "product_id"},
            ],
            "dimensions": [_dim("id"), _dim("order_id"), _dim("product_id"), _dim("qty")],
            "measures": [
                {"name": "quantity", "type": "sum", "expr": "qty"},
                {"name": "line_count", "type": "count"},
                {"name": "line_revenue", "type": "sum", "expr": "qty * unit_price"},
                {"name": "median_qty", "type": "median", "expr": "qty"},
                {"name": "distinct_products", "type": "count_distinct", "expr": "product_id"},
            ],
        }
    ),
    _view(
        {
            "name": "customers",
            "description": "One row per customer.",
            "datasource": "shop",
            "table": "customers",
            "entities": [{"name": "customer", "type": "primary", "key": "id"}],
            "dimensions": [
                _dim("id"),
                _dim("name", "string"),
                _dim("region", "string"),
                _dim("segment", "string"),
                _dim("signup_date", "date"),
            ],
            "measures": [{"name": "customer_count", "type": "count"}],
        }
    ),
    _view(
        {
            "name": "products",
            "description": "One row per product.",
            "datasource": "shop",
            "table": "products",
            "entities": [{"name": "product", "type": "primary", "key": "id"}],
            "dimensions": [_dim("id"), _dim("name", "string"), _dim("category", "string")],
            "measures": [
                {"name": "product_count", "type": "count"},
                {"name": "avg_price", "type": "average", "expr": "price"},
            ],
        }
    ),
    _view(
        {
            "name": "payments",
            "description": "One row per payment of an order.",
            "datasource": "shop",
            "table": "payments",
            "entities": [
                {"name": "payment", "type": "primary", "key": "id"},
                {"name": "order", "type": "foreign", "key": "order_id"},
            ],
            "dimensions": [_dim("id"), _dim("order_id"), _dim("method", "string")],
            "measures": [
                {"name": "paid_amount", "type": "sum", "expr": "amount"},
                {"name": "payment_count", "type": "count"},
            ],
        }
    ),
]

TOPICS = [
    TopicConfig.model_validate(
        {
            "name": "shop",
            "description": "Everything.",
            "views": ["orders", "line_items", "customers", "products", "payments"],
        }
    ),
    TopicConfig.model_validate(
        {
            "name": "paid_sales",
            "description": "Paid orders only.",
            "views": ["orders", "customers", "line_items"],
            "default_filters": [{"field": "orders.status", "eq": {"value": "paid"}}],
        }
    ),
    TopicConfig.model_validate(
        {
            "name": "secure",
            "description": "Orders each tenant may see.",
            "views": ["orders", "customers", "line_items", "products", "payments"],
            "security": {"row_filters": [{"member": "orders.tenant", "attribute": "tenant"}]},
        }
    ),
]

MODEL = SemanticModel.from_definitions(VIEWS, TOPICS)


@dataclass
class Database:
    """One loaded database: run a compiled query or hand-written SQL on it."""

    name: str
    dialect: str
    execute: Callable[[str, list[Any]], list[tuple[Any, ...]]]

    def run(self, compiled: CompiledQuery) -> list[tuple[Any, ...]]:
        bound = BoundSql(text=compiled.text, params=compiled.params, token=compiled.token)
        if self.dialect == "postgres":
            text, values = bound.to_driver(lambda i: "%s", escape_percent=True)
        else:
            text, values = bound.to_driver(lambda i: f"${i + 1}")
        return self.execute(text, values)

    def query(
        self,
        query: dict[str, Any],
        *,
        row_filters: tuple[RowFilter, ...] = (),
    ) -> list[tuple[Any, ...]]:
        compiled = compile_query(
            MODEL,
            SemanticQuery.from_request(query),
            dialect=self.dialect,
            row_filters=row_filters,
            today=TODAY,
        )
        return self.run(compiled)

    def sql(self, text: str) -> list[tuple[Any, ...]]:
        return self.execute(text, [])


def _load_duckdb() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    for statement in _SCHEMA:
        con.execute(statement)
    for table, rows in ROWS.items():
        marks = ", ".join(f"${i + 1}" for i in range(len(rows[0])))
        con.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
    return con


@pytest.fixture(scope="session", params=["duckdb", "postgres"])
def db(request: pytest.FixtureRequest) -> Iterator[Database]:
    if request.param == "duckdb":
        con = _load_duckdb()

        def run_duck(text: str, values: list[Any]) -> list[tuple[Any, ...]]:
            return con.execute(text, values).fetchall()

        yield Database("duckdb", "duckdb", run_duck)
        con.close()
        return
    name = create_database()
    dsn = PG_ADMIN_DSN.rsplit("/", 1)[0] + "/" + name
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            for statement in _SCHEMA:
                conn.execute(statement)
            for table, rows in ROWS.items():
                marks = ", ".join(["%s"] * len(rows[0]))
                with conn.cursor() as cur:
                    cur.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)

            def run_pg(text: str, values: list[Any]) -> list[tuple[Any, ...]]:
                with conn.cursor() as cur:
                    cur.execute(text, values or None)
                    return cur.fetchall() if cur.description else []

            yield Database("postgres", "postgres", run_pg)
    finally:
        drop_database(name)


def normalized(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Rows comparable across drivers: numbers rounded, times naive, order fixed."""

    def one(value: Any) -> Any:
        if isinstance(value, bool) or value is None:
            return value
        if isinstance(value, (int, float, Decimal)):
            return round(float(value), 6)
        if isinstance(value, datetime):
            return value.replace(tzinfo=None).isoformat(sep=" ")
        if isinstance(value, date):
            return datetime(value.year, value.month, value.day).isoformat(sep=" ")
        return value

    return sorted((tuple(one(v) for v in row) for row in rows), key=repr)


def ordered(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Like :func:`normalized` but keeps the row order (for ORDER BY checks)."""
    return [tuple(normalized([row])[0]) for row in rows]


def tokens_in(text: str, token: str) -> list[int]:
    return [int(i) for i in re.findall(re.escape(token) + r"(\d+)" + re.escape(token), text)]
