"""The first hour, from the user's side (issue #19): real ``quarry`` processes, real
files, HTTP over real sockets. Every wait polls a condition with a deadline."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
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
    env["QUARRY_AUTH"] = "auto"  # as a user runs it (start_quarry merges os.environ)
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
        assert "auth: open (a local SQLite instance with no active token)" in server.log()
        dashboard = f"{server.url}/workspaces/shop/apps/sales_overview"
        assert f"dashboard: {dashboard}" in server.log()  # printed, and it is the page
        page = httpx.get(dashboard, timeout=10)
        assert page.status_code == 200 and "Sales overview" in page.text
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


def test_serve_starts_on_a_folder_with_a_broken_file(tmp_path: Path) -> None:
    """A typo in one file used to stop ``quarry serve`` from starting at all; now it
    serves, prints the problem, and goes live as soon as the file is saved fixed."""
    root = tmp_path / "shop"
    create_demo_workspace(root)
    broken = root / "workflows" / "added.workflow.yml"
    broken.write_text("tasks: [unclosed\n")
    server = start_quarry(["serve", str(root), "--name", "shop"], _env(tmp_path), tmp_path / "log")
    try:
        wait_healthy(server, timeout=90)
        lines = server.log().splitlines()
        assert any(
            line.startswith("workflows/added.workflow.yml:2:1: invalid YAML") for line in lines
        ), lines
        summary = next(line for line in lines if line.startswith("compile failed:"))
        assert "1 error(s) in shop; nothing is live yet. Fix and save" in summary
        assert "watching" in server.log()
        assert httpx.get(f"{server.url}/", timeout=10).status_code == 200

        listing = f"{server.url}/api/v1/workspaces/shop/definitions"
        assert httpx.get(listing, timeout=10).status_code == 404  # no revision yet

        broken.write_text(NEW_WORKFLOW)
        wait_until(
            lambda: (
                httpx.get(listing, timeout=10).status_code == 200
                and "workflows/added.workflow.yml" in _definition_names(server, "shop")
            ),
            60,
            "the fixed workspace to go live",
        )
        page = httpx.get(f"{server.url}/workspaces/shop/apps/sales_overview", timeout=10)
        assert page.status_code == 200 and "Sales overview" in page.text
    finally:
        server.stop()


def _quarry(
    args: list[str], env: dict[str, str], cwd: Path, *, tty: bool = False
) -> tuple[int, str]:
    """Run ``quarry ARGS`` to completion; its stdout+stderr, through a pseudo-terminal
    when ``tty`` (what a person sees) or a pipe (what CI and editors see)."""
    command = [sys.executable, "-m", "quarry", *args]
    if not tty:
        done = subprocess.run(
            command,
            env=env,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=120,
            check=False,
        )
        return done.returncode, done.stdout.decode()
    leader, follower = pty.openpty()
    with subprocess.Popen(
        command, env=env, cwd=cwd, stdin=follower, stdout=follower, stderr=follower
    ) as process:
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the process closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        code = process.wait(timeout=120)
    os.close(leader)
    return code, b"".join(chunks).decode(errors="replace").replace("\r\n", "\n")


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    root = tmp_path / "shop"
    create_demo_workspace(root)
    return root


def test_a_terminal_sees_results_not_the_machinery(tmp_path: Path, shop: Path) -> None:
    env = _env(tmp_path)
    code, text = _quarry(["compile", "."], env, shop, tty=True)
    assert code == 0, text
    assert "promoted: shop @" in text
    for chatter in ("alembic", "topology", "Running upgrade", "quarry.factory.compiler"):
        assert chatter not in text, text

    # A fresh state database, so there are migrations for alembic to report (a current
    # one is recognised without importing alembic at all).
    code, text = _quarry(["--verbose", "compile", "."], _env(tmp_path / "fresh"), shop, tty=True)
    assert code == 0, text
    assert "alembic" in text and "topology" in text


def test_json_logs_for_machines(tmp_path: Path, shop: Path) -> None:
    env = {**_env(tmp_path), "QUARRY_LOG_FORMAT": "json"}
    done = subprocess.run(
        [sys.executable, "-m", "quarry", "compile", "."],
        env=env,
        cwd=shop,
        capture_output=True,
        timeout=120,
        check=True,
    )
    records = [json.loads(line) for line in done.stderr.decode().splitlines() if line]
    assert records and all({"ts", "level", "logger", "msg"} <= r.keys() for r in records)
    assert any(r["logger"].startswith("alembic") for r in records)  # machines get it all
    assert b"promoted: shop @" in done.stdout


def test_error_lines_are_never_wrapped_in_a_pipe(tmp_path: Path, shop: Path) -> None:
    env = _env(tmp_path)
    long_name = "a_workflow_name_long_enough_to_pass_the_eighty_columns_of_a_default_console"
    code, text = _quarry(["run", long_name], env, shop)
    assert code == 1
    error = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and long_name in error[0], text

    (shop / "workflows" / f"{long_name}.workflow.yml").write_text("tasks: [unclosed\n")
    code, text = _quarry(["compile", "--check", "."], env, shop)
    assert code == 1
    problem = [line for line in text.splitlines() if line.startswith(f"workflows/{long_name}")]
    assert len(problem) == 1 and len(problem[0]) > 80, text


def test_init_makes_a_workspace_that_checks_and_runs(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUARRY_")}
    code, text = _quarry(["init", "mine"], env, tmp_path)
    assert code == 0, text
    assert "quarry serve ." in text  # the next command
    root = tmp_path / "mine"
    assert (root / ".git").is_dir()
    assert ".quarry/" in (root / ".gitignore").read_text().splitlines()

    code, text = _quarry(["compile", "--check", "."], env, root)
    assert code == 0, text
    assert "warning" not in text, text

    code, text = _quarry(
        ["run", "workflows/sales_report.procedure.yml", "--var", "product=Pen"], env, root
    )
    assert code == 0, text
    assert "succeeded" in text
    assert (root / ".quarry").is_dir()  # local state, and git does not see it
    status = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert status and ".quarry" not in status, status

    before = sorted(
        p.relative_to(root).as_posix() for p in root.rglob("*") if ".git/" not in str(p)
    )
    (root / "config.yml").write_text("# mine now\n")
    code, text = _quarry(["init", "."], env, root)
    assert code == 1 and "never overwrites" in text, text
    assert (root / "config.yml").read_text() == "# mine now\n"
    after = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if ".git/" not in str(p))
    assert before == after


EXPORTING = """\
description: Exports a table and shows a report.
tasks:
  - name: regions
    type: execute_sql
    database: local
    sql_query: SELECT region, count(*) AS orders FROM sales GROUP BY region ORDER BY region
    export:
      path: out/regions.csv
      format: csv
  - name: biggest
    type: execute_sql
    database: local
    sql_query: SELECT product, unit_price FROM sales ORDER BY unit_price DESC, order_id LIMIT 2
