"""The demo compiles: every definition parses with Quarry's own models, and every
reference between files (databases, models, views, SQL files, sub-workflows,
context documents) points at something the workspace defines."""

from __future__ import annotations

import pytest

from quarry.demo import DATASET_DIR, demo_files

pytest.importorskip("quarry.definitions.parse")

# Imported only once the parser is known to exist.
from quarry.definitions import (
    Kind,
    ParsedDefinition,
    ReferenceIndex,
    check_references,
    classify_path,
    config_names,
    dataset_dirs,
    parse_definition,
)
from quarry.definitions.models.config import WorkspaceConfig


def parsed() -> dict[str, ParsedDefinition]:
    return {
        path: parse_definition(path, data)
        for path, data in demo_files().items()
        if classify_path(path) is not None
    }


def test_every_definition_parses() -> None:
    names = {(d.kind, d.name) for d in parsed().values()}
    assert names == {
        (Kind.CONFIG, "config"),
        (Kind.VIEW, "orders"),
        (Kind.TOPIC, "sales"),
        (Kind.WORKFLOW, "workflows/monthly_revenue"),
        (Kind.WORKFLOW, "workflows/region_report"),
        (Kind.APP, "apps/sales_overview"),
        (Kind.AGENT, "agents/analyst"),
    }


def test_every_reference_resolves() -> None:
    by_path = parsed()
    config = by_path["config.yml"].model
    assert isinstance(config, WorkspaceConfig)
    assert dataset_dirs(config) == [DATASET_DIR]
    databases, models = config_names(config)
    index = ReferenceIndex(
        paths=set(demo_files()),
        databases=databases,
        models=models,
        views={d.name for d in by_path.values() if d.kind is Kind.VIEW},
        topics={d.name for d in by_path.values() if d.kind is Kind.TOPIC},
    )
    problems = [
        problem
        for path, definition in by_path.items()
        for problem in check_references(path, definition.refs, index)
    ]
    assert problems == []
    assert sum(len(d.refs) for d in by_path.values()) > 10
