from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from quarry.runtime.connectors.base import BoundSql
from quarry.runtime.engine.template_clock import make_now
from quarry.runtime.engine.templating import (
    TemplateProblem,
    condition,
    evaluate,
    render_sql,
    render_text,
    set_default_strict,
    sqlquote,
    strict_templates,
)


@pytest.mark.parametrize(
    ("value", "literal"),
    [
        # Oxy's sqlquote: the value's text, single quotes doubled, in single quotes.
        ("O'Brien", "'O''Brien'"),
        ("", "''"),
        (None, "''"),
        (True, "'true'"),
        (False, "'false'"),
        (42, "'42'"),
        (1.5, "'1.5'"),
        (2.0, "'2.0'"),
        (1e20, "'100000000000000000000.0'"),
        (date(2024, 1, 31), "'2024-01-31'"),
        (["a", "b'c", 3], "'[\"a\", \"b''c\", 3]'"),
        ({"k": None}, "'{\"k\": none}'"),
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


def test_undefined_names_are_lenient_as_in_oxy() -> None:
    # Changed on purpose (issue #15): Oxy's renderer prints an undefined name as
    # nothing and treats it as false; strict mode is the opt-in for errors.
    assert render_text("hello {{ missing }}", {}) == "hello "
    assert evaluate("{{ missing }}", {}) is None
    assert condition("missing > 1", {}) is False
    assert render_sql("SELECT {{ missing | sqlquote }}", {}).text == "SELECT ''"


def test_strict_mode_makes_undefined_names_errors_naming_them() -> None:
    with pytest.raises(TemplateProblem, match="`missing` is undefined"):
        render_text("hello {{ missing }}", {}, strict=True)
    with pytest.raises(TemplateProblem, match="`missing` is undefined"):
        evaluate("{{ missing }}", {}, strict=True)
    with pytest.raises(TemplateProblem, match="`missing` is undefined"):
        condition("missing > 1", {}, strict=True)
    with pytest.raises(TemplateProblem, match="`missing` is undefined"):
        render_sql("SELECT {{ missing }}", {}, strict=True)


@pytest.fixture
def default_strict() -> Iterator[None]:
    set_default_strict(True)
    try:
        yield
    finally:
        set_default_strict(False)


def test_strict_mode_for_a_block_and_for_the_process(default_strict: None) -> None:
    with pytest.raises(TemplateProblem, match="`x` is undefined"):
        render_text("{{ x }}", {})
    assert render_text("{{ x }}", {}, strict=False) == ""
    set_default_strict(False)
    assert render_text("{{ x }}", {}) == ""
    with strict_templates(True), pytest.raises(TemplateProblem, match="`x` is undefined"):
        render_text("{{ x }}", {})
    with strict_templates(None):
        assert render_text("{{ x }}", {}) == ""
    # A step of a lenient workspace inside a strict block stays strict.
    with strict_templates(True), strict_templates(False), pytest.raises(TemplateProblem):
        render_text("{{ x }}", {})
    assert render_text("{{ x }}", {}) == ""


def test_errors_name_the_line() -> None:
    with pytest.raises(TemplateProblem, match=r"SyntaxError: .*\(line 3\)"):
        render_text("a\nb\n{{ 1 + }}", {})


def test_param_outside_sql_is_refused() -> None:
    with pytest.raises(TemplateProblem, match="param binds values in SQL only"):
        render_text("{{ 1 | param }}", {})


def test_param_binds_plain_values_from_views() -> None:
    bound = render_sql("{{ param(xs) }} {{ m | param }}", {"xs": [1, "a"], "m": {"k": [2]}})
    assert bound.params == ([1, "a"], {"k": [2]})
    assert all(type(p) in (list, dict) for p in bound.params)


FIXED = datetime(2024, 10, 21, 15, 30, 45, 123000, tzinfo=UTC)
PLUS_0930 = timezone(timedelta(hours=9, minutes=30))


@pytest.mark.parametrize(
    ("kwargs", "text"),
    [
        ({}, "2024-10-21T15:30:45.123+00:00"),
        ({"utc": True}, "2024-10-21T15:30:45.123+00:00"),
        ({"fmt": "%Y-%m-%d"}, "2024-10-21"),
        ({"fmt": "%Y-%m-%d %H:%M:%S"}, "2024-10-21 15:30:45"),
        ({"fmt": "%A, %B %d, %Y"}, "Monday, October 21, 2024"),
        ({"fmt": "%I:%M %p"}, "03:30 PM"),
        ({"fmt": "%f|%.f|%.3f|%6f|%%"}, "123000000|.123|.123|123000|%"),
        ({"fmt": "%:z|%z|%::z|%#z", "utc": True}, "+00:00|+0000|+00:00:00|+00"),
        ({"fmt": "%Z", "utc": True}, "UTC"),
        ({"fmt": "%s"}, str(int(FIXED.timestamp()))),
    ],
)
def test_now_formats_as_chrono(kwargs: dict[str, object], text: str) -> None:
    now = make_now(lambda _utc: FIXED)
    assert now(**kwargs) == text


def test_now_in_local_time_keeps_the_offset() -> None:
    local = datetime(2024, 1, 2, 3, 4, 5, tzinfo=PLUS_0930)
    now = make_now(lambda _utc: local)
    assert now() == "2024-01-02T03:04:05+09:30"
    assert now(fmt="%H:%M %Z %:z") == "03:04 +09:30 +09:30"
    microseconds = make_now(lambda _utc: local.replace(microsecond=5))
    assert microseconds() == "2024-01-02T03:04:05.000005+09:30"


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
