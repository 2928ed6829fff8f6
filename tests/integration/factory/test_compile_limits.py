"""Compile limits on a real working copy: size caps however a file arrived, and the
compile process's time and memory limits, each failing only its own file.

The oversized files are sparse (10 GB on paper, nothing on disk): a compiler that
read one whole would take minutes and 10 GB of memory; these tests take a second.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from quarry.core.errors import CompileFailed
from quarry.factory.compiler import analyze
from quarry.factory.isolation import ISOLATED_FAILURES, CompileLimits, CompileProcess
from quarry.factory.local import compile_local
from quarry.node.services import Services

TEN_GB = 10_000_000_000
SLOW = b"tasks: [" + b"1," * 900_000 + b"1]\n"  # 1.8 MB: a second or two to read


def _sparse(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        handle.truncate(size)


def _problems(caught: pytest.ExceptionInfo[CompileFailed]) -> dict[str, str]:
    return {p.path: str(p) for p in caught.value.problems if not p.is_warning}


def _current(svc: Services) -> str | None:
    return svc.catalog.workspace("local", "shop", fresh=True).current_revision_id


def test_oversized_files_arrived_by_local_edit(services: Services, workspace: Path) -> None:
    """A definition over file_max_bytes and a dataset file over dataset_file_max_bytes
    (as a git pull or an editor would leave them): problems, never read."""
    first = compile_local(services.engine, services.store, "local", workspace, "shop")
    _sparse(workspace / "workflows" / "huge.workflow.yml", TEN_GB)
    _sparse(workspace / ".db" / "huge.csv", TEN_GB)
    with pytest.raises(CompileFailed) as caught:
        compile_local(services.engine, services.store, "local", workspace, "shop")
    problems = _problems(caught)
    assert problems["workflows/huge.workflow.yml"] == (
        f"workflows/huge.workflow.yml:1:1: the file is {TEN_GB} bytes; "
        "the limit is 2000000 bytes (file_max_bytes)"
    )
    assert problems[".db/huge.csv"].endswith("the limit is 50000000 bytes (dataset_file_max_bytes)")
    assert _current(services) == first.revision_id
    with pytest.raises(CompileFailed) as caught:  # without a stat cache: the same
        analyze(workspace)
    assert set(_problems(caught)) == {"workflows/huge.workflow.yml", ".db/huge.csv"}


def test_an_oversized_config_is_a_problem(workspace: Path) -> None:
    config = workspace / "config.yml"
    config.write_bytes(config.read_bytes() + b"#" * 3000)
    with pytest.raises(CompileFailed) as caught:
        analyze(workspace, limits=CompileLimits(file_bytes=2000))
    assert "config.yml" in _problems(caught)
    assert "(file_max_bytes)" in _problems(caught)["config.yml"]


def test_a_file_that_takes_too_long_fails_alone(services: Services, workspace: Path) -> None:
    first = compile_local(services.engine, services.store, "local", workspace, "shop")
    # unique bytes: failures are remembered per process, by content
    (workspace / "workflows" / "slow.workflow.yml").write_bytes(SLOW + f"# {workspace}\n".encode())
    broken = workspace / "workflows" / "broken.workflow.yml"  # after it: still checked
    broken.write_text("tasks: [\n")
    limits = CompileLimits(file_timeout_seconds=0.2)
    before = ISOLATED_FAILURES.labels("timeout")._value.get()
    with pytest.raises(CompileFailed) as caught:
        compile_local(services.engine, services.store, "local", workspace, "shop", limits=limits)
    problems = _problems(caught)
    assert problems["workflows/slow.workflow.yml"] == (
        "workflows/slow.workflow.yml:1:1: reading this file took longer than 0.2 s "
        "(limit compile_file_timeout_seconds)"
    )
    assert "invalid YAML" in problems["workflows/broken.workflow.yml"]
    assert ISOLATED_FAILURES.labels("timeout")._value.get() == before + 1
    assert _current(services) == first.revision_id

    # Compiled again with the same bytes: the problem is repeated, not re-earned.
    with pytest.raises(CompileFailed) as caught:
        compile_local(services.engine, services.store, "local", workspace, "shop", limits=limits)
    assert "longer than 0.2 s" in _problems(caught)["workflows/slow.workflow.yml"]
    assert ISOLATED_FAILURES.labels("timeout")._value.get() == before + 1

    # Fixed: the file changed, so it is read again, and the compile goes through.
    (workspace / "workflows" / "slow.workflow.yml").write_text(
        "tasks:\n  - name: one\n    type: execute_sql\n    database: local\n"
        "    sql_query: select 1\n"
    )
    broken.unlink()
    fixed = compile_local(
        services.engine, services.store, "local", workspace, "shop", limits=limits
    )
    assert fixed.promoted


def test_a_file_that_needs_too_much_memory_fails_alone(workspace: Path) -> None:
    (workspace / "workflows" / "greedy.workflow.yml").write_bytes(
        SLOW + f"# {workspace}\n".encode()
    )
    limits = CompileLimits(memory_bytes=200 << 20)
    with pytest.raises(CompileFailed) as caught:
        analyze(workspace, limits=limits)
    problem = _problems(caught)["workflows/greedy.workflow.yml"]
    assert "(limit compile_memory_bytes)" in problem, problem
    assert list(_problems(caught)) == ["workflows/greedy.workflow.yml"]


@pytest.mark.parametrize("isolation", ["process", "inline"])
def test_yaml_guards_hold_in_both_isolation_modes(workspace: Path, isolation: str) -> None:
    (workspace / "workflows" / "deep.workflow.yml").write_bytes(
        b"tasks: " + b"[" * 30_000 + b"]" * 30_000
    )
    limits = CompileLimits(isolation=isolation)  # type: ignore[arg-type]
    with pytest.raises(CompileFailed) as caught:
        analyze(workspace, limits=limits)
    assert _problems(caught)["workflows/deep.workflow.yml"].endswith("(limit yaml_max_depth)")


def test_a_workspace_with_anchors_compiles(workspace: Path) -> None:
    """Anchors, aliases and merges as real workspaces use them go through."""
    (workspace / "workflows" / "anchored.workflow.yml").write_text(
        "tasks:\n"
        "  - &base\n"
        "    name: one\n"
        "    type: execute_sql\n"
        "    database: local\n"
        "    sql_query: select 1\n"
        "  - <<: *base\n"
        "    name: two\n"
    )
    analysis = analyze(workspace)
    assert any(d.path == "workflows/anchored.workflow.yml" for d in analysis.definitions)


def test_the_compile_process_gets_no_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Its environment holds what Python needs to start, not the fleet's settings."""
    monkeypatch.setenv("QUARRY_DATABASE_URL", "postgresql://quarry:hunter2@db/state")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "hunter2")
    process = CompileProcess(CompileLimits())
    try:
        process.wait_ready()
        environ = Path(f"/proc/{process.process.pid}/environ").read_bytes()
        assert b"hunter2" not in environ
        assert not [v for v in environ.split(b"\0") if v.startswith((b"QUARRY_", b"AWS_"))]
    finally:
        process.close()
