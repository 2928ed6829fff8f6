"""Promotion stays atomic: a workspace with warnings only is promoted; one with any
error (or with warnings under --strict) promotes nothing. Real store, both backends;
and ``quarry compile --check`` / ``--strict`` as a user's CI runs them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from quarry.api.app import create_app
from quarry.core.errors import CompileFailed, NotFound, Problem
from quarry.factory.local import compile_local
from quarry.node.services import Services, build_services
from quarry.store.tables import revisions, workspaces
from quarry.store.workspaces import get_workspace
from tests.conformance.corpus import (
    BROKEN,
    CONFIG,
    FORMATTER_WORKFLOW,
    FULL,
    FULL_WARNINGS,
    write_workspace,
)
from tests.conftest import Backend
from tests.support.processes import serve_in_thread


@pytest.fixture
def services(backend: Backend, tmp_path: Path) -> Iterator[Services]:
    svc = build_services(backend.settings(data_dir=tmp_path / "data"))
    yield svc
    svc.close()


def _state(svc: Services) -> tuple[str | None, int]:
    with svc.engine.connect() as conn:
        current = conn.execute(select(workspaces.c.current_revision_id)).scalar()
        stored = len(conn.execute(select(revisions.c.revision_id)).all())
    return current, stored


def test_warnings_only_promotes_and_reports_the_warnings(
    services: Services, tmp_path: Path
) -> None:
    root = shutil.copytree(FULL, tmp_path / "full")
    result = compile_local(services.engine, services.store, "local", root, "full")
    assert result.promoted
    assert [str(p) for p in result.problems] == FULL_WARNINGS
    assert _state(services) == (result.revision_id, 1)


def test_a_workflow_is_found_by_its_file_path(services: Services, tmp_path: Path) -> None:
    root = shutil.copytree(FULL, tmp_path / "full")
    result = compile_local(services.engine, services.store, "local", root, "full")
    with services.engine.connect() as conn:
        workspace = get_workspace(conn, "local", "full")

    def name_of(ref: str) -> str:
        doc = services.catalog.definition(workspace, result.revision_id, "workflow", ref)
        return str(json.loads(doc.body)["name"])

    assert name_of("workflows/sub") == "workflows/sub"
    assert name_of("workflows/sub.procedure.yml") == "workflows/sub"
    assert name_of("workflows/twin.procedure.yml") == "workflows/twin.procedure.yml"
    assert name_of("workflows/twin.workflow.yml") == "workflows/twin.workflow.yml"
    with pytest.raises(NotFound):  # two files share the stem: only their paths name them
        name_of("workflows/twin")


def test_compile_route_returns_the_warnings_of_the_files_it_parsed(
    backend: Backend, tmp_path: Path
) -> None:
    svc = build_services(
        backend.settings(data_dir=tmp_path / "data", revision_cache_ttl=0, inprocess_workers="off")
    )
    root = shutil.copytree(FULL, tmp_path / "full")
    compile_local(svc.engine, svc.store, "local", root, "full")
    app = root / "apps" / "dashboard.app.yml"
    app.write_text(app.read_text().replace("title: Sales\n", "title: Sales by region\n"))
    with serve_in_thread(create_app(svc)) as url, httpx.Client(base_url=url, timeout=30) as client:
        body = client.post("/api/v1/workspaces/full/compile").json()
    svc.close()
    assert body["promoted"] and body["parsed"] == 1
    # The parsed file's warnings, and the file kinds Quarry does not read (always).
    shown = ("apps/", ".databases/", "agents/build.aw.yml", "modeling/")
    expected = [w for w in FULL_WARNINGS if w.startswith(shown)]
    assert [str(Problem(**w)) for w in body["warnings"]] == expected
    assert {w["severity"] for w in body["warnings"]} == {"warning"}


def test_any_error_promotes_nothing(services: Services, tmp_path: Path) -> None:
    root = write_workspace(
        tmp_path / "ws", {"config.yml": CONFIG, "a.workflow.yml": FORMATTER_WORKFLOW}
    )
    good = compile_local(services.engine, services.store, "local", root, "ws")
    assert good.promoted
    files, expected = BROKEN["config.yml typo does not hide the other files' problems"]
    write_workspace(root, files)
    with pytest.raises(CompileFailed) as failed:
        compile_local(services.engine, services.store, "local", root, "ws")
    assert [str(p) for p in failed.value.problems] == expected
    assert _state(services) == (good.revision_id, 1)


def test_strict_compile_promotes_nothing_on_warnings(services: Services, tmp_path: Path) -> None:
    root = shutil.copytree(FULL, tmp_path / "full")
    with pytest.raises(CompileFailed):
        compile_local(services.engine, services.store, "local", root, "full", strict=True)
    assert _state(services) == (None, 0)


def _quarry(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "QUARRY_DATA_DIR": str(tmp_path / "cli-data")}
    return subprocess.run(
        [sys.executable, "-m", "quarry", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_compile_check_prints_warnings_and_strict_fails_on_them(tmp_path: Path) -> None:
    ok = _quarry(["compile", "--check", str(FULL)], tmp_path)
    assert ok.returncode == 0, ok.stderr
    lines = ok.stdout.splitlines()
    assert lines[:-1] == FULL_WARNINGS
    assert lines[-1].startswith("ok: 13 definitions")
    assert lines[-1].endswith(f"; {len(FULL_WARNINGS)} warnings")
    strict = _quarry(["compile", "--check", "--strict", str(FULL)], tmp_path)
    assert strict.returncode == 1
    assert strict.stdout.splitlines() == [w.replace(": warning:", ":") for w in FULL_WARNINGS]
    assert f"compile failed: {len(FULL_WARNINGS)} error(s)" in strict.stderr
    assert not (tmp_path / "cli-data").exists(), "--check must not create state"
