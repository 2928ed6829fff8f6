from __future__ import annotations

import pytest

from quarry.runtime.engine.errors import VariableError
from quarry.runtime.engine.variables import resolve_variables

SCHEMAS = {
    "region": {"type": "string", "enum": ["North", "South"]},
    "limit": {"type": "integer", "default": 10, "minimum": 1, "maximum": 100},
    "ratio": {"type": "number", "default": 0.5},
    "flag": {"type": "boolean", "default": False},
    "tags": {"type": "array", "items": {"type": "string"}, "default": []},
    "maybe": {"type": ["string", "null"], "default": None},
}


def test_defaults_fill_in_and_are_copies() -> None:
    first = resolve_variables("wf", SCHEMAS, {"region": "North"})
    assert first == {
        "region": "North",
        "limit": 10,
        "ratio": 0.5,
        "flag": False,
        "tags": [],
        "maybe": None,
    }
    first["tags"].append("x")
    assert resolve_variables("wf", SCHEMAS, {"region": "North"})["tags"] == []


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({}, "needs variable 'region', which was not given and has no default"),
        ({"region": "East"}, '\'region\' expected one of "North", "South", got string "East"'),
        ({"region": "North", "limit": "5"}, "'limit' expected integer, got string \"5\""),
        ({"region": "North", "limit": True}, "'limit' expected integer, got boolean true"),
        ({"region": "North", "limit": 0}, "'limit' must be at least 1, got 0"),
        ({"region": "North", "limit": 101}, "'limit' must be at most 100"),
        ({"region": "North", "ratio": "x"}, "'ratio' expected number"),
        ({"region": "North", "tags": ["a", 1]}, "'tags' item 1: expected string, got integer 1"),
        ({"region": "North", "maybe": 3}, "'maybe' expected string or null"),
        ({"region": "North", "regoin": 1}, "has no variable 'regoin'"),
    ],
)
def test_bad_variables_are_clear_errors(given: dict[str, object], message: str) -> None:
    with pytest.raises(VariableError) as err:
        resolve_variables("wf", SCHEMAS, given)
    assert message in err.value.message
    assert err.value.message.startswith("workflow 'wf'") and err.value.status_code == 400


def test_integral_floats_are_integers_and_numbers_accept_ints() -> None:
    values = resolve_variables("wf", SCHEMAS, {"region": "North", "limit": 5.0, "ratio": 2})
    assert values["limit"] == 5 and values["ratio"] == 2


def test_text_from_a_command_line_is_coerced_when_asked() -> None:
    given = {"region": "North", "limit": "7", "flag": "true", "tags": '["a"]', "maybe": "null"}
    values = resolve_variables("wf", SCHEMAS, given, coerce_text=True)
    assert values["limit"] == 7 and values["flag"] is True and values["tags"] == ["a"]
    # A type that allows strings keeps the text as it is.
    assert values["maybe"] == "null"
    with pytest.raises(VariableError, match="expected integer"):
        resolve_variables("wf", SCHEMAS, {"region": "North", "limit": "seven"}, coerce_text=True)


def test_no_declarations_accept_no_variables() -> None:
    assert resolve_variables("wf", None, None) == {}
    with pytest.raises(VariableError, match=r"declared: none"):
        resolve_variables("wf", None, {"x": 1})
