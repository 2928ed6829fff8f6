"""Control options and defaults are templates (as in Oxy); markdown is a template
over the task results."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pyarrow as pa
import pytest

from quarry.core.errors import BadRequest
from quarry.definitions.models.app import AppConfig
from quarry.runtime.apps import build_app_result, resolve_controls
from quarry.runtime.apps.controls import app_controls


def _app(display: list[dict[str, Any]], controls: list[dict[str, Any]] | None = None) -> AppConfig:
    return AppConfig.model_validate({"tasks": [], "display": display, "controls": controls or []})


YEAR_CONTROL = {
    "type": "control",
    "name": "year",
    "control_type": "select",
    "options": ["All", "{{ now(fmt='%Y') }}", "{{ now(fmt='%Y') | int - 1 }}", 7],
    "default": "{{ now(fmt='%Y') }}",
}


def test_options_and_default_render() -> None:
    year = dt.datetime.now().year  # now() is local time unless utc=true
    app = _app([YEAR_CONTROL], [{"name": "on", "type": "toggle", "default": False}])
    controls = {c.name: c for c in app_controls(app)}
    assert controls["year"].options == ["All", str(year), str(year - 1), 7]
    assert controls["year"].default == str(year)
    assert controls["on"].default is False
    assert resolve_controls(app, {}) == {"on": False, "year": str(year)}
    assert resolve_controls(app, {"year": year - 1})["year"] == str(year - 1)
    with pytest.raises(BadRequest, match="not one of its options"):
        resolve_controls(app, {"year": "1999"})


def test_a_template_that_fails_names_the_control_and_field() -> None:
    bad = {**YEAR_CONTROL, "options": ["All", "{{ 1 // 0 }}"]}
    with pytest.raises(BadRequest, match=r"control 'year': its option 2 is a template"):
        resolve_controls(_app([bad]), {})
    bad_default = {**YEAR_CONTROL, "default": "{% if %}"}
    with pytest.raises(BadRequest, match=r"control 'year': its default is a template"):
        resolve_controls(_app([bad_default]), {})


def test_long_values_are_refused() -> None:
    app = _app([], [{"name": "who", "type": "select", "source": "people"}])
    assert resolve_controls(app, {"who": "x" * 1000}) == {"who": "x" * 1000}
    with pytest.raises(BadRequest, match="over the limit of 1,000"):
        resolve_controls(app, {"who": "x" * 1001})


def test_markdown_sees_task_results_and_controls() -> None:
    app = _app(
        [
            {"type": "markdown", "content": "{{ sales.total[0] }} in {{ controls.region }}"},
            {"type": "markdown", "content": "{% for r in sales %}{{ r.region }};{% endfor %}"},
            {"type": "markdown", "content": "{{ sales.total[0] // 0 }}"},
        ]
    )
    tables = {"sales": pa.table({"region": ["N", "S"], "total": [10, 32]})}
    doc = build_app_result(app, tables, {"region": "N"}, revision_id="r", app_name="a")
    first, second, third = doc["display"]
    assert first == {"type": "markdown", "content": "10 in N"}
    assert second["content"] == "N;S;"
    assert third["content"] == "" and third["error"].startswith("markdown template:")
