"""``quarry run FILE`` runs a definition whose own files compile while other files
of the workspace are broken; nothing is promoted, and a broken dependency still
stops the run. Real processes, real SQLite state and DuckDB."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import create_engine, select

from quarry.store.tables import revisions, workspaces
from tests.conformance.corpus import CONFIG, write_workspace

GOOD = """\
tasks:
  - name: total
    type: execute_sql
    database: local
    sql_query: select sum(amount) as total from 'orders.csv'
  - name: sub
    type: workflow
    src: sub.procedure.yml
"""
SUB = "tasks:\n  - name: hello\n    type: formatter\n    template: hi\n"
BROKEN = "tasks:\n  - name: x\n    type: formatter\n"


def _quarry(args: list[str], root: Path, data: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "QUARRY_DATA_DIR": str(data)}
    return subprocess.run(
        [sys.executable, "-m", "quarry", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=root,
    )


def _state(data: Path) -> tuple[str | None, int]:
    engine = create_engine(f"sqlite:///{data / 'state.db'}")
    with engine.connect() as conn:
        current = conn.execute(select(workspaces.c.current_revision_id)).scalar()
        stored = len(conn.execute(select(revisions.c.revision_id)).all())
    engine.dispose()
    return current, stored


def test_a_file_runs_while_an_unrelated_file_is_broken(tmp_path: Path) -> None:
    root = write_workspace(
        tmp_path / "ws",
        {
            "config.yml": CONFIG,
            "good.workflow.yml": GOOD,
            "sub.procedure.yml": SUB,
            "broken.workflow.yml": BROKEN,
            "data/orders.csv": "id,amount\n1,10\n2,32\n",
        },
    )
    data = tmp_path / "data"
    ran = _quarry(["run", "good.workflow.yml"], root, data)
    assert ran.returncode == 0, ran.stderr
    assert "broken.workflow.yml:2:5: warning: missing required field 'template'" in ran.stdout
    assert "succeeded: run" in ran.stdout
    assert "stored but not promoted" in ran.stderr
    assert _state(data) == (None, 1), "a partial revision must never be promoted"

    # The broken file itself, or a file that needs it, still fails with its problem.
    for target in ("broken.workflow.yml", "needs_broken.workflow.yml"):
        (root / "needs_broken.workflow.yml").write_text(
            "tasks:\n  - name: s\n    type: workflow\n    src: broken.workflow.yml\n"
        )
        failed = _quarry(["run", target], root, data)
        assert failed.returncode == 1
        assert "broken.workflow.yml:2:5: missing required field 'template'" in failed.stdout
    assert _state(data)[0] is None
