"""Realistic files of every kind parse, keep every optional field, and round-trip."""

from __future__ import annotations

import json

import pytest

from quarry.core.hashing import canonical_json
from quarry.definitions import Kind, load_model, parse_definition
from quarry.definitions.models import (
    AgenticConfig,
    AppConfig,
    DefaultAgentConfig,
    RoutingAgentConfig,
    TopicConfig,
    ViewConfig,
    WorkflowConfig,
    WorkspaceConfig,
)
from quarry.definitions.models.app import RowDisplay
from quarry.definitions.models.config import DuckDbDatabase, PostgresDatabase
from quarry.definitions.models.tasks import (
    ConditionalTask,
    ExecuteSqlTask,
    LoopSequentialTask,
    SemanticQueryTask,
)
from tests.unit.definitions.conftest import parse_text, sample

SAMPLES = [
    ("config.yml", "config.yml", Kind.CONFIG, "config", WorkspaceConfig),
    (
        "sales.procedure.yml",
        "workflows/sales.procedure.yml",
        Kind.WORKFLOW,
        "workflows/sales",
        WorkflowConfig,
    ),
    ("dashboard.app.yml", "apps/dashboard.app.yml", Kind.APP, "apps/dashboard", AppConfig),
    (
        "analyst.agent.yml",
        "agents/analyst.agent.yml",
        Kind.AGENT,
        "agents/analyst",
        DefaultAgentConfig,
    ),
    (
        "router.agent.yml",
        "agents/router.agent.yml",
        Kind.AGENT,
        "agents/router",
        RoutingAgentConfig,
    ),
    (
        "analytics.agentic.yml",
        "agents/analytics.agentic.yml",
        Kind.AGENTIC,
        "agents/analytics",
        AgenticConfig,
    ),
    # Views and topics are known by their declared name, not their path.
    ("orders.view.yml", "semantics/orders.view.yml", Kind.VIEW, "orders", ViewConfig),
    ("sales.topic.yml", "semantics/sales.topic.yml", Kind.TOPIC, "sales", TopicConfig),
]


@pytest.mark.parametrize(("sample_name", "path", "kind", "name", "model_type"), SAMPLES)
def test_sample_parses_and_its_body_round_trips(
    sample_name: str, path: str, kind: Kind, name: str, model_type: type
) -> None:
    parsed = parse_definition(path, sample(sample_name))

    assert (parsed.kind, parsed.name, parsed.path) == (kind, name, path)
    assert type(parsed.model) is model_type
    # The body is what the compiler stores and hashes: JSON, no NaN, stable.
    assert json.loads(canonical_json(parsed.body)) == parsed.body
    reloaded = load_model(kind, parsed.body)
    assert type(reloaded) is model_type
    assert reloaded == parsed.model
    assert parse_definition(path, sample(sample_name)).body == parsed.body


def test_yaml_spelling_is_accepted() -> None:
    parsed = parse_definition("workflows/sales.workflow.yaml", sample("sales.procedure.yml"))
    assert parsed.kind is Kind.WORKFLOW
    assert parsed.name == "workflows/sales"


def test_workflow_keeps_fields_that_are_not_executed_yet() -> None:
    model = parse_definition("w.procedure.yml", sample("sales.procedure.yml")).model
    assert isinstance(model, WorkflowConfig)
    assert model.consistency_prompt == "Compare the two reports."
    assert model.retrieval is not None
    assert model.retrieval.include == ["weekly sales"]
    assert [test.type for test in model.tests] == ["consistency", "test_case"]
    assert model.variables == {"region": {"type": "string", "default": "EU"}}

    load, loop, query, summary, _ = model.tasks
    assert isinstance(load, ExecuteSqlTask)
    assert load.cache is not None
    assert load.cache.enabled
    assert load.export is not None
    assert load.export.format == "csv"
    assert summary.mode == "server"
    assert isinstance(loop, LoopSequentialTask)
    conditional = loop.tasks[1]
    assert isinstance(conditional, ConditionalTask)
    assert conditional.conditions[0].if_ == "{{ region_total.rows > 0 }}"
    assert conditional.else_ is not None
    assert conditional.else_[0].name == "empty"
    assert isinstance(query, SemanticQueryTask)
    assert [f.op for f in query.filters] == ["in", "in_date_range", "eq"]


