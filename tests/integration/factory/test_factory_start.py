"""The Factory's start-up pass is bounded by what needs work, not by the workspace
count (issue #22, docs/capacity.md): a restart compiles only the workspaces whose last
compile did not finish and re-clones only missing working copies; every other
workspace is left as it is (its compile status keeps its time). Real git, a real
state database (SQLite and Postgres)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import update

from quarry.core.metrics import FACTORY_START_REMAINING
from quarry.factory import workspaces as fw
from quarry.factory.compiler import COMPILER_VERSION
from quarry.factory.service import Factory
from quarry.node.services import Services, build_services
from quarry.store import factory_tables as ft
from quarry.store.tables import revisions
from quarry.store.workspaces import get_workspace
from tests.conftest import Backend
from tests.integration.factory.gitrepos import make_origin

NAMES = ("alpha", "bravo", "charlie", "delta")


@pytest.fixture
def svc(backend: Backend, tmp_path: Path) -> Iterator[Services]:
    services = build_services(
        backend.settings(
            data_dir=tmp_path / "data",
            workspaces_dir=tmp_path / "workspaces",
            git_allow_local_origins=True,
            inprocess_workers="off",
            compile_debounce_seconds=0,
        )
    )
    yield services
    services.close()


def _finished(svc: Services) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    with svc.engine.connect() as conn:
        for name in NAMES:
            rows = ft.statuses(conn, get_workspace(conn, "local", name).id)
            assert len(rows) == 1 and rows[0].state == "succeeded", rows
            out[name] = rows[0].finished_at.isoformat() if rows[0].finished_at else None
    return out


def test_a_restart_resumes_interrupted_compiles_and_reclones_only(
    svc: Services, tmp_path: Path
) -> None:
    origin = make_origin(tmp_path)
    for name in NAMES:
        fw.register_origin(svc.engine, "local", name, str(origin), branch=None, allow_local=True)
    folder = svc.paths.workspaces_dir
    # a local-folder workspace is never the start-up pass's business
    fw.register_path(svc.engine, "local", "folder", tmp_path / "seed")

    # First start: nothing was ever compiled, so every git workspace is (and cloned).
    first = Factory(svc)
    assert sorted(first.start_todo()) == [("local", n) for n in NAMES]
    first.start()
    assert first.ready.wait(120)
    first.stop()
    before = _finished(svc)
    assert all(fw.has_working_copy(folder, "local", n) for n in NAMES)

    # What a stop leaves: alpha's edit not compiled yet, bravo's copy gone (wiped disk).
    with svc.engine.begin() as conn:
        ft.mark_requested(conn, get_workspace(conn, "local", "alpha").id, "main")
        assert ft.workspaces_to_resume(conn) == [("local", "alpha")]
    shutil.rmtree(fw.clone_dir(folder, "local", "bravo"))

    second = Factory(svc)
    assert second.start_todo() == [("local", "alpha"), ("local", "bravo")]
    second.start()
    assert second.ready.wait(120)
    second.stop()
    after = _finished(svc)
    assert FACTORY_START_REMAINING._value.get() == 0

    assert after["alpha"] != before["alpha"], "the interrupted compile ran again"
    assert after["bravo"] != before["bravo"], "the wiped copy was cloned and compiled"
    assert fw.has_working_copy(folder, "local", "bravo")
    assert after["charlie"] == before["charlie"] and after["delta"] == before["delta"], (
        "a workspace that needed nothing was compiled at start"
    )
    with svc.engine.connect() as conn:
        assert ft.workspaces_to_resume(conn) == []

    # A release whose compiler makes different revisions: delta's current revision is
    # an older compiler's, so the next start compiles delta (and only delta) again.
    with svc.engine.begin() as conn:
        delta = get_workspace(conn, "local", "delta")
        conn.execute(
            update(revisions)
            .where(
                revisions.c.workspace_id == delta.id,
                revisions.c.revision_id == delta.current_revision_id,
            )
            .values(compiler_version="0")
        )
        assert ft.workspaces_to_resume(conn) == []  # no version given: not asked
        assert ft.workspaces_to_resume(conn, COMPILER_VERSION) == [("local", "delta")]
    third = Factory(svc)
    assert third.start_todo() == [("local", "delta")]
    third.start()
    assert third.ready.wait(120)
    third.stop()
    again = _finished(svc)
    assert again["delta"] != after["delta"] and again["charlie"] == after["charlie"]


def test_workspaces_to_resume_reads_every_state(svc: Services, tmp_path: Path) -> None:
    """never compiled, pending, compiling: resumed; succeeded, failed: not; a path
    workspace: never (it has no origin to clone)."""
    origin = make_origin(tmp_path)
    rows = {
        n: fw.register_origin(svc.engine, "local", n, str(origin), branch=None, allow_local=True)
        for n in ("never", "pending", "compiling", "ok", "failed")
    }
    fw.register_path(svc.engine, "local", "folder", tmp_path / "seed")
    with svc.engine.begin() as conn:
        ft.mark_requested(conn, rows["pending"].id, "main")
        ft.mark_started(conn, rows["compiling"].id, "main")
        for name, error in (("ok", None), ("failed", "broken")):
            ft.mark_started(conn, rows[name].id, "main")
            ft.mark_finished(
                conn,
                rows[name].id,
                "main",
                revision_id=None,
                promoted=False,
                draft=False,
                git_commit=None,
                error=error,
            )
        # a finished default branch does not hide a draft branch left pending
        ft.mark_requested(conn, rows["ok"].id, "feature")
    with svc.engine.connect() as conn:
        assert ft.workspaces_to_resume(conn) == [
            ("local", "compiling"),
            ("local", "never"),
            ("local", "ok"),
            ("local", "pending"),
        ]
