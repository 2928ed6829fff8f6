"""``quarry test`` in a real process: correctness by SQL results (``expected_sql``) on
DuckDB and Postgres, and Oxy's ``type: custom`` dataset tests on an agent and a
workflow, against the scripted model server."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import yaml

from tests.integration.agents.conftest import Workspace, agent_file, warehouse_tables
from tests.integration.agents.test_cli_test import quarry_test
from tests.support.model_server import ModelServer, text_reply, tool_reply

REVENUE = (
    "SELECT region, ROUND(SUM(quantity * unit_price), 2) AS revenue "
    "FROM 'orders.csv' GROUP BY region"
)


def _agent(database: str, tests: list[dict[str, object]]) -> str:
    body = yaml.safe_load(agent_file(database))
    body["tests"] = tests
    return yaml.safe_dump(body)


def test_expected_sql_scores_runs_by_their_sql_results_on_duckdb(
    make_workspace: Callable[..., Workspace], server: ModelServer, tmp_path: Path
) -> None:
    cases = [
        {"name": "revenue", "prompt": "Revenue by region?", "expected": "-",
         "expected_sql": REVENUE},
        {"name": "ranked", "prompt": "Regions by revenue?", "expected": "-",
         "expected_sql": REVENUE + " ORDER BY revenue DESC"},
    ]  # fmt: skip
    ws = make_workspace({"duck": _agent("local", [{"type": "test_case", "runs": 3,
                                                   "cases": cases}])})  # fmt: skip
    server.add(
        # revenue, run 1: same numbers, other column names, other row order, a float
        # cast (tolerance) -> equal
        tool_reply(
            "execute_sql",
            match="Revenue by region?",
            sql="SELECT region AS r, SUM(quantity * unit_price)::DOUBLE AS total_one "
            "FROM 'orders.csv' GROUP BY 1 ORDER BY 1 DESC",
        ),
        # run 2: only 2023 -> different numbers
        tool_reply(
            "execute_sql",
            match="Revenue by region?",
            sql="SELECT region, ROUND(SUM(quantity * unit_price), 2) AS total_two "
            "FROM 'orders.csv' WHERE order_date < DATE '2024-01-01' GROUP BY region",
        ),
        # run 3: answers without SQL
        text_reply("No idea.", match="Revenue by region?"),
        text_reply("North leads.", match="total_one"),
        text_reply("North leads.", match="total_two"),
        # ranked: one run in the expected order, one in the reverse order, one with a
        # failing query then nothing
        tool_reply(
            "execute_sql",
            match="Regions by revenue?",
            sql=REVENUE.replace("AS revenue", "AS rev_desc") + " ORDER BY 2 DESC",
        ),
        tool_reply(
            "execute_sql",
            match="Regions by revenue?",
            sql=REVENUE.replace("AS revenue", "AS rev_asc") + " ORDER BY 2 ASC",
        ),
        tool_reply("execute_sql", match="Regions by revenue?", sql="SELECT nope FROM nowhere"),
        text_reply("Sorted.", match="rev_desc"),
        text_reply("Sorted.", match="rev_asc"),
        text_reply("It failed.", match="Error:"),
    )
    out_json, out_xml = tmp_path / "r.json", tmp_path / "r.xml"
    done = quarry_test(ws, "agents", "--json", str(out_json), "--junit", str(out_xml))
    assert done.returncode == 1, done.stdout + done.stderr
    tests = {t["name"].rsplit(" ", 1)[-1]: t for t in json.loads(out_json.read_text())["tests"]}
    revenue, ranked = tests["revenue"], tests["ranked"]
    assert (revenue["score"], revenue["sql_equal"], revenue["runs"]) == (0.3333, 1, 3)
    reasons = sorted(v["reason"] for v in revenue["sql_results"])
    assert reasons[0].startswith("a row differs") and reasons[1] == "equal (4 rows)"
    assert reasons[2] == "the answer ran no successful execute_sql"
    assert (ranked["score"], ranked["sql_equal"]) == (0.3333, 1)
    assert any(v["reason"].startswith("row 1 differs") for v in ranked["sql_results"])
    # no judge was asked: SQL results decide
    assert not [r for r in server.requests if "[Submission" in r.last]
    assert "1/3 equal" in done.stdout
    xml = out_xml.read_text()
    assert "SQL results equal in 1 of 3 runs" in xml and 'failures="2"' in xml


def test_expected_sql_on_postgres_is_read_only_and_numeric_tolerant(
    make_workspace: Callable[..., Workspace],
    server: ModelServer,
    warehouse: str,
    tmp_path: Path,
) -> None:
    cases = [
        {"name": "count", "prompt": "Notes per region?", "expected": "-",
         "expected_sql": "SELECT region, count(*) FROM notes GROUP BY region"},
        {"name": "bad", "prompt": "Drop?", "expected": "-",
         "expected_sql": "DROP TABLE notes"},
        {"name": "broken", "prompt": "Broken?", "expected": "-",
         "expected_sql": "SELECT missing_column FROM notes"},
    ]  # fmt: skip
    ws = make_workspace(
        {"pg": _agent("pg", [{"type": "test_case", "runs": 1, "cases": cases}])},
        warehouse=warehouse,
    )
    server.add(
        tool_reply(
            "execute_sql",
            match="Notes per region?",
            sql="SELECT region AS where_, count(id)::float8 + 0.0000000001 AS n_float "
            "FROM notes GROUP BY region",
        ),
        text_reply("north 2, south 1", match="n_float"),
    )
    out_json = tmp_path / "r.json"
    done = quarry_test(ws, "agents/pg.agent.yml", "--json", str(out_json), "--min-score", "1")
    assert done.returncode == 1, done.stdout + done.stderr  # the two broken cases
    tests = {t["name"].rsplit(" ", 1)[-1]: t for t in json.loads(out_json.read_text())["tests"]}
    assert tests["count"]["score"] == 1.0 and tests["count"]["passed"]
    assert tests["count"]["sql_results"][0]["reason"] == "equal (2 rows)"
    assert "refused" in tests["bad"]["error"] and "DROP" in tests["bad"]["error"]
    assert "missing_column" in tests["broken"]["error"]
    assert warehouse_tables(warehouse) == ["notes"]
    assert done.stdout.count("ERROR") == 2


DATASET = [
    {"query": "Which region sold most?", "response": "North",
     "relevant_contexts": ["docs/data_dictionary.md"]},
    {"query": "How many regions?", "response": "Four", "relevant_contexts": []},
]  # fmt: skip


def test_custom_dataset_test_of_an_agent_scores_each_metric(
    make_workspace: Callable[..., Workspace], server: ModelServer, tmp_path: Path
) -> None:
    tests = [
        {
            "type": "custom",
            "dataset": "docs/regions.yml",
            "is_context_id": True,
            "concurrency": 1,
            "metrics": [
                {"type": "similarity"},
                {"type": "correctness", "model_ref": "claude"},
                {"type": "context_recall"},
            ],
        },
        {"type": "custom", "dataset": "docs/missing.yml"},
    ]
    ws = make_workspace(
        {"duck": _agent("local", tests)},
        files={"docs/regions.yml": yaml.safe_dump(DATASET)},
    )
    server.add(
        text_reply("North sold most.", match="Which region sold most?"),
        text_reply("There are three.", match="How many regions?"),
        # similarity: submission 1 is the output, submission 2 the reference
        text_reply("Same.\nAnswer: A", match="[Submission 2]: North"),
        text_reply("Differs.\nAnswer: B", match="[Submission 2]: Four"),
    )
    server.add(
        text_reply("Verdict: PASS", match="[Agent's Answer]: North sold most."),
        text_reply("Verdict: FAIL", match="[Agent's Answer]: There are three."),
    )
    out_json = tmp_path / "r.json"
    done = quarry_test(ws, "agents/duck.agent.yml", "--json", str(out_json), "--min-score", "0.5")
    assert done.returncode == 1, done.stdout + done.stderr
    got = {t["name"]: t for t in json.loads(out_json.read_text())["tests"]}
    similarity = got["agents/duck.agent.yml#0 custom similarity"]
    assert similarity["score"] == 0.5 and similarity["passed"] and similarity["runs"] == 2
    assert [r["choice"] for r in similarity["records"]] == ["A", "B"]
    correctness = got["agents/duck.agent.yml#0 custom correctness"]
    assert correctness["score"] == 0.5
    assert [r["verdict"] for r in correctness["records"]] == ["PASS", "FAIL"]
    # the correctness judge is claude (Anthropic Messages), the similarity one config's first
    judges = {r.body["model"] for r in server.requests if "[Agent's Answer]" in r.last}
    assert judges == {"claude-test"}
    recall = got["agents/duck.agent.yml#0 custom context_recall"]
    # the agent retrieved nothing: the one record with reference contexts scores 0
    assert recall["score"] == 0.0 and recall["records"][1]["score"] is None
    missing = got["agents/duck.agent.yml#1 custom"]
    assert "docs/missing.yml" in missing["error"] and not missing["passed"]
    assert "ERROR" in done.stdout


def test_custom_dataset_test_of_a_workflow_passes_the_query_as_its_variable(
    make_workspace: Callable[..., Workspace], server: ModelServer, tmp_path: Path
) -> None:
    procedure = {
        "variables": {"question": {"type": "string", "default": "?"}},
        "tasks": [
            {"name": "echo", "type": "formatter", "template": "You asked: {{ question }}"},
        ],
        "tests": [
            {
                "type": "custom",
                "dataset": "docs/echo.yml",
                "workflow_variable_name": "question",
            }
        ],
    }
    dataset = [
        {"query": "alpha", "response": "You asked: alpha", "relevant_contexts": []},
        {"query": "beta", "response": "You asked: gamma", "relevant_contexts": []},
    ]
    ws = make_workspace(
        {},
        files={
            "workflows/echo.workflow.yml": yaml.safe_dump(procedure),
            "docs/echo.yml": yaml.safe_dump(dataset),
        },
    )
    server.add(
        text_reply("Answer: A", match="[Submission 1]: You asked: alpha"),
        text_reply("Answer: B", match="[Submission 1]: You asked: beta"),
    )
    out_json = tmp_path / "r.json"
    done = quarry_test(ws, "workflows/echo.workflow.yml", "--json", str(out_json))
    assert done.returncode == 1, done.stdout + done.stderr  # 0.5 < 0.8
    (only,) = json.loads(out_json.read_text())["tests"]
    assert only["name"] == "workflows/echo.workflow.yml#0 custom similarity"
    assert only["score"] == 0.5 and only["runs"] == 2
    assert [r["output"] for r in only["records"]] == ["You asked: alpha", "You asked: beta"]
    judged = [r for r in server.requests if "[Submission 2]" in r.last]
    assert len(judged) == 2 and all(r.body["model"] == "gpt-4o-mini" for r in judged)
