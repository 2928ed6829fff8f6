"""The Factory's semantic check points at the file and line of each problem."""

from __future__ import annotations

from pathlib import Path

from quarry.factory.semantic_checks import semantic_problems

VIEW = """\
name: orders
table: orders
datasource: warehouse
entities:
  - name: order
    type: primary
    key: id
dimensions:
  - name: id
    type: number
    expr: id
measures:
  - name: revenue
    type: sum
    expr: amount
"""
TOPIC = """\
name: sales
views:
  - orders
  - refunds
"""


def test_problems_are_reported_at_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "orders.view.yml").write_text(VIEW)
    (tmp_path / "sales.topic.yml").write_text(TOPIC)
    problems = semantic_problems(tmp_path, ["orders.view.yml", "sales.topic.yml"], {"local"})
    rendered = sorted(f"{p.path}:{p.line}: {p.message}" for p in problems)
    assert rendered == [
        "orders.view.yml:3: unknown database 'warehouse' (config.yml defines: local)",
        "sales.topic.yml:4: unknown view 'refunds'",
    ]


def test_a_valid_workspace_has_no_problems(tmp_path: Path) -> None:
    (tmp_path / "orders.view.yml").write_text(VIEW)
    assert semantic_problems(tmp_path, ["orders.view.yml"], {"warehouse"}) == []
