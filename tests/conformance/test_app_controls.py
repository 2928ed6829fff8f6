"""Controls declared both ways Oxy allows (top-level and inline display blocks) are
the app's controls at run time, in file order; inline control blocks are not drawn
as blocks. The app comes from the compiled corpus (its stored body)."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from quarry.core.errors import BadRequest
from quarry.definitions import Kind, load_model
from quarry.definitions.models.app import AppConfig
from quarry.factory.compiler import analyze
from quarry.runtime.apps import build_app_result, resolve_controls
from tests.conformance.corpus import FULL


def _dashboard() -> AppConfig:
    analysis = analyze(FULL)
    row = next(r for r in analysis.definitions if r.path == "apps/dashboard.app.yml")
    app = load_model(Kind.APP, json.loads(analysis.new_bodies[row.content_hash][0]))
    assert isinstance(app, AppConfig)
    return app


def test_inline_and_top_level_controls_resolve_together() -> None:
    app = _dashboard()
    assert [(c.name, c.type) for c in app.all_controls()] == [
        ("region", "select"),
        ("refunds", "toggle"),
        ("since", "date"),
        ("status", "select"),
    ]
    values = resolve_controls(app, {"status": "refunded", "since": "2024-02-01"})
    assert values == {"region": "EU", "refunds": False, "since": "2024-02-01", "status": "refunded"}
    with pytest.raises(BadRequest, match="not one of its options"):
        resolve_controls(app, {"status": "lost"})


def test_inline_controls_are_listed_with_the_controls_not_drawn_as_blocks() -> None:
    app = _dashboard()
    tables = {
        "regions": pa.table({"region": ["EU", "US"]}),
        "revenue": pa.table({"region": ["EU"], "created_at": ["2024-01-02"], "revenue": [17.5]}),
    }
    controls = resolve_controls(app, {})
    doc = build_app_result(app, tables, controls, revision_id="r", app_name="apps/dashboard")
    assert [c["name"] for c in doc["controls"]] == ["region", "refunds", "since", "status"]
    assert doc["controls"][0]["options"] == ["EU", "US"]  # from its source task
    assert doc["controls"][3]["options"] == ["paid", "refunded"]  # static
    assert [block["type"] for block in doc["display"]] == ["markdown", "row", "pie_chart", "table"]
