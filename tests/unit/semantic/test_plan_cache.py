"""Plans are cached by the query's shape and bound afresh for each query's values:
a new filter value reuses the plan (counted), gives the SQL and parameters a fresh
compile gives, re-resolves relative dates on the day it is bound, and refuses a
value its member cannot take."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import pytest

from quarry.semantic import CompiledQuery, SemanticError, SemanticModel, SemanticQuery
from quarry.semantic import compile_query as compile_semantic
from tests.integration.semantic.conftest import TOPICS, VIEWS

DAY = date(2024, 7, 15)


def _model() -> SemanticModel:
    return SemanticModel.from_definitions(VIEWS, TOPICS)


def _compile(model: SemanticModel, body: dict[str, Any], today: date = DAY) -> CompiledQuery:
    query = SemanticQuery.from_request(body)
    return compile_semantic(model, query, dialect="duckdb", today=today)


def _query(status: str, since: str, amounts: list[Any]) -> dict[str, Any]:
    return {
        "measures": ["orders.revenue"],
        "dimensions": ["customers.region"],
        "filters": [
            {"field": "orders.status", "op": "contains", "value": status},
            {
                "or": [
                    {"field": "orders.created_at", "op": "gte", "value": since},
                    {"field": "orders.amount", "op": "in", "values": amounts},
                ]
            },
        ],
        "time_dimensions": [
            {"dimension": "orders.created_at", "date_range": ["2024-01-01", "2024-06-30"]}
        ],
        "variables": {"unused": "x"},
        "limit": 5,
    }


def test_same_shape_new_values_compiles_once_and_binds_what_a_fresh_compile_gives() -> None:
    model = _model()
    first = _compile(model, _query("paid", "2024-02-01", [1, 2]))
    second = _compile(model, _query("re_fund%", "2023-12-31", ["3.5", 4]))
    assert model.compiles == 1
    fresh = _compile(_model(), _query("re_fund%", "2023-12-31", ["3.5", 4]))
    assert (second.text, second.params, second.columns) == (
        fresh.text,
        fresh.params,
        fresh.columns,
    )
    assert second.text == first.text
    assert second.params != first.params
    assert "%re!_fund!%%" in second.params  # the LIKE pattern is escaped at bind time


def test_values_that_change_the_sql_are_part_of_the_shape() -> None:
    model = _model()
    _compile(model, _query("paid", "2024-02-01", [1, 2]))
    longer = _compile(model, _query("paid", "2024-02-01", [1, 2, 3]))
    assert model.compiles == 2  # an IN list of another length
    assert len(longer.params) == len(
        _compile(_model(), _query("x", "2024-02-01", [1, 2, 3])).params
    )
    moment = _compile(model, _query("paid", "2024-02-01T12:00:00", [1, 2]))
    assert model.compiles == 3  # a moment, not a whole day, on a datetime dimension
    day = _compile(
        model,
        {
            "measures": ["orders.revenue"],
            "filters": [{"field": "orders.created_at", "op": "eq", "value": "2024-02-01"}],
        },
    )
    assert day.params == (datetime(2024, 2, 1), datetime(2024, 2, 2))
    assert datetime(2024, 2, 1, 12) in moment.params


def test_relative_dates_are_resolved_when_bound_not_when_planned() -> None:
    model = _model()
    body = {
        "measures": ["orders.revenue"],
        "filters": [{"field": "orders.created_date", "op": "gte", "value": "7 days ago"}],
    }
    monday = _compile(model, body, today=date(2024, 7, 15))
    later = _compile(model, body, today=date(2024, 9, 1))
    assert model.compiles == 1
    assert monday.params == (date(2024, 7, 8),)
    assert later.params == (date(2024, 8, 25),)
    absolute = _compile(
        model,
        {
            "measures": ["orders.revenue"],
            "filters": [{"field": "orders.created_date", "op": "gte", "value": "2020-01-01"}],
        },
    )
    assert model.compiles == 1 and absolute.params == (date(2020, 1, 1),)


@pytest.mark.parametrize(
    ("field", "value"),
    [("orders.amount", "1 OR 1=1"), ("orders.is_gift", "maybe"), ("orders.amount", "nan")],
)
def test_a_bad_value_on_a_cached_shape_is_refused_naming_the_member(field: str, value: str) -> None:
    model = _model()
    good = {"false": "false", "1 OR 1=1": "10", "nan": "10", "maybe": "true"}[value]

    def body(given: str) -> dict[str, Any]:
        return {
            "measures": ["orders.revenue"],
            "filters": [{"field": field, "op": "eq", "value": given}],
        }

    _compile(model, body(good))
    with pytest.raises(SemanticError) as caught:
        _compile(model, body(value))
    assert field in caught.value.message
    assert model.compiles == 1


def test_variables_are_bound_per_query() -> None:
    model = _model()
    body: dict[str, Any] = {"measures": ["orders.orders_over"]}
    small = _compile(model, {**body, "variables": {"min_amount": 100}})
    big = _compile(model, {**body, "variables": {"min_amount": 250}})
    assert model.compiles == 1
    assert (small.params, big.params) == ((100,), (250,))
    with pytest.raises(SemanticError, match="min_amount"):
        _compile(model, body)
