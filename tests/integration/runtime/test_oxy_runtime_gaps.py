"""Runtime gaps left after Oxy workspaces compiled (issue #15): task types Quarry does
not run stop a run with a clear error, and a sub-workflow ``src:`` is a path, so two
workflows sharing a stem both run. Real compile, store and DuckDB (SQLite state)."""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent

import pytest

from quarry.factory.local import compile_local
from quarry.node.services import Services
from quarry.runtime.connectors import BlobCache
from quarry.runtime.engine import (
    MapOutput,
    NotSupportedYet,
    StepFailed,
    TableOutput,
    TextOutput,
    VariableError,
)
from quarry.runtime.source import RevisionSource
from tests.integration.runtime.conftest import Runner

# Task types and sub-workflow paths are the engine's; the store is proven elsewhere.
pytestmark = pytest.mark.backend_agnostic


def _runner(services: Services, root: Path, tmp_path: Path) -> Runner:
    """Compile ``root`` (warnings allowed, errors not) and run its workflows."""
    result = compile_local(services.engine, services.store, "local", root, "shop")
    assert result.promoted, result.problems
    assert all(p.is_warning for p in result.problems), result.problems
    row = services.catalog.workspace("local", "shop", fresh=True)
    source = RevisionSource(services.catalog, row, result.revision_id)
    return Runner(services, source, BlobCache(tmp_path / "data" / "cache"))


def _write(root: Path, path: str, text: str) -> None:
    target = root / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(dedent(text))


# Each as Oxy's docs write it (the keys its model has), after the task's name and type.
UNRUN_TASKS = {
    "omni_query": "integration: omni, topic: orders, fields: [orders.region]",
    "looker_query": "integration: looker, model: shop, explore: orders, fields: [orders.region]",
    "visualize": "prompt: a bar chart",
    "exeucte_sql": "database: local",
}


@pytest.mark.parametrize("task_type", sorted(UNRUN_TASKS))
def test_a_task_type_quarry_does_not_run_fails_the_step_naming_task_and_type(
    services: Services, workspace: Path, tmp_path: Path, task_type: str
) -> None:
    extra = UNRUN_TASKS[task_type]
    _write(
        workspace,
        "workflows/unrun.workflow.yml",
        f"""\
        tasks:
          - name: before
            type: formatter
            template: first
          - {{name: the_task, type: {task_type}, {extra}}}
        """,
    )
    runner = _runner(services, workspace, tmp_path)
    with pytest.raises(NotSupportedYet) as failed:
        runner.run("workflows/unrun")
    err = failed.value
    assert err.step == "tasks.1" and err.task == "the_task"
    assert err.code == "not_supported_yet"
    assert f"{task_type} tasks are not supported yet" in err.message
    assert "the_task" in err.message and "internal error" not in err.message
    failed_events = [e for e in runner.events if e["event"] == "step_failed"]
    assert [e["step"] for e in failed_events] == ["tasks.1"]
    assert runner.events[-1]["event"] == "run_failed"


def test_a_sub_workflow_src_picks_its_file_when_two_share_a_stem(
    services: Services, workspace: Path, tmp_path: Path
) -> None:
    _write(
        workspace,
        "workflows/twin.workflow.yml",
        "tasks:\n  - {name: w, type: formatter, template: from workflow}\n",
    )
    _write(
        workspace,
        "workflows/twin.procedure.yml",
        "tasks:\n  - {name: p, type: formatter, template: from procedure}\n",
    )
    for suffix in ("workflow", "procedure"):
        _write(
            workspace,
            f"workflows/calls_{suffix}.workflow.yml",
            f"tasks:\n  - {{name: sub, type: workflow, src: workflows/twin.{suffix}.yml}}\n",
        )
    runner = _runner(services, workspace, tmp_path)

    via_workflow = runner.run("workflows/calls_workflow").outputs["sub"]
    via_procedure = runner.run("workflows/calls_procedure").outputs["sub"]
    assert isinstance(via_workflow, MapOutput) and isinstance(via_procedure, MapOutput)
    assert via_workflow.outputs == {"w": TextOutput("from workflow")}
    assert via_procedure.outputs == {"p": TextOutput("from procedure")}
    # Run directly by path, each is known by its full path (the stem is ambiguous).
    direct = runner.run("workflows/twin.procedure.yml")
    assert direct.workflow == "workflows/twin.procedure.yml"
    assert direct.outputs == {"p": TextOutput("from procedure")}


def test_a_workflow_calling_itself_by_path_is_caught_under_its_name(
    services: Services, workspace: Path, tmp_path: Path
) -> None:
    _write(
        workspace,
        "workflows/loopy.workflow.yml",
        "tasks:\n  - {name: again, type: workflow, src: workflows/loopy.workflow.yml}\n",
    )
    runner = _runner(services, workspace, tmp_path)
    with pytest.raises(StepFailed, match="'workflows/loopy' calls itself"):
        runner.run("workflows/loopy")


def test_a_postgres_entry_connects_with_oxy_defaults_and_a_plain_password(
    services: Services, tmp_path: Path
) -> None:
    # Only the host is given: port 5432, user and database "postgres" are Oxy's
    # defaults. The plain password beats a password_var naming an unset variable
    # (which alone fails the step); the server trusts local connections.
    root = tmp_path / "pgws"
    _write(root, "data/t.csv", "a\n1\n")
    _write(
        root,
        "config.yml",
        """\
        databases:
          - name: local
            type: duckdb
            dataset: data/
          - name: warehouse
            type: postgres
            host: 127.0.0.1
            password: not-needed-under-trust
            password_var: OXY_TEST_UNSET_PASSWORD
        """,
    )
    _write(
        root,
        "workflows/who.workflow.yml",
        """\
        tasks:
          - name: who
            type: execute_sql
            database: warehouse
            sql_query: SELECT current_user AS usr, current_database() AS db
        """,
    )
    result = _runner(services, root, tmp_path).run("workflows/who")
    who = result.outputs["who"]
    assert isinstance(who, TableOutput)
    assert who.table.to_pylist() == [{"usr": "postgres", "db": "postgres"}]


def test_a_run_checks_a_variable_against_its_full_json_schema(
    services: Services, workspace: Path, tmp_path: Path
) -> None:
    _write(
        workspace,
        "workflows/coded.workflow.yml",
        """\
        variables:
          code:
            type: string
            pattern: "^[A-Z]{2}$"
            default: EU
        tasks:
          - name: echo
            type: formatter
            template: "{{ code }}"
        """,
    )
    runner = _runner(services, workspace, tmp_path)
    assert runner.run("workflows/coded", {"code": "US"}).outputs["echo"] == TextOutput("US")
    runner.events.clear()
    with pytest.raises(VariableError) as bad:
        runner.run("workflows/coded", {"code": "usa"})
    assert "variable 'code' 'usa' does not match '^[A-Z]{2}$'" in bad.value.message
    assert not any(e["event"] == "step_started" for e in runner.events)
