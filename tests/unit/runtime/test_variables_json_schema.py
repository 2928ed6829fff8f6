"""Run-time variable values are checked against the whole of their JSON Schema
(issue #15: ``jsonschema``, not a subset); each error names workflow and variable."""

from __future__ import annotations

from typing import Any

import pytest

from quarry.runtime.engine.errors import VariableError
from quarry.runtime.engine.variables import resolve_variables

SCHEMAS: dict[str, dict[str, Any]] = {
    "code": {"type": "string", "pattern": "^[A-Z]{2}$", "default": "EU"},
    "window": {
        "type": "object",
        "enum": [{"from": "2024-01", "to": "2024-06"}, {"from": "2024-07", "to": "2024-12"}],
        "default": {"from": "2024-01", "to": "2024-06"},
    },
    "share": {"type": "number", "exclusiveMinimum": 0, "multipleOf": 0.25, "default": 0.5},
    "limit": {"oneOf": [{"type": "integer", "minimum": 1}, {"const": "all"}], "default": "all"},
    "filter": {
        "type": "object",
        "properties": {"field": {"type": "string"}, "op": {"enum": ["eq", "ne"]}},
        "required": ["field", "op"],
        "additionalProperties": False,
        "default": {"field": "region", "op": "eq"},
    },
    "tags": {"type": "array", "uniqueItems": True, "maxItems": 3, "default": []},
}


def test_values_fitting_the_full_schema_are_accepted() -> None:
    values = resolve_variables(
        "wf",
        SCHEMAS,
        {
            "code": "US",
            "window": {"from": "2024-07", "to": "2024-12"},
            "share": 0.75,
            "limit": 20,
            "filter": {"field": "product", "op": "ne"},
            "tags": ("a", "b"),  # a tuple, as a template may give, is an array
        },
    )
    assert values["limit"] == 20 and values["code"] == "US"
    assert resolve_variables("wf", SCHEMAS, {})["limit"] == "all"


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("code", "usa", "does not match '^[A-Z]{2}$'"),
        ("window", {"from": "2024-01", "to": "2024-12"}, "expected one of"),
        ("share", 0, "less than or equal to the minimum of 0"),
        ("share", 0.3, "is not a multiple of 0.25"),
        ("limit", 0, "is not valid under any of the given schemas"),
        ("limit", "some", "is not valid under any of the given schemas"),
        ("filter", {"field": "region"}, "'op' is a required property"),
        ("filter", {"field": "region", "op": "gt"}, "op: 'gt' is not one of ['eq', 'ne']"),
        ("filter", {"field": "region", "op": "eq", "x": 1}, "Additional properties"),
        ("tags", ["a", "a"], "has non-unique elements"),
        ("tags", ["a", "b", "c", "d"], "is too long"),
    ],
)
def test_a_construct_beyond_type_and_range_is_checked_naming_the_variable(
    variable: str, value: object, message: str
) -> None:
    with pytest.raises(VariableError) as err:
        resolve_variables("wf", SCHEMAS, {variable: value})
    assert err.value.message.startswith(f"workflow 'wf': variable {variable!r} ")
    assert message in err.value.message
    assert err.value.details["variable"] == variable and err.value.status_code == 400


def test_a_default_is_checked_too() -> None:
    with pytest.raises(VariableError, match="variable 'code' 'eu' does not match"):
        resolve_variables(
            "wf", {"code": {"type": "string", "pattern": "^[A-Z]+$", "default": "eu"}}, {}
        )
