"""Strict templates, switched on three ways: the workspace (``defaults:
strict_templates: true`` in config.yml), the process (``QUARRY_STRICT_TEMPLATES``)
and ``quarry run --strict-templates``. Off, undefined names print as nothing, as in
Oxy."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from quarry.runtime.engine import ListOutput, MapOutput, TemplateFailed, TextOutput
from tests.integration.runtime.conftest import Runner

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
    clean = {k: v for k, v in os.environ.items() if not k.startswith("QUARRY_")}
    return subprocess.run(
        [sys.executable, "-m", "quarry", *args],
        env={**clean, **env},
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
