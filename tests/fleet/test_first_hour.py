"""The first hour, from the user's side (issue #19): real ``quarry`` processes, real
files, HTTP over real sockets. Every wait polls a condition with a deadline."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from quarry.demo import create_demo_workspace
from tests.support.processes import ServerProcess, start_quarry, wait_healthy, wait_until

pytestmark = pytest.mark.slow

NEW_WORKFLOW = """\
description: Added while quarry serve runs.
tasks:
  - name: one
    type: execute_sql
    database: local
    sql_query: SELECT 1 AS one
"""


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUARRY_")}
    env["QUARRY_DATA_DIR"] = str(tmp_path / "state")
    return env


def _definition_names(server: ServerProcess, workspace: str) -> set[str]:
    got = httpx.get(f"{server.url}/api/v1/workspaces/{workspace}/definitions", timeout=10)
    got.raise_for_status()
    return {d["path"] for d in got.json()["definitions"]}


def _latest_status(server: ServerProcess, workspace: str) -> dict[str, object]:
    got = httpx.get(f"{server.url}/api/v1/workspaces/{workspace}/compile/status", timeout=10)
    got.raise_for_status()
    branches: list[dict[str, object]] = got.json()["branches"]
    return branches[0] if branches else {}


def test_serve_recompiles_a_saved_file_and_says_so(tmp_path: Path) -> None:
    root = tmp_path / "shop"
    create_demo_workspace(root)
    server = start_quarry(["serve", str(root), "--name", "shop"], _env(tmp_path), tmp_path / "log")
    try:
        wait_healthy(server, timeout=90)
        first = _definition_names(server, "shop")
        assert "workflows/added.workflow.yml" not in first

        # A new file: served once saved, without `quarry compile`.
        (root / "workflows" / "added.workflow.yml").write_text(NEW_WORKFLOW)
        wait_until(
            lambda: "workflows/added.workflow.yml" in _definition_names(server, "shop"),
            60,
            "the saved workflow to be served",
        )
        wait_until(lambda: "recompiled shop @" in server.log(), 30, "the terminal to say so")
        assert "workflows/added.workflow.yml" in server.log()

        # A broken save: the problem is printed as file:line:col on one line and
        # recorded in the compile status; the previous revision stays served.
        (root / "workflows" / "added.workflow.yml").write_text("tasks: [unclosed\n")
        wait_until(
            lambda: bool(_latest_status(server, "shop").get("error")),
            60,
            "the failed compile in the compile status",
        )
        wait_until(lambda: "compile failed" in server.log(), 30, "the failure in the terminal")
        lines = server.log().splitlines()
        assert any(line.startswith("workflows/added.workflow.yml:") for line in lines), lines
        assert "workflows/added.workflow.yml" in _definition_names(server, "shop")
    finally:
        server.stop()
