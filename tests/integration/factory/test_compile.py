"""The compile boundary on both backends: idempotent revisions, uploads only when
new, failed compiles promote nothing, and promotion is a compare-and-swap."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import pytest
from sqlalchemy import func, select

from quarry.core.errors import CompileFailed, PromotionConflict
from quarry.factory.compiler import analyze, compile_workspace, publish
from quarry.factory.local import compile_local, register_local
from quarry.node.services import Services
from quarry.store.tables import blobs, workspaces


def _current(svc: Services) -> str | None:
    with svc.engine.connect() as conn:
        return conn.execute(select(workspaces.c.current_revision_id)).scalar_one()


def _blob_count(svc: Services) -> int:
    with svc.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(blobs)).scalar_one())


def test_compile_promotes_and_is_idempotent(services: Services, workspace: Path) -> None:
    first = compile_local(services.engine, services.store, "local", workspace, "shop")
    assert first.promoted and first.definitions == 7
    assert first.blobs_uploaded == first.files - first.definitions > 0
    assert _current(services) == first.revision_id

    second = compile_local(services.engine, services.store, "local", workspace, "shop")
    assert second.revision_id == first.revision_id
    assert second.unchanged and not second.promoted
    assert second.blobs_uploaded == 0
    assert _blob_count(services) == first.blobs_uploaded


def test_changing_one_file_uploads_one_blob(services: Services, workspace: Path) -> None:
    first = compile_local(services.engine, services.store, "local", workspace, "shop")
    sql = workspace / "queries" / "top_products.sql"
    sql.write_text(sql.read_text() + "\n-- tweaked\n")
    second = compile_local(services.engine, services.store, "local", workspace, "shop")
    assert second.revision_id != first.revision_id
    assert second.promoted and second.blobs_uploaded == 1
    assert second.parsed == 0 and second.reused == second.definitions
    assert _blob_count(services) == first.blobs_uploaded + 1


def test_changing_one_definition_reparses_only_it(services: Services, workspace: Path) -> None:
    compile_local(services.engine, services.store, "local", workspace, "shop")
    wf = workspace / "workflows" / "monthly_revenue.workflow.yml"
    wf.write_text(wf.read_text().replace("Monthly revenue", "Revenue per month", 1))
    again = compile_local(services.engine, services.store, "local", workspace, "shop")
    assert again.promoted and again.parsed == 1 and again.reused == again.definitions - 1
    assert again.blobs_uploaded == 0


@pytest.mark.parametrize(
    ("relpath", "mutate", "expected"),
    [
        (
            "workflows/monthly_revenue.workflow.yml",
            lambda text: text + "\n  bad: [unclosed\n",
            "workflows/monthly_revenue.workflow.yml:",
        ),
        (
            "semantics/orders.view.yml",
            lambda text: text.replace("name: orders", "name: [1, 2]", 1),
            "semantics/orders.view.yml:",
        ),
        (
            "workflows/monthly_revenue.workflow.yml",
            lambda text: text.replace("database: local", "database: warehouse", 1),
            "unknown database 'warehouse'",
        ),
    ],
    ids=["bad-yaml", "wrong-type", "unknown-reference"],
)
def test_broken_file_fails_with_position_and_keeps_serving(
    services: Services, workspace: Path, relpath: str, mutate: object, expected: str
) -> None:
    good = compile_local(services.engine, services.store, "local", workspace, "shop")
    target = workspace / relpath
    target.write_text(mutate(target.read_text()))  # type: ignore[operator]
    with pytest.raises(CompileFailed) as failed:
        compile_local(services.engine, services.store, "local", workspace, "shop")
    problems = failed.value.problems
    assert problems, "a failed compile names its problems"
    rendered = [str(p) for p in problems]
    assert any(expected in line for line in rendered), rendered
    assert all(p.line >= 1 and p.column >= 1 for p in problems)
    assert problems[0].path == relpath
    assert _current(services) == good.revision_id


def test_concurrent_promotions_from_one_base_exactly_one_wins(
    services: Services, workspace: Path, tmp_path: Path
) -> None:
    ws = register_local(services.engine, "local", workspace, "shop")
    base = compile_workspace(services.engine, services.store, ws, workspace)
    variants = []
    for i in range(2):
        copy = tmp_path / f"variant{i}"
        subprocess.run(["cp", "-r", str(workspace), str(copy)], check=True)
        readme = copy / "queries" / "top_products.sql"
        readme.write_text(readme.read_text() + f"\n-- variant {i}\n")
        variants.append(analyze(copy))
    barrier = threading.Barrier(2)
    outcomes: list[object] = [None, None]

    def promote(i: int) -> None:
        barrier.wait()
        try:
            outcomes[i] = publish(
                services.engine, services.store, ws, variants[i], expected=base.revision_id
            )
        except PromotionConflict as exc:
            outcomes[i] = exc

    threads = [threading.Thread(target=promote, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    conflicts = [o for o in outcomes if isinstance(o, PromotionConflict)]
    winners = [i for i, o in enumerate(outcomes) if isinstance(o, tuple) and o[0]]
    assert len(conflicts) == 1 and len(winners) == 1, outcomes
    assert "promotion conflict" in conflicts[0].message
    assert _current(services) == variants[winners[0]].revision_id


def test_git_commit_is_recorded(services: Services, workspace: Path) -> None:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(workspace), *args], check=True, capture_output=True, text=True
        ).stdout.strip()

    git("init", "-q", "-b", "main")
    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "init")
    result = compile_local(services.engine, services.store, "local", workspace, "shop")
    assert result.git_commit == git("rev-parse", "HEAD")


def test_symlinks_are_not_followed(services: Services, workspace: Path, tmp_path: Path) -> None:
    outside = tmp_path / "secret.sql"
    outside.write_text("select 'secret'")
    (workspace / "queries" / "leak.sql").symlink_to(outside)
    analysis = analyze(workspace)
    assert "queries/leak.sql" not in {f.path for f in analysis.files}


def test_missing_config_is_a_positioned_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(CompileFailed, match=r"config.yml:1:1: config.yml is missing"):
        analyze(tmp_path / "empty")
