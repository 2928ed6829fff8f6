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


GOOD_VIEW = """\
name: orders
table: orders
meta: {owner: data-team}
entities:
  - name: order
    type: primary
    key: id
    tags: [core]
dimensions:
  - name: id
    type: number
    expr: id
    hidden: true
measures:
  - name: revenue
    type: sum
    expr: amount
    format: currency
    filters:
      - expr: "amount > 0"
        label: positive
"""


def test_unknown_view_keys_are_warnings_as_in_oxy() -> None:
    # Oxy's View/Entity/Dimension/Measure/MeasureFilter structs have no
    # deny_unknown_fields: Oxy ignores the keys, Quarry warns at each one.
    parsed = parse_definition("orders.view.yml", GOOD_VIEW.encode())
    found = [(w.line, w.column, w.message) for w in parsed.warnings]
    assert found == [
        (3, 1, "unknown field 'meta' is ignored (as Oxy ignores it)"),
        (8, 5, "unknown field 'tags' is ignored (as Oxy ignores it)"),
        (13, 5, "unknown field 'hidden' is ignored (as Oxy ignores it)"),
        (18, 5, "unknown field 'format' is ignored (as Oxy ignores it)"),
        (21, 9, "unknown field 'label' is ignored (as Oxy ignores it)"),
    ], found
    assert all(w.severity == "warning" for w in parsed.warnings)


def test_unknown_topic_keys_are_warnings_with_a_did_you_mean() -> None:
    text = (
        "name: sales\nviews: [orders]\nbase_veiw: orders\n"
        "default_filters:\n  - field: orders.status\n    eq: {value: paid}\n    comment: x\n"
    )
    parsed = parse_definition("sales.topic.yml", text.encode())
    found = [(w.line, w.message) for w in parsed.warnings]
    assert found == [
        (3, "unknown field 'base_veiw' is ignored (as Oxy ignores it); did you mean 'base_view'?"),
        (7, "unknown field 'comment' is ignored (as Oxy ignores it)"),
    ], found


def test_quarry_own_semantic_blocks_stay_strict() -> None:
    # segments and security rules are not in Oxy's model: a typo there must not be
    # silently dropped (a row filter that vanished would show every tenant's rows).
    text = (
        "name: sales\nviews: [orders]\nsecurity:\n  row_filters:\n"
        "    - member: orders.tenant\n      atribute: tenant\n"
    )
    found = problems("sales.topic.yml", text)
    assert any(p.startswith("6: ") and "atribute" in p for p in found), found


def test_plain_column_names_skip_the_parser_but_keywords_do_not() -> None:
    from quarry.definitions.semantic_rules import sql_error

    assert sql_error("amount") is None and sql_error("orders.customer_id") is None
    assert sql_error("from") is not None  # a keyword alone still goes to sqlglot
    assert sql_error("CASE WHEN THEN") is not None
    assert sql_error("CASE WHEN THEN") == sql_error("CASE WHEN THEN")  # remembered
