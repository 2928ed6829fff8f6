from __future__ import annotations

from datetime import date

import pytest

from quarry.runtime.connectors.base import BoundSql
from quarry.runtime.engine.templating import (
    TemplateProblem,
    condition,
    evaluate,
    render_sql,
    render_text,
    sqlquote,
)


@pytest.mark.parametrize(
    ("value", "literal"),
    [
        ("O'Brien", "'O''Brien'"),
        ("", "''"),
        (None, "NULL"),
        (True, "TRUE"),
        (False, "FALSE"),
        (42, "42"),
        (1.5, "1.5"),
        (date(2024, 1, 31), "'2024-01-31'"),
        (["a", "b'c", 3], "'a', 'b''c', 3"),
    ],
)
def test_sqlquote(value: object, literal: str) -> None:
    assert sqlquote(value) == literal


def test_sqlquote_refuses_nul() -> None:
    with pytest.raises(TemplateProblem, match="NUL"):
        render_text("{{ v | sqlquote }}", {"v": "a\x00b"})


def test_param_leaves_markers_and_collects_values_in_order() -> None:
    ctx = {"a": 1234, "b": "secret"}
    bound = render_sql("SELECT {{ param(a) }}, {{ b | param }}, {{ param(a) }}", ctx)
    assert bound.params == (1234, "secret", 1234)
    assert "1234" not in bound.text and "secret" not in bound.text
    assert bound.to_driver(lambda i: f"${i + 1}") == (
        "SELECT $1, $2, $3",
        [1234, "secret", 1234],
    )
    assert bound.display() == "SELECT $1, $2, $3"


def test_psycopg_form_escapes_percent_only_with_params() -> None:
    bound = render_sql("SELECT '100%' WHERE a LIKE 'x%' AND b = {{ v | param }}", {"v": "%"})
    assert bound.to_driver(lambda _i: "%s", escape_percent=True) == (
        "SELECT '100%%' WHERE a LIKE 'x%%' AND b = %s",
        ["%"],
    )
    plain = BoundSql("SELECT '100%'")
    assert plain.to_driver(lambda _i: "%s", escape_percent=True) == ("SELECT '100%'", [])


def test_user_text_that_looks_like_a_marker_is_not_one() -> None:
    bound = render_sql("SELECT '__qp0__', {{ v | param }}", {"v": 5})
    sql, params = bound.to_driver(lambda i: f"${i + 1}")
    assert sql == "SELECT '__qp0__', $1" and params == [5]


def test_undefined_names_are_errors_naming_them() -> None:
    with pytest.raises(TemplateProblem, match="'missing' is undefined"):
        render_text("hello {{ missing }}", {})
    with pytest.raises(TemplateProblem, match="'missing' is undefined"):
        evaluate("{{ missing }}", {})
    with pytest.raises(TemplateProblem, match="'missing' is undefined"):
        condition("missing > 1", {})


def test_sandbox_blocks_internals() -> None:
    with pytest.raises(TemplateProblem, match=r"SecurityError|unsafe"):
        render_text("{{ ''.__class__.__mro__[1].__subclasses__() }}", {})


def test_evaluate_keeps_types_of_single_expressions() -> None:
    ctx = {"n": 3, "xs": [1, 2], "name": "a"}
    assert evaluate("{{ n }}", ctx) == 3
    assert evaluate(" {{ xs }} ", ctx) == [1, 2]
    assert evaluate("n is {{ n }}", ctx) == "n is 3"
    assert evaluate({"k": "{{ name }}", "l": ["{{ n + 1 }}", 7]}, ctx) == {"k": "a", "l": [4, 7]}
    assert evaluate("{{ n }} and {{ n }}", ctx) == "3 and 3"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("n > 2", True),
        ("n > 5", False),
        ("{{ n > 2 }}", True),
        ("{{ n > 5 }}", False),
        ("{% if n %}yes{% endif %}", True),
        ("{{ '' }}", False),
        ("{{ 0 }}", False),
    ],
)
def test_condition(source: str, expected: bool) -> None:
    assert condition(source, {"n": 3}) is expected
