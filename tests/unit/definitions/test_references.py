"""Reference extraction for every kind, and the messages of reference checks."""

from __future__ import annotations

import json

import pytest

from quarry.definitions import (
    Ref,
    ReferenceIndex,
    RefKind,
    check_references,
    config_names,
    dataset_dirs,
    parse_definition,
)
from quarry.definitions.models import WorkspaceConfig
from tests.unit.definitions.conftest import parse_text, sample

D, F, M, V, T, W, A = (
    RefKind.DATABASE,
    RefKind.FILE,
    RefKind.MODEL,
    RefKind.VIEW,
    RefKind.TOPIC,
    RefKind.WORKFLOW,
    RefKind.AGENT,
)


def refs_of(path: str, data: bytes) -> list[tuple[RefKind, str, int, int, str]]:
    parsed = parse_definition(path, data)
    return [(r.kind, r.target, r.line, r.column, r.field) for r in parsed.refs]


def test_workflow_refs_reach_into_loops_and_conditionals() -> None:
    assert refs_of("workflows/s.procedure.yml", sample("sales.procedure.yml")) == [
        (D, "local", 22, 15, "tasks.0.database"),
        (F, "queries/sales.sql", 23, 15, "tasks.0.sql_file"),
        (D, "warehouse", 38, 19, "tasks.1.tasks.0.database"),
        (W, "workflows/detail.workflow.yml", 47, 22, "tasks.1.tasks.1.conditions.0.tasks.0.src"),
        (T, "orders", 56, 12, "tasks.2.topic"),
        (A, "agents/analyst.agent.yml", 79, 16, "tasks.3.agent_ref"),
    ]


def test_conditional_else_branch_refs() -> None:
    parsed = parse_text(
        "w.workflow.yml",
        """\
        tasks:
          - name: c
            type: conditional
            conditions: []
            else:
              - name: x
                type: execute_sql
                database: other
                sql_file: ./queries/../queries/x.sql
        """,
    )
    assert [(r.kind, r.target, r.line, r.column, r.field) for r in parsed.refs] == [
        (D, "other", 8, 19, "tasks.0.else.0.database"),
        (F, "queries/x.sql", 9, 19, "tasks.0.else.0.sql_file"),
    ]


def test_app_refs_include_nested_tasks() -> None:
    assert refs_of("apps/d.app.yml", sample("dashboard.app.yml")) == [
        (D, "local", 12, 15, "tasks.0.database"),
        (F, "queries/revenue.sql", 13, 15, "tasks.0.sql_file"),
        (D, "local", 20, 19, "tasks.1.tasks.0.database"),
    ]


def test_agent_refs_skip_glob_patterns() -> None:
    assert refs_of("agents/a.agent.yml", sample("analyst.agent.yml")) == [
        (M, "openai-4o-mini", 1, 8, "model"),
        (F, "docs/glossary.md", 14, 9, "context.0.src.1"),
        (F, "semantics/orders.yml", 17, 10, "context.1.src"),
        (D, "warehouse", 21, 15, "tools.0.database"),
        (D, "local", 24, 15, "tools.1.database"),
        (W, "workflows/sales.procedure.yml", 26, 19, "tools.2.workflow_ref"),
        (A, "agents/helper.agent.yml", 33, 16, "tools.3.agent_ref"),
        (T, "orders", 36, 12, "tools.4.topic"),
    ]


def test_routing_agent_refs() -> None:
    assert refs_of("agents/r.agent.yml", sample("router.agent.yml")) == [
        (M, "claude", 2, 8, "model"),
        (F, "agents/analyst.agent.yml", 6, 5, "routes.0"),
        (A, "agents/analyst.agent.yml", 8, 17, "route_fallback"),
    ]


def test_agentic_context_is_relative_to_the_file() -> None:
    assert refs_of("agents/a.agentic.yml", sample("analytics.agentic.yml")) == [
        (D, "local", 1, 13, "databases.0"),
        (D, "warehouse", 1, 20, "databases.1"),
        (F, "docs/guide.md", 4, 5, "context.1"),
        (M, "claude", 7, 8, "llm.ref"),
    ]


def test_view_and_topic_refs() -> None:
    assert refs_of("semantics/o.view.yml", sample("orders.view.yml")) == [
        (D, "local", 4, 13, "datasource"),
    ]
    assert refs_of("semantics/s.topic.yml", sample("sales.topic.yml")) == [
        (V, "orders", 3, 9, "views.0"),
        (V, "customers", 3, 17, "views.1"),
        (V, "orders", 4, 12, "base_view"),
    ]


def test_config_refs() -> None:
    assert refs_of("config.yml", sample("config.yml")) == [
        (D, "local", 77, 13, "defaults.database"),
        (M, "claude", 96, 10, "builder_agent.model"),
    ]