"""


def _runs_doc_command() -> list[str]:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "runs.md").read_text()
    section = doc.split("## `quarry run`", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    run_line = next(line for line in block.splitlines() if line.startswith("quarry run "))
    return run_line.split()[1:]


def test_run_shows_what_the_workflow_produced(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUARRY_")}
    assert _quarry(["init", "mine"], env, tmp_path)[0] == 0
    root = tmp_path / "mine"

    # The documented example works on the workspace it names, and ends with the report.
    code, text = _quarry(_runs_doc_command(), env, root)
    assert code == 0, text
    assert "Revenue by region (Pen)" in text and "# Revenue" not in text  # rendered
    assert "East" in text and "30.0" in text  # its table, inside the report

    (root / "workflows" / "exporting.workflow.yml").write_text(EXPORTING)
    code, text = _quarry(["run", "workflows/exporting.workflow.yml"], env, root)
    assert code == 0, text
    assert (root / "out" / "regions.csv").is_file()
    assert f"exported {root / 'out' / 'regions.csv'} (csv," in text
    assert "Backpack" in text and "biggest" in text  # the last table, as a table

    done = subprocess.run(
        [sys.executable, "-m", "quarry", "run", "workflows/exporting.workflow.yml", "--json"],
        env=env,
        cwd=root,
        capture_output=True,
        timeout=120,
        check=True,
    )
    document = json.loads(done.stdout)
    assert document["state"] == "succeeded"
    assert document["table"]["step"] == "biggest" and len(document["table"]["rows"]) == 2
    assert document["exports"][0]["path"] == "out/regions.csv"
    assert "✓" not in done.stderr.decode()  # no progress for machines

    done = subprocess.run(
        [sys.executable, "-m", "quarry", "run", "workflows/sales_report.procedure.yml", "-q"],
        env=env,
        cwd=root,
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert done.stdout == b""


def test_serve_says_why_it_requires_tokens(tmp_path: Path, shop: Path) -> None:
    env = _env(tmp_path)
    assert _quarry(["tenants", "create", "local"], env, tmp_path)[0] == 0
    code, text = _quarry(["tokens", "create", "--tenant", "local"], env, tmp_path)
    assert code == 0, text
    server = start_quarry(["serve", str(shop)], env, tmp_path / "log")
    try:
        wait_until(lambda: "listening on" in server.log(), 90, "the listening line")
        wait_until(lambda: "auth: tokens" in server.log(), 30, "the auth banner")
        banner = " ".join(server.log().split())
        assert "this local instance has active tokens" in banner, banner
        assert "tenant 'local'" in banner
        # The browser is asked to sign in (a page, not JSON) ...
        wait_healthy(server, timeout=60)
        page = httpx.get(f"{server.url}/", headers={"accept": "text/html"}, timeout=10)
        assert page.status_code == 303, page.text
        page = httpx.get(f"{server.url}{page.headers['location']}", timeout=10)
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        assert "sign in" in page.text.lower()
        # ... and the token's tenant sees the folder's workspace.
        token = re.search(r"qk_[A-Za-z0-9_-]{43}", text)
        assert token is not None, text
        listed = httpx.get(
            f"{server.url}/api/v1/workspaces",
            headers={"authorization": f"Bearer {token.group(0)}"},
            timeout=10,
        )
        assert listed.status_code == 200
        assert "shop" in {w["name"] for w in listed.json()["workspaces"]}
    finally:
        server.stop()


def test_local_state_is_ignored_and_a_registered_folder_is_reused(tmp_path: Path) -> None:
    root = tmp_path / "quarry-demo"
    create_demo_workspace(root)
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUARRY_")}
    code, text = _quarry(["compile", ".", "--name", "demo"], env, root)  # as quarry demo does
    assert code == 0, text
    code, text = _quarry(["run", "workflows/monthly_revenue.workflow.yml", "-q"], env, root)
    assert code == 0, text
    code, text = _quarry(["workspace", "list"], env, root)
    assert code == 0, text
    assert "demo" in text and "quarry-demo" not in text.replace(str(root), ""), text

    assert (root / ".quarry" / ".gitignore").read_text().splitlines()[-1] == "*"
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    status = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "config.yml" in status and ".quarry" not in status, status
