"""Result tables compared as ``expected_sql`` cases compare them: column count and
values (names ignored), order only under ORDER BY, numbers within a tolerance."""

from __future__ import annotations

from decimal import Decimal

import pyarrow as pa
import pytest

from quarry.agents.evals_sql import last_executed_sql, ordered, tables_equal


def _t(**columns: list[object]) -> pa.Table:
    return pa.table(columns)


def test_names_and_row_order_are_ignored_values_are_not() -> None:
    want = _t(region=["N", "S"], n=[2, 1])
    assert tables_equal(_t(r=["S", "N"], total=[1.0, 2.0]), want, in_order=False)[0]
    equal, reason = tables_equal(_t(r=["S", "N"], total=[1, 3]), want, in_order=False)
    assert not equal and "differs" in reason
    assert not tables_equal(_t(r=["S", "N"], total=[1, 2]), want, in_order=True)[0]


@pytest.mark.parametrize(
    ("got", "equal"),
    [
        ([Decimal("10.50")], True),
        ([10.500000001], True),
        ([10.51], False),
        ([None], False),
    ],
    ids=["decimal", "within-tolerance", "beyond-tolerance", "null"],
)
def test_numbers_compare_within_a_tolerance(got: list[object], equal: bool) -> None:
    assert tables_equal(_t(x=got), _t(x=[10.5]), in_order=False)[0] is equal


def test_shape_differences_are_named() -> None:
    assert tables_equal(_t(a=[1], b=[2]), _t(a=[1]), in_order=False) == (
        False,
        "2 columns, expected 1",
    )
    assert tables_equal(_t(a=[1, 1]), _t(a=[1]), in_order=False) == (False, "2 rows, expected 1")
    assert tables_equal(_t(a=[None, "x"]), _t(a=["x", None]), in_order=False)[0]


def test_order_by_is_read_from_the_outermost_query() -> None:
    assert ordered("SELECT a FROM t ORDER BY a", "duckdb")
    assert not ordered("SELECT a FROM (SELECT a FROM t ORDER BY a) s", "postgres")
    assert not ordered("SELECT a FROM t", "postgres")


def test_the_last_successful_execute_sql_is_the_answer() -> None:
    events = [
        {"type": "tool_result", "name": "execute_sql", "database": "d", "sql": "A", "rows": 1},
        {"type": "tool_result", "name": "validate_sql", "database": "d", "sql": "V"},
        {"type": "tool_result", "name": "execute_sql", "error": "bad", "sql": "B"},
    ]
    found = last_executed_sql(events)
    assert found is not None and (found.database, found.sql) == ("d", "A")
    assert last_executed_sql([]) is None
