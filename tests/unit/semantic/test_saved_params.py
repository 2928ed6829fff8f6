"""Saved-query ``params`` are substituted into the step's structured query and then
bound like any filter value: never written into the SQL text, and every mistake names
the parameter."""

from __future__ import annotations

from typing import Any

import pytest

from quarry.definitions.models.semantic import SavedQueryConfig
from quarry.semantic import SemanticError, SemanticModel, compile_saved_query, saved_step_query
from quarry.semantic.validate import validate_model
from tests.integration.semantic.conftest import TOPICS, VIEWS

SAVED = {
    "name": "investigation",
    "params": {
        "status": {"type": "string", "values": ["paid", "returned"], "default": "paid"},
        "time_range": {"type": "date_range", "default": ["2024-01-01", "2024-03-31"]},
        "metric": {"type": "string", "values": ["revenue", "order_count"], "default": "revenue"},
        "min_amount": {"type": "number"},
        "top": {"type": "number", "default": 5},
    },
    "steps": [
        {
            "name": "by_region",
            "query": {
                "measures": ["orders.{{ metric }}"],
                "dimensions": ["customers.region"],
                "filters": [
                    {"field": "orders.status", "op": "eq", "value": "{{ params.status }}"},
                    {
                        "member": "orders.created_at",
                        "operator": "inDateRange",
                        "values": "{{ time_range }}",
                    },
                ],
                "limit": "{{ top }}",
            },
        },
        {
            "name": "big",
            "query": {
                "measures": ["orders.revenue"],
                "filters": [{"field": "orders.amount", "op": "gt", "value": "{{ min_amount }}"}],
            },
        },
    ],
}


def model(saved: dict[str, Any] = SAVED) -> SemanticModel:
    return SemanticModel.from_definitions(
        VIEWS, TOPICS, saved_queries=[SavedQueryConfig.model_validate(saved)]
    )


def test_defaults_and_given_values_are_bound_not_formatted() -> None:
    query = saved_step_query(model(), "investigation", "by_region")
    assert list(query.measures) == ["orders.revenue"]
    plans = dict(
        compile_saved_query(
            model(),
            "investigation",
            dialect="postgres",
            params={"status": "returned", "min_amount": 100, "metric": "order_count"},
        )
    )
    region = plans["by_region"]
    assert "returned" not in region.text and "2024-01-01" not in region.text
    assert "returned" in region.params
    assert "LIMIT 5" in region.text.upper()
    assert any("order_count" in c.name for c in region.columns)
    big = plans["big"]
    assert 100 in big.params and "100" not in big.text


def test_sql_in_a_value_is_only_a_value() -> None:
    saved = {**SAVED, "params": {**SAVED["params"], "status": {"type": "string"}}}
    plans = dict(
        compile_saved_query(
            model(saved),
            "investigation",
            dialect="duckdb",
            params={"status": "paid' OR '1'='1", "min_amount": 1},
        )
    )
    assert "paid' OR '1'='1" in plans["by_region"].params
    assert "OR '1'='1" not in plans["by_region"].text


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"min_amount": "lots"}, "parameter 'min_amount' (number): must be a number"),
        ({"min_amount": 1, "status": "pending"}, "parameter 'status' (string): must be one of"),
        ({"min_amount": 1, "colour": "red"}, "has no parameter 'colour'"),
        ({"min_amount": 1, "time_range": [1, 2]}, "parameter 'time_range' (date_range)"),
        ({}, "needs parameter 'min_amount' (it has no default)"),
        ({"min_amount": 1, "metric": "orders.revenue; DROP"}, "parameter 'metric'"),
    ],
)
def test_bad_values_name_the_parameter(params: dict[str, Any], message: str) -> None:
    with pytest.raises(SemanticError) as caught:
        compile_saved_query(model(), "investigation", dialect="duckdb", params=params)
    assert message in caught.value.message
    assert caught.value.status_code == 400


def test_a_date_range_parameter_is_two_dates_absolute_or_relative() -> None:
    for value in ("2024-02-01,2024-02-29", ["2024-02-01", "2024-02-29"], ["3 months ago", "today"]):
        query = saved_step_query(
            model(), "investigation", "by_region", {"time_range": value, "min_amount": 1}
        )
        assert query.filters
    with pytest.raises(SemanticError, match="parameter 'time_range'"):
        saved_step_query(model(), "investigation", "by_region", {"time_range": "last month"})


def test_validation_checks_placeholders_and_defaults() -> None:
    bad = {
        "name": "investigation",
        "params": {"n": {"type": "number", "default": "many"}},
        "steps": [
            {"name": "s", "query": {"measures": ["orders.revenue"], "limit": "{{ nn }}"}},
        ],
    }
    found = [str(p) for p in validate_model(model(bad), None)]
    assert any("params.n.default" in p and "parameter 'n'" in p for p in found), found
    assert any("uses parameter 'nn', which params do not declare" in p for p in found), found
    assert not [str(p) for p in validate_model(model(), None) if "investigation" in str(p)]
