"""A small shop workspace for the semantic layer's integration: a DuckDB database
file (customers, orders, line items: one-to-many joins that fan out) shipped in the
revision, views and topics over it, a procedure and an app with ``semantic_query``
tasks, and the hand-written SQL each answer is checked against.

``datasource="pg"`` points the views at a PostgreSQL warehouse loaded with the same
rows instead, so the compiler writes the Postgres dialect and psycopg binds values.
"""

from __future__ import annotations

import random
import re
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb
import psycopg

CUSTOMERS = 40
ORDERS = 300
REGIONS = ("East", "North", "South", "West")
TENANTS = ("local", "acme", "globex")
ISO_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]00:00:00([+]00:00)?)?$")


def rows() -> dict[str, list[tuple[Any, ...]]]:
    rng = random.Random(16)
    customers = [(c, REGIONS[c % 4], TENANTS[c % 3]) for c in range(1, CUSTOMERS + 1)]
    orders = []
    items = []
    line = 0
    for o in range(1, ORDERS + 1):
        customer = rng.randint(1, CUSTOMERS)
        day = date(2023, 1, 1) + timedelta(days=rng.randint(0, 729))
        amount = round(rng.uniform(5, 500), 2)
        status = rng.choice(("complete", "returned", "pending"))
        orders.append((o, customer, day, amount, status, TENANTS[customer % 3]))
        for _ in range(rng.randint(1, 4)):
            line += 1
            items.append((line, o, rng.randint(1, 9)))
    return {"customers": customers, "orders": orders, "line_items": items}


DDL = {
    "customers": "customer_id INTEGER, region VARCHAR, tenant_code VARCHAR",
    "orders": "order_id INTEGER, customer_id INTEGER, order_date DATE, "
    "amount DECIMAL(10,2), status VARCHAR, tenant_code VARCHAR",
    "line_items": "line_id INTEGER, order_id INTEGER, qty INTEGER",
}


def write_duckdb(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(path)) as con:
        for table, data in rows().items():
            con.execute(f"CREATE TABLE {table} ({DDL[table]})")
            marks = ", ".join("?" for _ in data[0])
            con.executemany(f"INSERT INTO {table} VALUES ({marks})", data)


def load_postgres(conninfo: str) -> None:
    with psycopg.connect(conninfo, autocommit=True) as con:
        for table, data in rows().items():
            con.execute(f"DROP TABLE IF EXISTS {table}")
            con.execute(f"CREATE TABLE {table} ({DDL[table].replace('VARCHAR', 'TEXT')})")
            marks = ", ".join("%s" for _ in data[0])
            with con.cursor() as cur:
                cur.executemany(f"INSERT INTO {table} VALUES ({marks})", data)


CONFIG = """\
databases:
  - name: warehouse
    type: duckdb
    path: data/shop.duckdb
  # ships data/ (and so shop.duckdb) with the revision
  - name: files
    type: duckdb
    dataset: data/
  - name: pg
    type: postgres
    host_var: T_PGHOST
    port_var: T_PGPORT
    user_var: T_PGUSER
    database_var: T_PGDB
models: []
"""

ORDERS_VIEW = """\
name: orders
description: One row per order.
datasource: {ds}
table: orders
entities:
  - name: order
    type: primary
    description: An order.
    key: order_id
  - name: customer
    type: foreign
    description: Who ordered.
    key: customer_id
dimensions:
  - name: order_id
    type: number
    expr: order_id
  - name: status
    type: string
    expr: status
    description: complete, returned or pending.
  - name: order_date
    type: date
    expr: order_date
    description: The day of the order.
  - name: tenant_code
    type: string
    expr: tenant_code
  - name: is_large
    type: boolean
    expr: amount >= {{{{variables.threshold}}}}
    description: At least the threshold the query passes as variables.threshold.
measures:
  - name: revenue
    type: sum
    expr: amount
    description: Order amounts in USD.
  - name: order_count
    type: count
"""

CUSTOMERS_VIEW = """\
name: customers
description: One row per customer.
datasource: {ds}
table: customers
entities:
  - name: customer
    type: primary
    description: A customer.
    key: customer_id
dimensions:
  - name: customer_id
    type: number
    expr: customer_id
  - name: region
    type: string
    expr: region
    description: Sales region.
    synonyms: [area]
measures:
  - name: customer_count
    type: count
"""

LINE_ITEMS_VIEW = """\
name: line_items
description: One row per order line.
datasource: {ds}
table: line_items
entities:
  - name: line
    type: primary
    description: A line.
    key: line_id
  - name: order
    type: foreign
    description: The order of the line.
    key: order_id
dimensions:
  - name: line_id
    type: number
    expr: line_id
measures:
  - name: quantity
    type: sum
    expr: qty
"""

SALES_TOPIC = """\
name: sales
description: Orders, their customers and lines.
base_view: orders
views: [orders, customers, line_items]
"""

TENANT_ORDERS_VIEW = """\
name: tenant_orders
description: The orders again, for the row-filtered topic (a rule guards its views in
  every query, so the other topics stay unfiltered by reading other views).
datasource: {ds}
table: orders
entities:
  - name: tenant_order
    type: primary
    description: An order.
    key: order_id
dimensions:
  - name: status
    type: string
    expr: status
  - name: tenant_code
    type: string
    expr: tenant_code
measures:
  - name: revenue
    type: sum
    expr: amount
"""