def test_scalars_are_read_as_yaml_1_2_like_oxy_does() -> None:
    """``NO`` is Norway and ``2024-01-01`` is text, as in Oxy; not False and a date."""
    body = parse_definition("w.procedure.yml", sample("sales.procedure.yml")).body
    loop, query = body["tasks"][1], body["tasks"][2]
    assert loop["values"] == ["EU", "US", "NO"]
    assert query["filters"][1]["from"] == "2024-01-01"

    parsed = parse_text(
        "w.workflow.yml",
        """
        description: 12:30
        tasks:
          - name: t
            type: loop_sequential
            values: [no, on, yes, off, true, 010, 0x1F, 1e3, ~]
            tasks: []
        """,
    )
    assert isinstance(parsed.model, WorkflowConfig)
    assert parsed.model.description == "12:30"
    loop_task = parsed.model.tasks[0]
    assert isinstance(loop_task, LoopSequentialTask)
    assert loop_task.values == ["no", "on", "yes", "off", True, 10, 31, 1000.0, None]


def test_numbers_are_accepted_where_text_is_expected() -> None:
    config = parse_definition("config.yml", sample("config.yml")).model
    assert isinstance(config, WorkspaceConfig)
    warehouse = config.databases[1]
    assert isinstance(warehouse, PostgresDatabase)
    assert warehouse.port == "5432"
    lake = config.databases[2]
    assert isinstance(lake, DuckDbDatabase)
    assert lake.s3_secret_type == "config"
    assert config.base_branch == "main"
    assert config.protected_branches == ["main", "release"]
    assert config.mcp is not None
    assert config.mcp.tools == ["execute_sql"]


def test_app_nests_rows_and_keeps_controls() -> None:
    app = parse_definition("apps/d.app.yml", sample("dashboard.app.yml")).model
    assert isinstance(app, AppConfig)
    assert [block.type for block in app.display] == ["markdown", "row", "pie_chart", "table"]
    row = app.display[1]
    assert isinstance(row, RowDisplay)
    assert [child.type for child in row.children] == ["bar_chart", "line_chart"]
    assert app.controls[0].default == "EU"


def test_agent_keeps_tests_retrieval_and_tools() -> None:
    agent = parse_definition("agents/a.agent.yml", sample("analyst.agent.yml")).model
    assert isinstance(agent, DefaultAgentConfig)
    assert [tool.type for tool in agent.tools] == [
        "execute_sql",
        "validate_sql",
        "workflow",
        "agent",
        "semantic_query",
        "retrieval",
        "visualize",
    ]
    assert agent.tests[0].type == "custom"
    assert agent.retrieval is not None
    assert agent.reasoning is not None
    assert agent.reasoning.effort == "medium"


def test_agentic_rules_keep_their_tuning_parameters() -> None:
    parsed = parse_definition("agents/a.agentic.yml", sample("analytics.agentic.yml"))
    rule = parsed.body["validation"]["rules"]["solved"][0]
    assert rule == {
        "name": "outlier_detection",
        "enabled": True,
        "threshold_sigma": 3.0,
        "min_rows": 6,
    }
    assert parsed.body["thinking"] == {"effort": "high"}
    assert parsed.body["llm"]["thinking"] == "adaptive"


def test_nulls_are_dropped_from_the_body() -> None:
    parsed = parse_text(
        "w.workflow.yml",
        """
        tasks:
          - name: t
            type: formatter
            template: x
            export: null
        """,
    )
    assert parsed.body == {
        "description": "",
        "tasks": [{"name": "t", "mode": "client", "type": "formatter", "template": "x"}],
        "tests": [],
    }


def test_agent_may_say_type_default() -> None:
    parsed = parse_text("a.agent.yml", "type: default\nmodel: m\nsystem_instructions: hi\n")
    assert isinstance(parsed.model, DefaultAgentConfig)
