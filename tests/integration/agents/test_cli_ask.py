"""``quarry ask`` in a real process: the answer streams to stdout, tool calls (with
their SQL) and results to stderr; exit 1 when the turn ends without an answer."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable

from tests.integration.agents.conftest import Workspace, agent_file
from tests.support.model_server import ModelServer, Reply, text_reply, tool_reply


def ask(ws: Workspace, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **ws.env, "NO_COLOR": "1", "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "quarry", "ask", *args, "--workspace", str(ws.root)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_quarry_ask_streams_the_answer_and_shows_tool_calls(
    make_workspace: Callable[..., Workspace], server: ModelServer
) -> None:
    ws = make_workspace({"duck": agent_file("local")})
    server.add(
        tool_reply("execute_sql", sql="SELECT count(*) AS n FROM 'orders.csv'"),
        text_reply("The shop has many orders in total.", match="[1 rows]"),
    )
    done = ask(ws, "agents/duck.agent.yml", "How many orders?")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "The shop has many orders in total.\n"
    assert "→ execute_sql" in done.stderr
    assert "SELECT count(*) AS n FROM 'orders.csv'" in done.stderr
    assert "✓ 1 rows" in done.stderr
    assert "answered: 2 model call(s), 1 tool call(s)" in done.stderr
    assert server.requests[0].body["stream"] is True  # streamed from the model


def test_quarry_ask_exits_1_when_max_iterations_is_reached(
    make_workspace: Callable[..., Workspace], server: ModelServer
) -> None:
    ws = make_workspace({"duck": agent_file("local", max_iterations=1)})
    server.add(Reply(text="thinking", calls=tool_reply("execute_sql", sql="SELECT 1").calls))
    done = ask(ws, "agents/duck", "Loop")
    assert done.returncode == 1
    assert "The agent stopped after 1 model calls (its max_iterations)" in done.stderr
