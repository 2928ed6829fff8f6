"""``quarry test`` results stored per git commit and branch in the state database
(SQLite and Postgres), and a branch compared with ``main``: scores, delta, the
regression flagged, exit 1 with ``--fail-on-regression``. Real processes, a real git
repository, the scripted model server."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from sqlalchemy import create_engine, select

from quarry.store.eval_results import eval_results, eval_runs
from tests.integration.agents.conftest import Workspace, agent_file
from tests.integration.agents.test_cli_test import quarry_test
from tests.support.model_server import ModelServer, text_reply, tool_reply
from tests.support.services import create_database, drop_database, pg_url

GOOD = "SELECT region, count(*) AS orders_good FROM 'orders.csv' GROUP BY region"
BAD = "SELECT region, count(*) - 1 AS orders_bad FROM 'orders.csv' GROUP BY region"


@pytest.fixture(params=["sqlite", "postgres"])
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'cli-state.db'}"
        return
    name = create_database()
    yield pg_url(name)
    drop_database(name)


def _git(root: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"}  # fmt: skip
    done = subprocess.run(
        ["git", "-C", str(root), *args], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def _answer(server: ModelServer, sql: str, marker: str) -> None:
    server.add(
        tool_reply("execute_sql", match="Orders by region?", sql=sql),
        text_reply("Counted.", match=marker),
    )


def test_results_are_stored_per_branch_and_a_regression_is_flagged(
    make_workspace: Callable[..., Workspace],
    server: ModelServer,
    state_url: str,
    tmp_path: Path,
) -> None:
    body = yaml.safe_load(agent_file("local"))
    body["tests"] = [
        {
            "type": "test_case",
            "runs": 1,
            "cases": [
                {"name": "orders", "prompt": "Orders by region?", "expected": "-",
                 "expected_sql": GOOD.replace("orders_good", "n")},
            ],
        }
    ]  # fmt: skip
    ws = make_workspace({"duck": yaml.safe_dump(body)})
    ws.env["QUARRY_DATABASE_URL"] = state_url
    _git(ws.root, "init", "-q", "-b", "main")
    _git(ws.root, "add", "-A")
    _git(ws.root, "commit", "-q", "-m", "base")
    main_commit = _git(ws.root, "rev-parse", "HEAD")

    _answer(server, GOOD, "orders_good")
    assert quarry_test(ws, "agents").returncode == 0

    _git(ws.root, "checkout", "-q", "-b", "feature")
    (ws.root / "docs" / "note.md").write_text("a change on the branch\n")
    _git(ws.root, "add", "-A")
    _git(ws.root, "commit", "-q", "-m", "change")
    feature_commit = _git(ws.root, "rev-parse", "HEAD")

    _answer(server, BAD, "orders_bad")
    out = tmp_path / "compare.json"
    done = quarry_test(
        ws, "agents", "--min-score", "0", "--compare", "main", "--fail-on-regression",
        "--compare-json", str(out),
    )  # fmt: skip
    # every test passes --min-score 0; the exit status is the regression's
    assert done.returncode == 1, done.stdout + done.stderr
    assert "REGRESSED" in done.stdout and "-1.00" in done.stdout
    assert "1 regression(s) against main" in done.stderr
    report = json.loads(out.read_text())
    (only,) = report["tests"]
    assert (report["branch"], report["base"], report["regressions"]) == ("feature", "main", 1)
    assert only["base"]["score"] == 1.0 and only["branch"]["score"] == 0.0
    assert only["delta"] == -1.0 and only["status"] == "regressed"
    assert only["base"]["git_commit"] == main_commit
    assert only["branch"]["git_commit"] == feature_commit

    # stored: one run per invocation, keyed by commit and branch
    engine = create_engine(state_url)
    try:
        with engine.connect() as conn:
            runs = conn.execute(
                select(eval_runs.c.branch, eval_runs.c.git_commit).order_by(eval_runs.c.created_at)
            ).all()
            scores = conn.execute(select(eval_results.c.score)).scalars().all()
    finally:
        engine.dispose()
    assert [tuple(r) for r in runs] == [("main", main_commit), ("feature", feature_commit)]
    assert sorted(scores) == [0.0, 1.0]

    # compare only: nothing runs (the model server is asked nothing more)
    asked = len(server.requests)
    quiet = quarry_test(ws, "--compare", "main", "--compare-only")
    assert quiet.returncode == 0, quiet.stdout + quiet.stderr  # not asked to fail
    assert "REGRESSED" in quiet.stdout
    flagged = quarry_test(ws, "--compare", "main", "--compare-only", "--fail-on-regression")
    assert flagged.returncode == 1
    assert len(server.requests) == asked

    # the branch fixed: no regression
    _answer(server, GOOD, "orders_good")
    fixed = quarry_test(ws, "agents", "--compare", "main", "--fail-on-regression")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "REGRESSED" not in fixed.stdout and "same" in fixed.stdout


def test_compare_refuses_a_working_copy_on_no_branch(
    make_workspace: Callable[..., Workspace], server: ModelServer
) -> None:
    ws = make_workspace({})
    done = quarry_test(ws, "--compare", "main", "--compare-only")
    assert done.returncode != 0
    assert "--branch" in done.stderr
    assert quarry_test(ws, "--compare-only").returncode != 0
