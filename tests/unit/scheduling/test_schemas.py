"""docs/schemas/*.json are the JSON Schemas of the two Quarry formats, generated from
the pydantic models; this test fails when a model changed and the files did not.

Regenerate: ``.venv/bin/python -m tests.unit.scheduling.test_schemas``
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from quarry.definitions.models.monitor import MonitorConfig
from quarry.definitions.models.schedule import ScheduleConfig

DOCS = Path(__file__).resolve().parents[3] / "docs" / "schemas"
FORMATS: dict[str, tuple[type[BaseModel], str]] = {
    "schedule.schema.json": (ScheduleConfig, "Quarry *.schedule.yml"),
    "monitor.schema.json": (MonitorConfig, "Quarry *.monitor.yml"),
}


def render(model: type[BaseModel], title: str) -> str:
    schema: dict[str, Any] = model.model_json_schema(by_alias=True)
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **schema,
        "title": title,
    }
    return json.dumps(schema, indent=2, sort_keys=False) + "\n"


def test_published_schemas_are_current() -> None:
    for name, (model, title) in FORMATS.items():
        path = DOCS / name
        assert path.exists(), f"{path} missing; regenerate (see the module docstring)"
        assert path.read_text() == render(model, title), f"{path} is stale; regenerate"


def test_schemas_refuse_unknown_keys() -> None:
    for model, title in FORMATS.values():
        assert json.loads(render(model, title))["additionalProperties"] is False


if __name__ == "__main__":
    DOCS.mkdir(parents=True, exist_ok=True)
    for name, (model, title) in FORMATS.items():
        (DOCS / name).write_text(render(model, title))
        print(f"wrote {DOCS / name}")