SECURE_TOPIC = """\
name: tenant_sales
description: Orders, each tenant sees its own.
views: [tenant_orders]
security:
  row_filters:
    - member: tenant_orders.tenant_code
      attribute: tenant
"""

PROCEDURE = """\
variables:
  region:
    type: string
    default: East
  threshold:
    type: number
    default: 250
tasks:
  - name: by_month
    type: semantic_query
    topic: sales
    measures: [orders.revenue, orders.order_count]
    dimensions: [customers.region]
    time_dimensions:
      - dimension: orders.order_date
        granularity: month
    filters:
      - field: customers.region
        op: eq
        value: "{{ region }}"
      - field: orders.status
        op: in
        values: [complete, pending]
    orders:
      - field: orders.order_date
        direction: asc
    limit: 500
    export:
      path: exports/{{ region }}_by_month.csv
      format: csv
  - name: fanout
    type: semantic_query
    topic: sales
    measures: [orders.revenue, line_items.quantity]
    dimensions: [customers.region]
    orders:
      - field: customers.region
        direction: asc
  - name: large
    type: semantic_query
    topic: sales
    measures: [order_count]
    dimensions: [orders.is_large]
    variables:
      threshold: "{{ threshold }}"
    orders:
      - field: is_large
        direction: asc
    limit: 1
    offset: 1
"""

APP = """\
title: Semantic dashboard
controls:
  - name: status
    type: select
    options: [complete, returned, pending]
    default: complete
tasks:
  - name: by_region
    type: semantic_query
    topic: sales
    measures: [orders.revenue]
    dimensions: [customers.region]
    filters:
      - field: orders.status
        op: eq
        value: "{{ controls.status }}"
    orders:
      - field: customers.region
        direction: asc
display:
  - type: table
    data: by_region
"""


def make_shop(root: Path, *, datasource: str = "warehouse") -> Path:
    """Write the workspace at ``root`` (and its DuckDB file); return ``root``."""
    for folder in ("semantics", "workflows", "apps", "data"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    (root / "config.yml").write_text(CONFIG)
    for name, text in (
        ("orders.view.yml", ORDERS_VIEW),
        ("customers.view.yml", CUSTOMERS_VIEW),
        ("line_items.view.yml", LINE_ITEMS_VIEW),
        ("tenant_orders.view.yml", TENANT_ORDERS_VIEW),
    ):
        (root / "semantics" / name).write_text(text.format(ds=datasource))
    (root / "semantics" / "sales.topic.yml").write_text(SALES_TOPIC)
    (root / "semantics" / "tenant_sales.topic.yml").write_text(SECURE_TOPIC)
    (root / "workflows" / "semantic_report.procedure.yml").write_text(PROCEDURE)
    (root / "apps" / "semantic_dash.app.yml").write_text(APP)
    write_duckdb(root / "data" / "shop.duckdb")
    return root


# -- hand-written answers --------------------------------------------------------------

REVENUE_BY_REGION_MONTH = """
SELECT c.region, date_trunc('month', o.order_date) AS month,
       sum(o.amount) AS revenue, count(*) AS order_count
FROM orders o JOIN customers c ON c.customer_id = o.customer_id
WHERE c.region = ? AND o.status IN ('complete', 'pending')
GROUP BY 1, 2 ORDER BY 2
"""

FANOUT = """
SELECT c.region,
       (SELECT sum(o.amount) FROM orders o JOIN customers c2 USING (customer_id)
         WHERE c2.region = c.region) AS revenue,
       (SELECT sum(li.qty) FROM line_items li JOIN orders o USING (order_id)
         JOIN customers c3 USING (customer_id) WHERE c3.region = c.region) AS quantity
FROM (SELECT DISTINCT region FROM customers) c ORDER BY 1
"""

LARGE_ORDERS = """
SELECT amount >= ? AS is_large, count(*) AS order_count FROM orders
GROUP BY 1 ORDER BY 1 LIMIT 1 OFFSET 1
"""

REVENUE_BY_REGION_FOR_STATUS = """
SELECT c.region, sum(o.amount) AS revenue
FROM orders o JOIN customers c ON c.customer_id = o.customer_id
WHERE o.status = ? GROUP BY 1 ORDER BY 1
"""

REVENUE_BY_STATUS_FOR_TENANT = """
SELECT o.status, sum(o.amount) AS revenue FROM orders o
WHERE o.tenant_code = ? GROUP BY 1 ORDER BY 1
"""


def hand_written(root: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(root / "data" / "shop.duckdb"), read_only=True) as con:
        return [tuple(r) for r in con.execute(sql, list(params)).fetchall()]


def same(got: list[tuple[Any, ...]], want: list[tuple[Any, ...]]) -> bool:
    """Row by row, numbers compared as numbers (DECIMAL vs DOUBLE), dates as text."""

    def norm(v: Any) -> Any:
        if isinstance(v, (int, float)) or type(v).__name__ == "Decimal":
            return round(float(v), 6)
        if hasattr(v, "isoformat"):
            v = v.isoformat()
        if isinstance(v, str) and ISO_DAY.match(v):
            return v[:10]
        return v

    return [tuple(norm(v) for v in r) for r in got] == [tuple(norm(v) for v in r) for r in want]
