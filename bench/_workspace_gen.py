"""Deterministic generated workspaces for the compile and read benchmarks.

``generate_workspace(root, n)`` writes a workspace in the Oxy formats with ``n``
definition files (plus ``config.yml``), in a realistic mix modelled on the demo
workspace (``src/quarry/demo/template``):

=========  =====  ===========================================================
kind       share  shape
=========  =====  ===========================================================
workflow   50 %   3 ``execute_sql`` tasks on database ``local`` (two read their
                  own ``.sql`` file via ``sql_file``, one inline ``sql_query``)
                  and a ``formatter`` task
view       20 %   a semantic view over ``orders.csv`` (datasource ``local``):
                  1 entity, 6 dimensions, 4 measures
topic       5 %   a topic over 2 views
app        15 %   a control, 2 ``execute_sql`` tasks, 3 display blocks
agent      10 %   ``execute_sql`` + ``workflow`` tools, a file context (``.sql``)
=========  =====  ===========================================================

So a workspace of ``n`` definitions also holds about ``n`` ``.sql`` files and one
small CSV under the ``.db/`` dataset folder. Files are spread over sub-folders of at
most 250 files. Everything is a pure function of ``n``: two calls give the same bytes.

``touch_one_file(root)`` changes one workflow file (its description), the edit the
one-file recompile measures.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

SHARES = (("workflow", 50), ("view", 20), ("topic", 5), ("app", 15), ("agent", 10))
PER_DIR = 250

CONFIG = """\
databases:
  - name: local
    type: duckdb
    dataset: .db/

models:
  - name: openai-4o-mini
    vendor: openai
    model_ref: gpt-4o-mini
    key_var: OPENAI_API_KEY

defaults:
  database: local
"""

ORDERS_CSV = (
    "order_id,order_date,customer_id,region,product,category,quantity,unit_price\n"
    + "".join(
        f"{i},2024-{1 + i % 12:02d}-{1 + i % 28:02d},{100 + i % 37},"
        f"{('North', 'South', 'East', 'West')[i % 4]},product_{i % 19},category_{i % 5},"
        f"{1 + i % 7},{(i * 37) % 200 + 0.99:.2f}\n"
        for i in range(200)
    )
)


@dataclass(frozen=True)
class Layout:
    """How many definitions of each kind a workspace of ``n`` holds."""

    counts: dict[str, int]

    @classmethod
    def for_size(cls, n: int) -> Layout:
        counts = {kind: n * share // 100 for kind, share in SHARES}
        counts["workflow"] += n - sum(counts.values())  # rounding goes to workflows
        if n >= 3:  # a topic needs two views; an agent needs a workflow
            counts["view"] = max(counts["view"], 2)
            counts["workflow"] = n - sum(v for k, v in counts.items() if k != "workflow")
        return cls(counts)


def _folder(kind: str, i: int) -> str:
    return f"{kind}s/g{i // PER_DIR:03d}"


def workflow_path(i: int, suffix: str = "workflow") -> str:
    return f"{_folder('workflow', i)}/wf_{i:05d}.{suffix}.yml"


def workflow_name(i: int) -> str:
    """The definition name the read API serves workflow ``i`` under."""
    return f"{_folder('workflow', i)}/wf_{i:05d}"


def _sql_path(i: int, j: int) -> str:
    return f"queries/g{i // PER_DIR:03d}/q_{i:05d}_{j}.sql"


def _sql(i: int, j: int) -> str:
    if j == 0:
        return (
            f"-- Revenue per month for product_{i % 19} (query {i}.{j}).\n"
            "SELECT\n"
            "    strftime(order_date, '%Y-%m') AS month,\n"
            "    count(*) AS orders,\n"
            "    round(sum(quantity * unit_price), 2) AS revenue\n"
            "FROM 'orders.csv'\n"
            f"WHERE product = 'product_{i % 19}'\n"
            "GROUP BY month\n"
            "ORDER BY month\n"
        )
    return (
        f"-- Top customers of category_{i % 5} (query {i}.{j}).\n"
        "SELECT customer_id, region, round(sum(quantity * unit_price), 2) AS revenue\n"
        "FROM 'orders.csv'\n"
        f"WHERE category = 'category_{i % 5}'\n"
        "GROUP BY customer_id, region\n"
        "ORDER BY revenue DESC\n"
        f"LIMIT {5 + i % 10}\n"
    )


def _workflow(i: int, note: str = "") -> str:
    return f"""\
description: Generated workflow {i} - monthly revenue and top customers.{note}

tasks:
  - name: monthly
    type: execute_sql
    database: local
    sql_file: {_sql_path(i, 0)}

  - name: customers
    type: execute_sql
    database: local
    sql_file: {_sql_path(i, 1)}

  - name: regions
    type: execute_sql
    database: local
    sql_query: |
      SELECT region, count(*) AS orders
      FROM 'orders.csv'
      WHERE quantity >= {1 + i % 5}
      GROUP BY region
      ORDER BY orders DESC

  - name: summary
    type: formatter
    template: |
      # Workflow {i}

      {{{{ monthly }}}}

      {{{{ customers }}}}

      {{{{ regions }}}}
