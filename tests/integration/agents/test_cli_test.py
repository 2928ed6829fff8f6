"""``quarry test`` in a real process: an agent's consistency test and test cases run
against the scripted model server, scored by the judge; a table on stdout, JSON and
JUnit XML written; exit 1 when a test scores under --min-score."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import yaml

from tests.integration.agents.conftest import Workspace, agent_file
from tests.support.model_server import ModelServer, text_reply, tool_reply


def quarry_test(ws: Workspace, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **ws.env, "NO_COLOR": "1", "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "quarry", "test", *args, "--workspace", str(ws.root)],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def _tested(tests: list[dict[str, object]]) -> str:
    body = yaml.safe_load(agent_file("local"))
    body["tests"] = tests
    return yaml.safe_dump(body)


def test_quarry_test_scores_consistency_and_cases(
    make_workspace: Callable[..., Workspace], server: ModelServer, tmp_path: Path
) -> None:
    ws = make_workspace(
        {
            "duck": _tested(
                [
                    {"type": "consistency", "n": 3, "task_description": "How many regions?"},
                    {
                        "type": "test_case",
                        "runs": 2,
                        "cases": [{"prompt": "Biggest region?", "expected": "North"}],
                    },
                ]
            )
        }
    )
    server.add(
        *[text_reply("There are 4 regions.", match="How many regions?") for _ in range(3)],
        *[text_reply("Same.\nAnswer: A", match="[Submission 1]: There are 4") for _ in range(3)],
        text_reply("North is the biggest.", match="Biggest region?"),
        text_reply("South is the biggest.", match="Biggest region?"),
        text_reply("Answer: A", match="[Submission 2]: North is"),
        text_reply("Answer: B", match="[Submission 2]: South is"),
    )
    out_json, out_xml = tmp_path / "r.json", tmp_path / "r.xml"
    done = quarry_test(
        ws, "agents/duck.agent.yml", "--json", str(out_json), "--junit", str(out_xml)
    )
    assert done.returncode == 1, done.stderr  # the case scored 0.5 < 0.8
    assert "agents/duck.agent.yml#0 consistency" in done.stdout and "1.00" in done.stdout
    assert "FAIL" in done.stdout and "0.50" in done.stdout
    report = json.loads(out_json.read_text())
    scores = [(t["type"], t["score"], t["passed"]) for t in report["tests"]]
    assert scores == [("consistency", 1.0, True), ("test_case", 0.5, False)]
    # what the results were recorded under: the compiled revision (no git here)
    assert len(report["revision"]) >= 32 and report["threshold"] == 0.8
    assert report["commit"] is None and report["branch"] is None
    xml = out_xml.read_text()
    assert 'tests="2" failures="1"' in xml and "under the threshold 0.8" in xml

    # the same with a lower bar passes (the judge's verdicts are scripted again)
    server.add(
        *[text_reply("There are 4 regions.", match="How many regions?") for _ in range(3)],
        *[text_reply("Answer: A", match="[Submission 1]: There are 4") for _ in range(3)],
        text_reply("North is the biggest.", match="Biggest region?"),
        text_reply("South is the biggest.", match="Biggest region?"),
        text_reply("Answer: A", match="[Submission 2]: North is"),
        text_reply("Answer: B", match="[Submission 2]: South is"),
    )
    again = quarry_test(ws, "agents", "--min-score", "0.5")
    assert again.returncode == 0, again.stdout + again.stderr


def test_quarry_test_runs_a_procedures_consistency_test(
    make_workspace: Callable[..., Workspace], server: ModelServer, tmp_path: Path
) -> None:
    procedure = {
        "tasks": [
            {
                "name": "count",
                "type": "execute_sql",
                "database": "local",
                "sql_query": "SELECT 4 AS n",
            },
            {"name": "say", "type": "formatter", "template": "There are {{ count }} regions."},
        ],
        "tests": [{"type": "consistency", "n": 2, "task_description": "How many regions?"}],
    }
    ws = make_workspace({}, files={"workflows/regions.workflow.yml": yaml.safe_dump(procedure)})
    server.add(text_reply("Identical.\nAnswer: A", match="[Question]: How many regions?"))
    out = tmp_path / "r.json"
    done = quarry_test(ws, "workflows/regions.workflow.yml", "--json", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    (only,) = json.loads(out.read_text())["tests"]
    assert only["type"] == "consistency" and only["score"] == 1.0 and only["task_ref"] == "say"
    assert only["outputs"][0] == only["outputs"][1] and only["outputs"][0].startswith("There are")
    judged = server.requests[-1]
    assert judged.body["model"] == "gpt-4o-mini" and "[Submission 2]: There are" in judged.last


def test_quarry_test_runs_oxy_test_files(
    make_workspace: Callable[..., Workspace], server: ModelServer, tmp_path: Path
) -> None:
    test_file = {
        "name": "regions",
        "settings": {"runs": 2, "concurrency": 1},
        "cases": [
            {
                "name": "top",
                "prompt": "Biggest region?",
                "expected": "North",
                "tool": "execute_sql",
            }
        ],
    }
    ws = make_workspace(
        {"duck": agent_file("local")},
        files={
            # no target: Oxy infers the sibling agents/duck.agent.yml
            "agents/duck.agent.test.yml": yaml.safe_dump(test_file, sort_keys=False),
            "agents/typo.agent.test.yml": "cases:\n  - prompt: a\n    expected: b\n    runz: 2\n",
        },
    )
    server.add(
        # run 1 queries, then answers; run 2 answers without calling the tool
        tool_reply("execute_sql", match="Biggest region?", sql="SELECT 'zz' AS marker"),
        text_reply("North is the biggest.", match="zz"),
        text_reply("North is the biggest.", match="Biggest region?"),
        text_reply("Answer: A", match="[Submission 2]: North is"),
    )
    out_json, out_xml = tmp_path / "r.json", tmp_path / "r.xml"
    done = quarry_test(ws, "agents", "--json", str(out_json), "--junit", str(out_xml))
    assert done.returncode == 1, done.stdout + done.stderr
    # the file Oxy refuses is an error at its line, the other ran
    assert "agents/typo.agent.test.yml:4:5:" in done.stderr and "runz" in done.stderr
    assert "ERROR" in done.stdout
    tests = {t["name"]: t for t in json.loads(out_json.read_text())["tests"]}
    ran = tests["agents/duck.agent.test.yml (regions) case top"]
    assert ran["agent"] == "agents/duck.agent.yml" and ran["type"] == "test_file"
    # one answer judged consistent, the other did not call execute_sql: 1 of 2
    assert ran["score"] == 0.5 and ran["runs"] == 2 and ran["runs_without_tool"] == 1
    judged = [r for r in server.requests if "[Submission 2]" in r.last]
    assert len(judged) == 1
    assert "runz" in tests["agents/typo.agent.test.yml"]["error"]
    xml = out_xml.read_text()
    assert 'tests="2" failures="1" errors="1"' in xml and "<error message=" in xml
