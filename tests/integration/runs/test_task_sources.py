"""A failed step names its task's own ``file:line`` (issue #18) in the ``step.failed``
event and in ``GET /api/v1/runs/{id}``, over a real socket, on SQLite and Postgres,
and in ``quarry run``'s progress (the CLI as a process):
the line where the task is written — a formatter nested in a loop included, which
names nothing the old fallback (its first reference's line) could use.

Also: the positions follow the file's bytes, not its body, so a comment added above
the tasks moves them in the next revision although the compiled body is the same."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from quarry.api.app import create_app
from quarry.demo import create_demo_workspace
from quarry.factory.local import compile_local
from quarry.node.services import Services, build_services
from quarry.runtime.runs.executor import RunExecutor
from quarry.store import runs as runq
from tests.conftest import Backend
from tests.support.processes import serve_in_thread

WS = "/api/v1/workspaces/shop"
PATH = "workflows/where.workflow.yml"
# The formatter ``broken`` (line 13) fails in the loop's first iteration; the loop
# ``each`` (line 6) fails with it.
WHERE = """\
tasks:
  - name: intro
    type: formatter
    template: hello

  - name: each
    type: loop_sequential
    values: [1, 2]
    tasks:
      - name: fine
        type: formatter
        template: "{{ value }}"
      - name: broken
        type: formatter
        template: "{{ value | no_such_filter }}"
"""


@pytest.fixture
def api(backend: Backend, tmp_path: Path) -> Iterator[tuple[httpx.Client, Services, Path]]:
    svc = build_services(
        backend.settings(data_dir=tmp_path / "data", revision_cache_ttl=0, inprocess_workers="off")
    )
    root = create_demo_workspace(tmp_path / "shop")
    (root / PATH).write_text(WHERE)
    compile_local(svc.engine, svc.store, "local", root, "shop")
    with serve_in_thread(create_app(svc)) as url, httpx.Client(base_url=url, timeout=30) as c:
        yield c, svc, root
    svc.close()


def _run_to_the_end(client: httpx.Client, svc: Services, tmp_path: Path) -> str:
    created = client.post(f"{WS}/runs", json={"name": "workflows/where"})
    assert created.status_code == 202, created.text
    run_id = str(created.json()["id"])
    with svc.engine.connect() as conn:
        run = runq.get_run(conn, "local", run_id)
    RunExecutor(svc, tmp_path / "cache").execute(run, None)
    return run_id


def _failed_events(client: httpx.Client, run_id: str) -> dict[str, dict[str, Any]]:
    """The ``step.failed`` events of the run's stream, by step, as a client reads them."""
    with client.stream("GET", f"/api/v1/runs/{run_id}/events") as stream:
        text = "".join(stream.iter_text())
    found: dict[str, dict[str, Any]] = {}
    for block in text.split("\n\n"):
        lines = block.splitlines()
        if "event: step.failed" in lines:
            data = json.loads(next(x[6:] for x in lines if x.startswith("data: ")))
            found[data["step"]] = data
    return found


def test_a_failed_step_names_its_task_own_line(
    api: tuple[httpx.Client, Services, Path], tmp_path: Path
) -> None:
    client, svc, _ = api
    run_id = _run_to_the_end(client, svc, tmp_path)
    failed = _failed_events(client, run_id)
    assert failed["tasks.1.iter.0.tasks.1"]["source"] == f"{PATH}:13"
    assert failed["tasks.1"]["source"] == f"{PATH}:6"
    got = client.get(f"/api/v1/runs/{run_id}").json()
    assert got["state"] == "failed"
    steps = {s["step_key"]: s for s in got["steps"]}
    assert steps["tasks.1.iter.0.tasks.1"]["source"] == f"{PATH}:13"
    assert steps["tasks.1"]["source"] == f"{PATH}:6"
    assert "source" not in steps["tasks.0"]  # it succeeded: no error, no place


def test_the_line_follows_the_file_not_the_body(
    api: tuple[httpx.Client, Services, Path], tmp_path: Path
) -> None:
    client, svc, root = api
    (root / PATH).write_text("# two lines of comments\n# above the tasks\n" + WHERE)
    compile_local(svc.engine, svc.store, "local", root, "shop")
    run_id = _run_to_the_end(client, svc, tmp_path)
    assert _failed_events(client, run_id)["tasks.1.iter.0.tasks.1"]["source"] == f"{PATH}:15"
    steps = {s["step_key"]: s for s in client.get(f"/api/v1/runs/{run_id}").json()["steps"]}
    assert steps["tasks.1.iter.0.tasks.1"]["source"] == f"{PATH}:15"


def test_quarry_run_prints_where_the_failed_task_is(tmp_path: Path) -> None:
    root = create_demo_workspace(tmp_path / "shop")
    (root / PATH).write_text(WHERE)
    done = subprocess.run(
        [sys.executable, "-m", "quarry", "run", PATH],
        env={**os.environ, "QUARRY_DATA_DIR": str(tmp_path / "data"), "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=180,
        cwd=root,
    )
    assert done.returncode == 1, done.stderr
    failed = [line for line in done.stderr.splitlines() if "broken" in line and "✗" in line]
    assert failed and failed[0].endswith(f"(at {PATH}:13)"), done.stderr
