"""Agent turns end to end: the real SDKs over real sockets to the scripted model
server, SQL on real DuckDB (the demo data) and a real Postgres warehouse."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from quarry.agents.providers.base import ProviderError
from quarry.agents.tools.readonly import SqlLimits
from tests.integration.agents.conftest import INJECTION, Workspace, agent_file, warehouse_tables
from tests.support.model_server import Call, ModelServer, Reply, text_reply, tool_reply

MakeWorkspace = Callable[..., Workspace]

REGIONS = "SELECT region, count(*) AS n FROM 'orders.csv' GROUP BY region ORDER BY region"


def tool_results(server: ModelServer, index: int) -> list[str]:
    """The tool results the model was sent in request ``index``."""
    body = server.requests[index].body
    if server.requests[index].protocol == "openai":
        return [m["content"] for m in body["messages"] if m["role"] == "tool"]
    if server.requests[index].protocol == "google":
        return [
            part["functionResponse"]["response"]["result"]
            for content in body["contents"]
            for part in content["parts"]
            if "functionResponse" in part
        ]
    return [
        block["content"]
        for m in body["messages"]
        if isinstance(m["content"], list)
        for block in m["content"]
        if block.get("type") == "tool_result"
    ]


@pytest.mark.parametrize("model", ["gpt", "claude", "gemini"])
def test_multi_step_sql_answer_on_duckdb_with_a_tool_error_fed_back(
    make_workspace: MakeWorkspace, server: ModelServer, model: str
) -> None:
    ws = make_workspace({"duck": agent_file("local", model=model)})
    server.add(
        tool_reply("execute_sql", sql="SELECT no_such_column FROM 'orders.csv'"),
        tool_reply("execute_sql", match="Error:", sql=REGIONS),
        Reply(text="Orders by region: see the table.", match="region,n"),
    )
    events: list[dict[str, Any]] = []
    result = ws.ask("agents/duck.agent.yml", "How many orders per region?", events)

    assert result.status == "answered"
    assert result.answer == "Orders by region: see the table."
    assert (result.model_calls, result.tool_calls) == (3, 2)
    first_error = tool_results(server, 1)[0]
    assert (
        first_error.startswith("Error: the database refused the query")
        and "no_such_column" in first_error
    )
    table = tool_results(server, 2)[1]
    assert table.startswith("region,n\n") and "rows]" in table
    # The instructions were rendered with databases.*, tools.* and context.*; the
    # create_data_app tool, not run by Quarry yet, was offered to no model.
    request = server.requests[0]
    if request.protocol == "openai":
        system = request.body["messages"][0]["content"]
    elif request.protocol == "google":
        system = request.body["systemInstruction"]["parts"][0]["text"]
    else:
        system = request.body["system"]
    assert "You answer with SQL on local (duckdb). Tools: execute_sql validate_sql ." in system
    assert "Dictionary (1 file): # " in system
    if request.protocol == "google":
        offered = [f["name"] for f in request.body["tools"][0]["functionDeclarations"]]
    else:
        offered = [
            t["function"]["name"] if "function" in t else t["name"] for t in request.body["tools"]
        ]
    assert offered == ["execute_sql", "validate_sql"]
    assert any(e["type"] == "warning" and "create_data_app" in e["message"] for e in events)
    # Streamed: the deltas make the answer; every call and result was reported.
    assert "".join(e["text"] for e in events if e["type"] == "text_delta") == result.answer
    calls = [json.loads(e["arguments"])["sql"] for e in events if e["type"] == "tool_call"]
    assert calls == ["SELECT no_such_column FROM 'orders.csv'", REGIONS]
    assert [e["type"] for e in events][-1] == "done"


def test_multi_step_answer_on_postgres_and_an_injection_in_the_data_changes_nothing(
    make_workspace: MakeWorkspace, server: ModelServer, warehouse: str
) -> None:
    ws = make_workspace({"pg": agent_file("pg")}, warehouse=warehouse)
    server.add(
        tool_reply("validate_sql", sql="SELECT body FROM notes ORDER BY id"),
        tool_reply(
            "execute_sql", match="The SQL is valid.", sql="SELECT body FROM notes ORDER BY id"
        ),
        # The model "obeys" the note it read, three ways; each is refused.
        tool_reply("execute_sql", match=INJECTION, sql="DROP TABLE notes"),
        tool_reply(
            "execute_sql", match="refused: only read-only", sql="SELECT 1; DROP TABLE notes"
        ),
        tool_reply(
            "execute_sql",
            match="statements",
            sql="WITH gone AS (DELETE FROM notes RETURNING *) SELECT count(*) FROM gone",
        ),
        # Writes hidden in a SELECT: the transaction is rolled back (a large object
        # is not kept), and READ ONLY refuses a sequence's advance (which no rollback
        # would undo).
        tool_reply("execute_sql", match="data-modifying", sql="SELECT lo_create(4242) AS oid"),
        tool_reply("execute_sql", match="oid\n4242", sql="SELECT nextval('notes_id_seq') AS id"),
        tool_reply(
            "execute_sql",
            match="read-only transaction",
            sql="SELECT region, count(*) AS n FROM notes GROUP BY region ORDER BY region",
        ),
        text_reply("north has 2 notes, south 1.", match="region,n"),
    )
    result = ws.ask("agents/pg.agent.yml", "How many notes per region?")

    assert result.status == "answered" and result.answer == "north has 2 notes, south 1."
    assert "Error: refused: only read-only queries" in tool_results(server, 3)[-1]
    assert "DROP" in tool_results(server, 3)[-1]
    assert "holds 2 statements" in tool_results(server, 4)[-1]
    assert "data-modifying" in tool_results(server, 5)[-1]
    assert "cannot execute nextval() in a read-only transaction" in tool_results(server, 7)[-1]
    assert tool_results(server, 8)[-1].startswith("region,n\nnorth,2\nsouth,1\n")
    assert warehouse_tables(warehouse) == ["notes"]
    import psycopg

    from tests.support.services import PG_ADMIN_DSN

    with psycopg.connect(PG_ADMIN_DSN.rsplit("/", 1)[0] + "/" + warehouse) as conn:
        assert conn.execute("SELECT count(*) FROM notes").fetchone() == (3,)
        assert conn.execute("SELECT count(*) FROM pg_largeobject_metadata").fetchone() == (0,)
        assert conn.execute("SELECT last_value FROM notes_id_seq").fetchone() == (3,)


def test_max_iterations_ends_the_turn_with_a_clear_result(
    make_workspace: MakeWorkspace, server: ModelServer
) -> None:
    ws = make_workspace({"loopy": agent_file("local", max_iterations=2)})
    server.add(
        Reply(text="Let me look.", calls=[Call("execute_sql", {"sql": "SELECT 1 AS one"})]),
        tool_reply("execute_sql", sql="SELECT 2 AS two"),
    )
    result = ws.ask("agents/loopy.agent.yml", "Loop forever")
    assert result.status == "max_iterations"
    assert result.model_calls == 2 and len(server.requests) == 2
    assert result.answer.startswith("The agent stopped after 2 model calls (its max_iterations)")
    assert "Let me look." in result.answer


def test_max_tool_calls_and_concurrency(make_workspace: MakeWorkspace, server: ModelServer) -> None:
    ws = make_workspace({"busy": agent_file("local", max_tool_calls=2, max_tool_concurrency=1)})
    server.add(
        Reply(calls=[Call("execute_sql", {"sql": f"SELECT {i} AS v"}) for i in range(3)]),
        text_reply("done"),
    )
    events: list[dict[str, Any]] = []
    result = ws.ask("agents/busy.agent.yml", "Three at once", events)
    assert result.status == "answered" and result.tool_calls == 2
    results = tool_results(server, 1)
    assert results[0].startswith("v\n0\n") and results[1].startswith("v\n1\n")
    assert results[2].startswith("Not run: this turn's tool call limit (2, max_tool_calls)")
    assert "tools" not in server.requests[1].body  # no tools offered past the limit
    # With a concurrency of one, each call finished before the next started.
    ran = [
        e["type"]
        for e in events
        if e["type"] in ("tool_call", "tool_result") and "Not run" not in e.get("error", "")
    ]
    assert ran == ["tool_call", "tool_result"] * 2


def test_unknown_tool_and_bad_arguments_are_fed_back(
    make_workspace: MakeWorkspace, server: ModelServer
) -> None:
    ws = make_workspace({"duck": agent_file("local")})
    server.add(
        Reply(calls=[Call("drop_everything", {}), Call("execute_sql", {"sequel": "x"})]),
        text_reply("sorry"),
    )
    assert ws.ask("agents/duck.agent.yml", "q").answer == "sorry"
    unknown, bad = tool_results(server, 1)
    assert unknown == (
        "Error: there is no tool named 'drop_everything' (the tools are: execute_sql, validate_sql)"
    )
    assert bad == "Error: the arguments must hold 'sql': the SQL query as a string"


def test_results_are_truncated_for_the_model_and_say_so(
    make_workspace: MakeWorkspace, server: ModelServer
) -> None:
    ws = make_workspace({"duck": agent_file("local")})
    server.add(
        tool_reply("execute_sql", sql="SELECT range AS i FROM range(100)"),
        tool_reply("execute_sql", match="truncated", sql="SELECT range AS i FROM range(4)"),
        text_reply("ok", match="3 of 4 rows"),
    )
    limits = SqlLimits(row_cap=10, rows_shown=3)
    ws.ask("agents/duck.agent.yml", "q", sql_limits=limits)
    cut = tool_results(server, 1)[0]
    assert cut == (
        "i\n0\n1\n2\n[The result was truncated: 3 of more than 10 rows are shown. Aggregate "
        "in SQL, or filter, rather than reading every row.]"
    )
    assert tool_results(server, 2)[1].startswith(
        "i\n0\n1\n2\n[The result was truncated: 3 of 4 rows are shown."
    )


def test_a_slow_query_is_stopped_at_the_statement_timeout(
    make_workspace: MakeWorkspace, server: ModelServer
) -> None:
    ws = make_workspace({"duck": agent_file("local")})
    slow = "SELECT count(*) FROM range(100000000) a, range(100000000) b WHERE a.range + b.range = 7"
    server.add(tool_reply("execute_sql", sql=slow), text_reply("gave up", match="Error:"))
    result = ws.ask("agents/duck.agent.yml", "q", sql_limits=SqlLimits(timeout=0.5))
    assert result.answer == "gave up"
    assert tool_results(server, 1)[0] == "Error: the query ran longer than 0.5s and was stopped"


@pytest.mark.parametrize("model", ["gpt", "claude", "gemini"])
def test_provider_429_and_500_inside_a_turn_then_success(
    make_workspace: MakeWorkspace, server: ModelServer, model: str
) -> None:
    ws = make_workspace({"duck": agent_file("local", model=model)})
    server.add(
        Reply(status=429, error="rate limited", headers={"retry-after": "1"}),
        tool_reply("execute_sql", sql="SELECT 42 AS answer"),
        Reply(status=500, error="overloaded"),
        text_reply("42", match="answer"),
    )
    result = ws.ask("agents/duck.agent.yml", "q")
    assert result.answer == "42" and result.model_calls == 2
    assert len(server.requests) == 4
    assert server.requests[1].at - server.requests[0].at >= 0.95


def test_model_timeout_fails_the_turn_with_a_clear_error(
    make_workspace: MakeWorkspace, server: ModelServer
) -> None:
    ws = make_workspace({"duck": agent_file("local")})
    server.add(Reply(text="too late", delay=3))
    with pytest.raises(ProviderError, match="model 'gpt': no answer within the timeout"):
        ws.ask("agents/duck.agent.yml", "q", model_timeout=0.5, model_retries=0)


def test_a_provider_error_quoting_the_key_is_redacted(
    make_workspace: MakeWorkspace, server: ModelServer
) -> None:
    ws = make_workspace({"duck": agent_file("local")})
    server.add(Reply(status=401, error="Incorrect API key provided: sk-test. Check it."))
    with pytest.raises(ProviderError) as failed:
        ws.ask("agents/duck.agent.yml", "q")
    assert failed.value.message == (
        "model 'gpt': the provider answered 401: Incorrect API key provided: [secret]. Check it."
    )