def test_templated_targets_are_not_refs() -> None:
    parsed = parse_text(
        "w.workflow.yml",
        """\
        tasks:
          - name: a
            type: execute_sql
            database: "{{ db }}"
            sql_file: "queries/{{ name }}.sql"
          - name: b
            type: workflow
            src: "{% if x %}a.workflow.yml{% endif %}"
        """,
    )
    assert parsed.refs == ()


def test_ref_json_round_trip() -> None:
    for ref in parse_definition("agents/a.agent.yml", sample("analyst.agent.yml")).refs:
        stored = json.loads(json.dumps(ref.to_json()))
        assert Ref.from_json(stored) == ref


INDEX = ReferenceIndex(
    paths={
        "config.yml",
        "queries/sales.sql",
        "workflows/sales.procedure.yml",
        "agents/analyst.agent.yml",
        "docs/readme.md",
    },
    databases={"local", "warehouse"},
    models={"claude"},
    views={"orders"},
    topics=set(),
)


def ref(kind: RefKind, target: str) -> Ref:
    return Ref(kind=kind, target=target, line=3, column=7, field="x")


@pytest.mark.parametrize(
    ("kind", "target", "message"),
    [
        (D, "wharehouse", "unknown database 'wharehouse' (config.yml defines: local, warehouse); "
         "did you mean 'warehouse'?"),
        (D, "prod", "unknown database 'prod' (config.yml defines: local, warehouse)"),
        (M, "gpt", "unknown model 'gpt' (config.yml defines: claude)"),
        (V, "customers", "unknown view 'customers' (the workspace defines: orders)"),
        (T, "sales", "unknown topic 'sales' (the workspace defines no topics)"),
        (F, "queries/missing.sql", "file 'queries/missing.sql' does not exist"),
        (F, "queries/sale.sql", "file 'queries/sale.sql' does not exist; "
         "did you mean 'queries/sales.sql'?"),
        (F, "../etc/passwd", "'../etc/passwd' is outside the workspace"),
        (W, "workflows/sale.procedure.yml", "workflow 'workflows/sale.procedure.yml' does not "
         "exist; did you mean 'workflows/sales.procedure.yml'?"),
        (W, "workflows/other.workflow.yml", "workflow 'workflows/other.workflow.yml' does "
         "not exist"),
        (W, "queries/sales.sql", "'queries/sales.sql' is not a .workflow.yml, .procedure.yml "
         "or .automation.yml file"),
        (A, "workflows/sales.procedure.yml", "'workflows/sales.procedure.yml' is not an "
         ".agent.yml file"),
        (A, "agents/nobody.agent.yml", "agent 'agents/nobody.agent.yml' does not exist"),
    ],
)  # fmt: skip
def test_check_references_messages(kind: RefKind, target: str, message: str) -> None:
    problems = check_references("w.workflow.yml", [ref(kind, target)], INDEX)
    assert [str(p) for p in problems] == [f"w.workflow.yml:3:7: {message}"]


@pytest.mark.parametrize(
    ("kind", "target"),
    [
        (D, "local"),
        (M, "claude"),
        (V, "orders"),
        (F, "docs/readme.md"),
        (W, "workflows/sales.procedure.yml"),
        (A, "agents/analyst.agent.yml"),
    ],
)
def test_check_references_accepts_what_exists(kind: RefKind, target: str) -> None:
    assert check_references("w.workflow.yml", [ref(kind, target)], INDEX) == []


def test_check_references_sorts_by_position() -> None:
    refs = [
        Ref(D, "nope", 9, 1, "b"),
        Ref(M, "nope", 2, 5, "a"),
    ]
    problems = check_references("x.agent.yml", refs, INDEX)
    assert [(p.line, p.column) for p in problems] == [(2, 5), (9, 1)]


def test_long_name_lists_are_cut() -> None:
    index = ReferenceIndex(set(), {f"db{i:02}" for i in range(30)}, set(), set(), set())
    (problem,) = check_references("v.view.yml", [ref(D, "zzz")], index)
    assert problem.message.endswith("db18, db19, ...)")


def test_config_names_and_dataset_dirs() -> None:
    config = parse_definition("config.yml", sample("config.yml")).model
    assert isinstance(config, WorkspaceConfig)
    databases, models = config_names(config)
    assert databases == {
        "local", "warehouse", "lake", "bq", "snow", "clicks", "md", "domo", "managed"
    }  # fmt: skip
    assert models == {"openai-4o-mini", "claude", "gemini", "llama"}
    assert dataset_dirs(config) == [".db"]


def test_dataset_dirs_are_normalised_and_stay_inside_the_workspace() -> None:
    parsed = parse_text(
        "config.yml",
        """\
        databases:
          - {name: a, type: duckdb, dataset: ./data/raw/}
          - {name: b, type: duckdb, dataset: data/raw}
          - {name: c, type: duckdb, dataset: /var/data}
          - {name: d, type: duckdb, dataset: ../elsewhere}
          - {name: e, type: duckdb, path: local.duckdb}
        models: []
        """,
    )
    assert isinstance(parsed.model, WorkspaceConfig)
    assert dataset_dirs(parsed.model) == ["data/raw"]
