"""Control defaults and validation; the stored-result key is the cache."""

from __future__ import annotations

from typing import Any

import pytest

from quarry.core.errors import BadRequest
from quarry.definitions.models.app import AppConfig
from quarry.runtime.apps import app_result_key, resolve_controls


def _app(controls: list[dict[str, Any]]) -> AppConfig:
    return AppConfig.model_validate(
        {"tasks": [], "display": [{"type": "markdown", "content": "x"}], "controls": controls}
    )


APP = _app(
    [
        {"name": "region", "type": "select", "options": ["All", "North"], "default": "All"},
        {"name": "year", "type": "select", "options": [2023, 2024]},
        {"name": "returns", "type": "toggle"},
        {"name": "since", "type": "date", "default": "2024-01-01"},
        {"name": "product", "type": "select", "source": "products"},
    ]
)


def test_defaults_fill_every_control() -> None:
    assert resolve_controls(APP, {}) == {
        "region": "All",
        "year": 2023,
        "returns": False,
        "since": "2024-01-01",
        "product": None,
    }


def test_query_text_resolves_to_typed_option_values() -> None:
    given = {"region": "North", "year": "2024", "returns": "true", "since": "2024-02-03"}
    got = resolve_controls(APP, given | {"product": "Mug"})
    assert got == {
        "region": "North",
        "year": 2024,
        "returns": True,
        "since": "2024-02-03",
        "product": "Mug",
    }
    assert resolve_controls(APP, {"year": 2024, "returns": True})["year"] == 2024


@pytest.mark.parametrize(
    ("given", "control"),
    [
        ({"region": "Mars"}, "region"),
        ({"year": "1999"}, "year"),
        ({"returns": "maybe"}, "returns"),
        ({"since": "yesterday"}, "since"),
        ({"product": ["a", "b"]}, "product"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_values_name_their_control(given: dict[str, Any], control: str) -> None:
    with pytest.raises(BadRequest) as caught:
        resolve_controls(APP, given)
    assert caught.value.details["control"] == control
    assert repr(control) in caught.value.message


def test_key_is_stable_and_distinguishes_controls() -> None:
    controls = resolve_controls(APP, {})
    key = app_result_key("local", "w1", "ab" * 16, "apps/sales", controls)
    assert key == app_result_key("local", "w1", "ab" * 16, "apps/sales", dict(controls))
    assert key.startswith(f"t/local/apps/w1/{'ab' * 16}/") and key.endswith(".json")
    others = {
        app_result_key("local", "w1", "ab" * 16, "apps/sales", controls | {"region": "North"}),
        app_result_key("local", "w1", "cd" * 16, "apps/sales", controls),
        app_result_key("local", "w2", "ab" * 16, "apps/sales", controls),
        app_result_key("local", "w1", "ab" * 16, "apps/other", controls),
        app_result_key("other", "w1", "ab" * 16, "apps/sales", controls),
    }
    assert key not in others and len(others) == 5


def test_query_text_and_json_values_share_one_key() -> None:
    typed = resolve_controls(APP, {"year": 2024, "returns": True})
    text = resolve_controls(APP, {"year": "2024", "returns": "on"})
    assert app_result_key("t", "w", "r", "a", typed) == app_result_key("t", "w", "r", "a", text)


@pytest.mark.parametrize("bad", ["", "a/b", ".."])
def test_key_segments_cannot_escape(bad: str) -> None:
    with pytest.raises(ValueError, match="for an object key"):
        app_result_key("local", bad, "r", "a", {})
    with pytest.raises(ValueError, match="for an object key"):
        app_result_key("local", "w", bad, "a", {})
