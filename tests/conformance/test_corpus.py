"""The conformance corpus through the real compiler's analysis (``quarry compile
--check`` is this analysis): exact problems, positions and severities."""

from __future__ import annotations

from pathlib import Path

import pytest

from quarry.core.errors import CompileFailed
from quarry.factory.compiler import analyze
from tests.conformance.corpus import BROKEN, FULL, FULL_WARNINGS, write_workspace


def test_full_corpus_compiles_with_exactly_the_warnings_oxy_would_ignore() -> None:
    analysis = analyze(FULL)
    assert [str(w) for w in analysis.warnings] == FULL_WARNINGS
    assert all(w.severity == "warning" for w in analysis.warnings)
    kinds = sorted({row.kind for row in analysis.definitions})
    assert kinds == ["agent", "agentic", "app", "config", "topic", "view", "workflow"]


def test_strict_turns_every_warning_into_an_error() -> None:
    with pytest.raises(CompileFailed) as failed:
        analyze(FULL, strict=True)
    problems = failed.value.problems
    assert [str(p).replace(": warning:", ":") for p in FULL_WARNINGS] == [str(p) for p in problems]
    assert all(p.severity == "error" for p in problems)


def test_workflow_files_sharing_a_stem_coexist_named_by_their_paths() -> None:
    names = {r.path: r.name for r in analyze(FULL).definitions if r.kind == "workflow"}
    assert names == {
        "workflows/nightly.automation.yml": "workflows/nightly",
        "workflows/runnable.workflow.yml": "workflows/runnable",
        "workflows/sub.procedure.yml": "workflows/sub",
        "workflows/tasks.workflow.yml": "workflows/tasks",
        "workflows/twin.procedure.yml": "workflows/twin.procedure.yml",
        "workflows/twin.workflow.yml": "workflows/twin.workflow.yml",
    }


def test_stored_bodies_hold_oxy_s_choices_and_no_ignored_keys() -> None:
    bodies = {
        path: body
        for path, body in (
            (row.path, analyze(FULL).new_bodies[row.content_hash][0])
            for row in analyze(FULL).definitions
        )
    }
    config = bodies["config.yml"]
    assert '"slack"' not in config and '"admins"' not in config
    assert '"repositories":[{"name":"dbt"' in config  # data_repos is an alias
    tasks = bodies["workflows/tasks.workflow.yml"]
    assert '"colour"' not in bodies["workflows/nightly.automation.yml"]
    assert '"region":{"default":"EU","type":"string"}' in tasks  # variable shorthand
    both = tasks[tasks.index('"name":"both_sources"') - 200 :][:400]
    assert '"sql_file":"sql/revenue.sql"' in both and "select 1" not in both


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_workspaces_report_every_problem_with_its_position(
    case: str, tmp_path: Path
) -> None:
    files, expected = BROKEN[case]
    root = write_workspace(tmp_path / "ws", files)
    with pytest.raises(CompileFailed) as failed:
        analyze(root)
    assert [str(p) for p in failed.value.problems] == expected
    assert all(p.line >= 1 and p.column >= 1 for p in failed.value.problems)
