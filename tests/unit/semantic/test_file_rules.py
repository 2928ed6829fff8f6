"""airlayer's single-file rules fail the file's parse, at the line of the problem."""

from __future__ import annotations

import pytest

from quarry.core.errors import CompileFailed
from quarry.definitions.parse import parse_definition

VIEW = """\
name: orders
table: orders
entities:
  - name: order
    type: primary
    key: order_id
dimensions:
  - name: id
    type: number
    expr: id
  - name: note
    type: string
    expr: "CASE WHEN THEN"
measures:
  - name: revenue
    type: sum
  - name: paid
    type: count
    filters:
      - expr: "status = 'paid'"
"""


def problems(path: str, text: str) -> list[str]:
    with pytest.raises(CompileFailed) as caught:
        parse_definition(path, text.encode())
    return [f"{p.line}: {p.message}" for p in caught.value.problems]


def test_view_rules_are_reported_at_their_lines() -> None:
    found = problems("orders.view.yml", VIEW)
    assert any(p.startswith("13: not a valid SQL expression") for p in found)
    assert any(p.startswith("15: measure 'revenue' of type sum needs an expr") for p in found)
    assert len(found) == 2, found


def test_entity_keys_may_name_columns() -> None:
    # airlayer refuses a key that is not a dimension; Oxy's views often name the
    # column, and Quarry joins on it.
    assert not any("order_id" in p for p in problems("orders.view.yml", VIEW))


def test_table_and_sql_together_are_refused() -> None:
    text = VIEW.replace("table: orders\n", "table: orders\nsql: SELECT 1\n")
    assert any("both 'table' and 'sql'" in p for p in problems("orders.view.yml", text))


def test_dialect_specific_sql_is_accepted() -> None:
    text = (
        "name: v\ntable: t\nentities: []\ndimensions:\n"
        '  - name: d\n    type: string\n    expr: "`weird col`"\n'
        "  - name: e\n    type: number\n    expr: amount::INT\n"
    )
    assert parse_definition("v.view.yml", text.encode()).name == "v"


def test_topic_rules() -> None:
    text = (
        "name: sales\nviews: [orders]\nbase_view: customers\n"
        "default_filters:\n  - field: customers.region\n    eq: {value: East}\n"
    )
    found = problems("sales.topic.yml", text)
    assert any(p.startswith("3: base view 'customers'") for p in found)
    assert any(p.startswith("5: 'customers.region' is not a field") for p in found)
