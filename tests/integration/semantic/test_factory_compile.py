"""The Factory compile runs the cross-file semantic checks: a topic naming a view
that does not exist, a view on an unknown database, and an ambiguous join path
fail ``quarry compile --check`` at file:line, and ``compile_local`` promotes nothing.
An incremental recompile that changes no view or topic does not check them again;
one that changes a view does, with the other views' bodies from the guarded parser."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from quarry.core.errors import CompileFailed
from quarry.factory.local import compile_local
from quarry.node.services import Services, build_services
from quarry.store.tables import revisions, workspaces
from tests.conftest import Backend

CONFIG = """\
databases:
  - name: local
    type: duckdb
    dataset: data
"""


def _view(name: str, entities: str, datasource: str = "local") -> str:
    return f"""\
name: {name}
table: {name}.csv
datasource: {datasource}
entities:
{entities}
dimensions:
  - name: id
    type: number
    expr: id
measures:
  - name: rows
    type: count
"""


def _entity(name: str, kind: str, key: str = "id") -> str:
    return f"  - name: {name}\n    type: {kind}\n    key: {key}\n"


GOOD = {
    "config.yml": CONFIG,
    "data/.keep": "",
    "orders.view.yml": _view("orders", _entity("order", "primary")),
    "sales.topic.yml": "name: sales\nviews:\n  - orders\n",
    "a.workflow.yml": "name: a\ntasks:\n  - name: t\n    type: formatter\n    template: hi\n",
}

# Two equally short paths from ``a`` to ``d`` (through b or through c).
DIAMOND = {
    "a.view.yml": _view(
        "a",
        _entity("a", "primary") + _entity("b", "foreign", "b_id") + _entity("c", "foreign", "c_id"),
    ),
    "b.view.yml": _view("b", _entity("b", "primary") + _entity("d", "foreign", "d_id")),
    "c.view.yml": _view("c", _entity("c", "primary") + _entity("d", "foreign", "d_id")),
    "d.view.yml": _view("d", _entity("d", "primary")),
    "diamond.topic.yml": "name: diamond\nviews:\n  - a\n  - b\n  - c\n  - d\n",
}


def _write(root: Path, files: dict[str, str]) -> Path:
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    return root


def _check(root: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "QUARRY_DATA_DIR": str(tmp_path / "cli-data")}
    return subprocess.run(
        [sys.executable, "-m", "quarry", "compile", "--check", str(root)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_compile_check_reports_cross_file_semantic_problems_at_file_and_line(
    tmp_path: Path,
) -> None:
    root = _write(tmp_path / "ws", GOOD)
    ok = _check(root, tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    _write(
        root,
        {
            "sales.topic.yml": "name: sales\nviews:\n  - orders\n  - refunds\n",
            "orders.view.yml": _view("orders", _entity("order", "primary"), "warehouse"),
            **DIAMOND,
        },
    )
    failed = _check(root, tmp_path)
    assert failed.returncode == 1
    out = failed.stdout + failed.stderr
    assert "sales.topic.yml:4:" in out and "refunds" in out
    assert "orders.view.yml:3:" in out and "warehouse" in out
    assert "diamond.topic.yml" in out and "ambiguous" in out
    assert not (tmp_path / "cli-data").exists()


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


def test_an_ambiguous_join_path_promotes_nothing(services: Services, tmp_path: Path) -> None:
    root = _write(tmp_path / "ws", GOOD)
    good = compile_local(services.engine, services.store, "local", root, "ws")
    assert good.promoted
    # Recompiles reuse the unchanged files' parse; the new views bring the problem.
    _write(root, DIAMOND)
    with pytest.raises(CompileFailed) as failed:
        compile_local(services.engine, services.store, "local", root, "ws")
    messages = [str(p) for p in failed.value.problems]
    assert any(m.startswith("diamond.topic.yml:") and "ambiguous" in m for m in messages), messages
    assert _state(services) == (good.revision_id, 1)
    # Changing only an unchanged view's neighbour: the check runs on reused bodies too.
    _write(root, {"diamond.topic.yml": "name: diamond\nviews:\n  - a\n  - b\n  - d\n"})
    fixed = compile_local(services.engine, services.store, "local", root, "ws")
    assert fixed.promoted
    _write(root, {"sales.topic.yml": "name: sales\nviews:\n  - orders\n  - gone\n"})
    with pytest.raises(CompileFailed) as again:
        compile_local(services.engine, services.store, "local", root, "ws")
    assert any("sales.topic.yml:4:" in str(p) and "gone" in str(p) for p in again.value.problems)
    assert _state(services) == (fixed.revision_id, 2)
