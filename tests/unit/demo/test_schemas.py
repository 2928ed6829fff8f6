"""Every demo definition is valid per Oxy's published JSON Schemas.

The schemas are reference data outside the repository (``../shared/reference/
oxy-formats/`` next to the checkout) and are never copied in; without them, or
without ``jsonschema`` (a test-only, transitive dependency), these tests skip.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from tests.unit.demo.helpers import load_yaml

jsonschema = pytest.importorskip("jsonschema")

SCHEMA_DIR = Path(__file__).resolve().parents[3].parent / "shared" / "reference" / "oxy-formats"

SCHEMA_BY_SUFFIX = {
    ".workflow.yml": "workflow.json",
    ".procedure.yml": "workflow.json",
    ".automation.yml": "workflow.json",
    ".app.yml": "app.json",
    ".agent.yml": "agent.json",
    ".view.yml": "view.json",
    ".topic.yml": "topic.json",
}

pytestmark = pytest.mark.skipif(
    not SCHEMA_DIR.is_dir(), reason=f"Oxy reference schemas not found at {SCHEMA_DIR}"
)


@cache
def _schema(name: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((SCHEMA_DIR / name).read_text(encoding="utf-8"))
    return schema


def schema_for(relpath: str, data: dict[str, Any]) -> dict[str, Any] | None:
    if relpath == "config.yml":
        return _schema("config.json")
    for suffix, name in SCHEMA_BY_SUFFIX.items():
        if relpath.endswith(suffix):
            schema = _schema(name)
            if name == "agent.json":
                schema = _agent_schema(schema, data)
            return schema
    return None


def _agent_schema(schema: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    """agent.json as it is meant, not as it was generated.

    Oxy flattens the agent kind (default or routing) into the agent's own keys, but
    the generated schema wraps the kinds as ``{"Default": {...}}`` / ``{"Routing":
    {...}}`` with ``additionalProperties: false`` under a top-level ``oneOf``, which
    no real agent file (nor any file with the required ``model``) can satisfy. Check
    the shared keys and the flattened kind's keys together instead.
    """
    adjusted = copy.deepcopy(schema)
    adjusted.pop("oneOf")
    kind = "routing" if "routes" in data else "DefaultAgent"
    adjusted["allOf"] = [{"$ref": f"#/definitions/{kind}"}]
    return adjusted


def definition_files(root: Path) -> list[Path]:
    return sorted(
        path
        for path in root.rglob("*.yml")
        if path.relative_to(root).as_posix() == "config.yml"
        or any(path.name.endswith(suffix) for suffix in SCHEMA_BY_SUFFIX)
    )


def test_every_kind_is_present(demo_workspace: Path) -> None:
    names = {
        path.relative_to(demo_workspace).as_posix() for path in definition_files(demo_workspace)
    }
    assert names == {
        "config.yml",
        "agents/analyst.agent.yml",
        "apps/sales_overview.app.yml",
        "semantics/orders.view.yml",
        "semantics/sales.topic.yml",
        "workflows/monthly_revenue.workflow.yml",
        "workflows/region_report.procedure.yml",
    }


def test_every_definition_is_schema_valid(demo_workspace: Path) -> None:
    problems: list[str] = []
    for path in definition_files(demo_workspace):
        relpath = path.relative_to(demo_workspace).as_posix()
        data = load_yaml(path)
        schema = schema_for(relpath, data)
        assert schema is not None, relpath
        validator = jsonschema.Draft7Validator(schema)
        problems.extend(
            f"{relpath}: {'/'.join(map(str, error.absolute_path))}: {error.message}"
            for error in validator.iter_errors(data)
        )
    assert problems == []


def test_the_check_would_catch_a_mistake(demo_workspace: Path) -> None:
    app = load_yaml(demo_workspace / "apps/sales_overview.app.yml")
    app["display"].append({"type": "bar_chart", "data": "kpis", "x": "orders"})  # no y
    app["colour"] = "blue"  # AppConfig forbids unknown keys
    errors = list(jsonschema.Draft7Validator(_schema("app.json")).iter_errors(app))
    assert len(errors) == 2

    agent = load_yaml(demo_workspace / "agents/analyst.agent.yml")
    del agent["system_instructions"]
    schema = schema_for("agents/analyst.agent.yml", agent)
    assert schema is not None
    assert not jsonschema.Draft7Validator(schema).is_valid(agent)
