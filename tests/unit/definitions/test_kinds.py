from __future__ import annotations

import pytest

from quarry.definitions import Kind, classify_path, definition_name


@pytest.mark.parametrize(
    ("relpath", "kind"),
    [
        ("config.yml", Kind.CONFIG),
        ("config.yaml", Kind.CONFIG),
        ("sub/config.yml", None),
        ("workflows/sales.workflow.yml", Kind.WORKFLOW),
        ("sales.procedure.yml", Kind.WORKFLOW),
        ("a/b/nightly.automation.yaml", Kind.WORKFLOW),
        ("apps/dash.app.yml", Kind.APP),
        ("apps/dash.app.yaml", Kind.APP),
        ("agents/analyst.agent.yml", Kind.AGENT),
        ("agents/analyst.agentic.yml", Kind.AGENTIC),
        ("agents/analyst.agentic.yaml", Kind.AGENTIC),
        ("semantics/orders.view.yml", Kind.VIEW),
        ("semantics/sales.topic.yaml", Kind.TOPIC),
        ("queries/sales.sql", None),
        ("notes.yml", None),
        ("data/workflow.yml", None),
        ("workflows/.workflow.yml", None),
        ("sales.workflow.yml.bak", None),
        ("Sales.WORKFLOW.YML", None),
    ],
)
def test_classify_path(relpath: str, kind: Kind | None) -> None:
    assert classify_path(relpath) is kind


@pytest.mark.parametrize(
    ("relpath", "kind", "name"),
    [
        ("config.yml", Kind.CONFIG, "config"),
        ("config.yaml", Kind.CONFIG, "config"),
        ("workflows/sales.procedure.yml", Kind.WORKFLOW, "workflows/sales"),
        ("sales.workflow.yaml", Kind.WORKFLOW, "sales"),
        ("a/b/nightly.automation.yml", Kind.WORKFLOW, "a/b/nightly"),
        ("apps/dash.app.yml", Kind.APP, "apps/dash"),
        ("agents/x.agent.yml", Kind.AGENT, "agents/x"),
        ("agents/x.agentic.yml", Kind.AGENTIC, "agents/x"),
        ("semantics/orders.view.yml", Kind.VIEW, "semantics/orders"),
        ("semantics/sales.topic.yml", Kind.TOPIC, "semantics/sales"),
    ],
)
def test_definition_name(relpath: str, kind: Kind, name: str) -> None:
    assert definition_name(relpath, kind) == name


@pytest.mark.parametrize(
    ("relpath", "kind"),
    [
        ("sales.workflow.yml", Kind.APP),
        ("sub/config.yml", Kind.CONFIG),
        ("notes.md", Kind.VIEW),
    ],
)
def test_definition_name_rejects_a_path_of_another_kind(relpath: str, kind: Kind) -> None:
    with pytest.raises(ValueError, match="is not"):
        definition_name(relpath, kind)