"""


def _view(i: int) -> str:
    return f"""\
name: orders_{i:05d}
label: Orders {i}
description: Order lines of the generated shop, view {i}.
datasource: local
table: orders.csv

entities:
  - name: order
    type: primary
    description: A single order.
    key: order_id

dimensions:
  - name: order_id
    type: number
    expr: order_id
  - name: order_date
    type: date
    expr: order_date
  - name: order_month
    type: string
    expr: strftime(order_date, '%Y-%m')
    samples: ["2024-01", "2024-12"]
  - name: region
    type: string
    expr: region
    samples: ["North", "South", "East", "West"]
    synonyms: ["area", "territory"]
  - name: product
    type: string
    expr: product
  - name: category
    type: string
    expr: category

measures:
  - name: order_count
    type: count
  - name: revenue
    type: sum
    expr: quantity * unit_price
    synonyms: ["sales"]
  - name: units_sold
    type: sum
    expr: quantity
  - name: unique_customers
    type: count_distinct
    expr: customer_id
"""


def _topic(i: int, n_views: int) -> str:
    a, b = (2 * i) % n_views, (2 * i + 1) % n_views
    return f"""\
name: sales_{i:05d}
description: Sales topic {i} over two generated views.
base_view: orders_{a:05d}
views:
  - orders_{a:05d}
  - orders_{b:05d}
"""


def _app(i: int) -> str:
    return f"""\
title: Generated app {i}
description: Revenue by region and month, app {i}.

controls:
  - name: region
    type: select
    label: Region
    options: ["All", "North", "South", "East", "West"]
    default: "All"

tasks:
  - name: monthly_revenue
    type: execute_sql
    database: local
    sql_query: |
      SELECT strftime(order_date, '%Y-%m') AS month,
             round(sum(quantity * unit_price), 2) AS revenue
      FROM 'orders.csv'
      WHERE '{{{{ controls.region }}}}' = 'All' OR region = '{{{{ controls.region }}}}'
      GROUP BY month
      ORDER BY month

  - name: by_category
    type: execute_sql
    database: local
    sql_query: |
      SELECT category, round(sum(quantity * unit_price), 2) AS revenue
      FROM 'orders.csv'
      GROUP BY category
      ORDER BY revenue DESC
      LIMIT {3 + i % 5}

display:
  - type: markdown
    content: |
      # App {i}
  - type: line_chart
    data: monthly_revenue
    x: month
    y: revenue
  - type: table
    data: by_category
    title: Revenue by category
"""


def _agent(i: int, n_workflows: int) -> str:
    w = i % n_workflows
    return f"""\
description: Generated analyst {i}.
model: openai-4o-mini

system_instructions: |
  You are data analyst number {i}. Answer questions about the shop's orders by
  writing DuckDB SQL and running it with the execute_sql tool.

tools:
  - name: execute_sql
    type: execute_sql
    database: local
  - name: report
    type: workflow
    workflow_ref: {workflow_path(w)}
    description: Monthly revenue and top customers.

context:
  - name: example_queries
    type: file
    src:
      - {_sql_path(w, 0)}
"""


def workspace_files(n: int) -> dict[str, str]:
    """Every file of the generated workspace of ``n`` definitions: path -> text."""
    counts = Layout.for_size(n).counts
    out: dict[str, str] = {"config.yml": CONFIG, ".db/orders.csv": ORDERS_CSV}
    for i in range(counts["workflow"]):
        out[workflow_path(i)] = _workflow(i)
        out[_sql_path(i, 0)] = _sql(i, 0)
        out[_sql_path(i, 1)] = _sql(i, 1)
    for i in range(counts["view"]):
        out[f"{_folder('view', i)}/orders_{i:05d}.view.yml"] = _view(i)
    for i in range(counts["topic"]):
        out[f"{_folder('topic', i)}/sales_{i:05d}.topic.yml"] = _topic(i, counts["view"])
    for i in range(counts["app"]):
        out[f"{_folder('app', i)}/app_{i:05d}.app.yml"] = _app(i)
    for i in range(counts["agent"]):
        out[f"{_folder('agent', i)}/agent_{i:05d}.agent.yml"] = _agent(i, counts["workflow"])
    return out


def generate_workspace(root: Path, n: int) -> dict[str, int]:
    """Write the workspace of ``n`` definitions into ``root``; returns counts per kind."""
    root.mkdir(parents=True, exist_ok=True)
    for rel, text in workspace_files(n).items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return dict(Layout.for_size(n).counts)


def touch_one_file(root: Path, generation: int) -> str:
    """Change one workflow's description (a real edit: new bytes, new body hash)."""
    rel = workflow_path(0)
    (root / rel).write_text(_workflow(0, f" Edit {generation}."), encoding="utf-8")
    return rel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("n", type=int)
    args = parser.parse_args()
    print(generate_workspace(args.root, args.n))


if __name__ == "__main__":
    main()
