"""Strict templates, switched on three ways: the workspace (``defaults:
strict_templates: true`` in config.yml), the process (``QUARRY_STRICT_TEMPLATES``)
and ``quarry run --strict-templates``. Off, undefined names print as nothing, as in
Oxy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from quarry.runtime.engine import ListOutput, MapOutput, TemplateFailed, TextOutput
from tests.integration.runtime.conftest import Runner
from tests.support.processes import quarry_process, wait_until

# Template modes are the engine's; the backend only stores what it ran.
pytestmark = pytest.mark.backend_agnostic

WORKFLOW = """\
tasks:
  - name: each
    type: loop_sequential
    values: [1, 2]
    concurrency: 2
    tasks:
      - name: inner
        type: formatter
        template: "{{ each.value }}:{{ no_such_name }}"
  - name: child
    type: workflow
    src: workflows/child.workflow.yml
"""
CHILD = """\
tasks:
  - name: deep
    type: formatter
    template: "child:{{ also_missing }}"
"""


def _workspace(root: Path, *, strict: bool | None) -> Path:
    (root / ".db").mkdir(parents=True)
    (root / ".db" / "t.csv").write_text("n\n1\n")
    (root / "workflows").mkdir()
    defaults = "" if strict is None else f"defaults:\n  strict_templates: {str(strict).lower()}\n"
    (root / "config.yml").write_text(
        "databases:\n  - {name: local, type: duckdb, dataset: .db/}\n" + defaults
    )
    (root / "workflows" / "modes.workflow.yml").write_text(WORKFLOW)
    (root / "workflows" / "child.workflow.yml").write_text(CHILD)
    return root


def test_lenient_by_default(make_runner: Callable[..., Runner], tmp_path: Path) -> None:
    for strict in (None, False):
        runner = make_runner(_workspace(tmp_path / f"ws-{strict}", strict=strict))
        outputs = runner.run("workflows/modes").outputs
        loop = outputs["each"]
        assert isinstance(loop, ListOutput)
        assert [item["inner"] for item in loop.items] == [TextOutput("1:"), TextOutput("2:")]
        child = outputs["child"]
        assert isinstance(child, MapOutput) and child.outputs["deep"] == TextOutput("child:")


def test_workspace_setting_makes_every_step_strict(
    make_runner: Callable[..., Runner], tmp_path: Path
) -> None:
    runner = make_runner(_workspace(tmp_path / "ws", strict=True))
    # Loop iterations run on worker threads (concurrency 2): strict there too.
    with pytest.raises(TemplateFailed, match="`no_such_name` is undefined") as failed:
        runner.run("workflows/modes")
    assert failed.value.task == "inner"


def test_workspace_setting_reaches_sub_workflows(
    make_runner: Callable[..., Runner], tmp_path: Path
) -> None:
    root = _workspace(tmp_path / "ws", strict=True)
    (root / "workflows" / "modes.workflow.yml").write_text(
        WORKFLOW.replace("{{ no_such_name }}", "ok")
    )
    runner = make_runner(root)
    with pytest.raises(TemplateFailed, match="`also_missing` is undefined") as failed:
        runner.run("workflows/modes")
    assert failed.value.task == "deep"


def _quarry(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "quarry", *args],
        env={**os.environ, "QUARRY_STRICT_TEMPLATES": "0", **env},
        capture_output=True,
        text=True,
        timeout=180,
        cwd=cwd,
    )


def test_quarry_run_flag_and_setting(tmp_path: Path) -> None:
    root = _workspace(tmp_path / "ws", strict=None)
    env = {"QUARRY_DATA_DIR": str(tmp_path / "data")}
    lenient = _quarry(["run", "workflows/modes"], env, cwd=root)
    assert lenient.returncode == 0, lenient.stderr
    flag = _quarry(["run", "workflows/modes", "--strict-templates"], env, cwd=root)
    assert flag.returncode == 1
    assert "no_such_name" in flag.stderr + flag.stdout
    setting = _quarry(["run", "workflows/modes"], {**env, "QUARRY_STRICT_TEMPLATES": "1"}, root)
    assert setting.returncode == 1
    assert "no_such_name" in setting.stderr + setting.stdout


def test_quarry_serve_flag(tmp_path: Path) -> None:
    root = _workspace(tmp_path / "ws", strict=None)
    # The flag wins over the environment, which says lenient.
    env = {"QUARRY_DATA_DIR": str(tmp_path / "data"), "QUARRY_STRICT_TEMPLATES": "0"}
    args = ["serve", str(root), "--name", "ws", "--strict-templates"]
    with (
        quarry_process(args, env, tmp_path / "serve.log") as server,
        httpx.Client(base_url=server.url, timeout=10) as client,
    ):
        created = client.post("/api/v1/workspaces/ws/runs", json={"name": "workflows/modes"})
        assert created.status_code == 202, created.text
        run_id = created.json()["id"]

        def finished() -> dict[str, Any] | None:
            run: dict[str, Any] = client.get(f"/api/v1/runs/{run_id}").json()
            return run if run["state"] in ("succeeded", "failed", "cancelled") else None

        wait_until(lambda: finished() is not None, 60, "the run to finish")
        run = finished()
    assert run is not None and run["state"] == "failed"
    assert "no_such_name" in json.dumps(run)
