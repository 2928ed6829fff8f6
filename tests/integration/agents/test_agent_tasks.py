"""``agent`` tasks in workflows run a turn of the agent on the run's connections."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from quarry.runtime.connectors import Connections
from quarry.runtime.engine import MemoryJournal, StepFailed, TextOutput, run_workflow
from quarry.runtime.engine.results import StepResult
from tests.integration.agents.conftest import Workspace, agent_file
from tests.support.model_server import ModelServer, Reply, text_reply, tool_reply

WORKFLOW = """\
name: ask_twice
variables:
  region:
    type: string
    default: North
tasks:
  - name: ask
    type: agent
    agent_ref: agents/duck.agent.yml
    prompt: "How many orders in {{ region }}?"
  - name: echo
    type: formatter
    template: "Answer: {{ ask }}"
"""
FILES = {"workflows/ask_twice.workflow.yml": WORKFLOW}


def run(ws: Workspace, events: list[dict[str, Any]], journal: MemoryJournal | None = None) -> Any:
    connections = Connections(ws.source, ws.cache, secrets=ws.env.get)
    try:
        return run_workflow(
            ws.source,
            "workflows/ask_twice",
            {"region": "South"},
            connections=connections,
            journal=journal or MemoryJournal(),
            on_event=events.append,
        )
    finally:
        connections.close()


def test_an_agent_task_answers_with_sql_and_later_steps_read_the_answer(
    make_workspace: Callable[..., Workspace], server: ModelServer
) -> None:
    ws = make_workspace({"duck": agent_file("local")}, files=FILES)
    server.add(
        tool_reply(
            "execute_sql",
            match="How many orders in South?",
            sql="SELECT count(*) AS n FROM 'orders.csv' WHERE region = 'South'",
        ),
        text_reply("South has many orders.", match="[1 rows]"),
    )
    events: list[dict[str, Any]] = []
    result = run(ws, events)
    assert result.outputs["ask"] == TextOutput("South has many orders.")
    assert result.outputs["echo"] == TextOutput("Answer: South has many orders.")
    calls = [e for e in events if e["event"] == "agent_tool_call"]
    assert len(calls) == 1 and calls[0]["step"] == "tasks.0" and calls[0]["name"] == "execute_sql"
    finished = [e for e in events if e["event"] == "step_finished" and e["step"] == "tasks.0"]
    assert len(finished) == 1


def test_an_agent_task_that_reaches_max_iterations_fails_its_step(
    make_workspace: Callable[..., Workspace], server: ModelServer
) -> None:
    ws = make_workspace({"duck": agent_file("local", max_iterations=1)}, files=FILES)
    server.add(tool_reply("execute_sql", sql="SELECT 1"))
    with pytest.raises(StepFailed, match=r"step tasks.0 \(ask\): The agent stopped after 1"):
        run(ws, [])


def test_a_step_run_again_replays_the_journaled_model_calls_and_tool_results(
    make_workspace: Callable[..., Workspace], server: ModelServer
) -> None:
    ws = make_workspace({"duck": agent_file("local")}, files=FILES)
    sql = "SELECT count(*) AS n FROM 'orders.csv' WHERE region = 'South'"
    server.add(
        tool_reply("execute_sql", match="How many orders in South?", sql=sql),
        Reply(status=400, error="the provider fell over"),  # 400: not retried
    )
    journal = MemoryJournal()
    first: list[dict[str, Any]] = []
    with pytest.raises(StepFailed, match="the provider fell over"):
        run(ws, first, journal)
    assert [e["event"] for e in first].count("agent_tool_call") == 1
    assert sorted(journal.entries) == ["tasks.0.agent.model.0", "tasks.0.agent.tool.0.0"]
    tool_result = server.requests[1].body["messages"][-1]["content"]

    server.add(text_reply("South: resumed.", match="[1 rows]"))
    second: list[dict[str, Any]] = []
    result = run(ws, second, journal)
    assert result.outputs["ask"] == TextOutput("South: resumed.")
    # Model call 0 and the query were not repeated: one new model request, no tool call.
    assert len(server.requests) == 3
    assert [e["event"] for e in second].count("agent_tool_call") == 0
    replayed = [e for e in second if e["event"] == "agent_tool_result"]
    assert len(replayed) == 1 and replayed[0]["replayed"] is True
    assert server.requests[2].body["messages"][-1]["content"] == tool_result
    assert (
        server.requests[2].body["messages"][-2]["tool_calls"][0]["function"]["arguments"]
        == (server.requests[1].body["messages"][-2]["tool_calls"][0]["function"]["arguments"])
    )


def _workflow(extra: str) -> dict[str, str]:
    text = WORKFLOW.replace(
        '    prompt: "How many orders in {{ region }}?"\n',
        ('    prompt: "How many orders in {{ region }}?"\n' + extra),
    )
    return {"workflows/ask_twice.workflow.yml": text}


def test_retry_asks_again_after_a_failed_turn(
    make_workspace: Callable[..., Workspace], server: ModelServer
) -> None:
    ws = make_workspace({"duck": agent_file("local")}, files=_workflow("    retry: 2\n"))
    server.add(
        Reply(status=400, error="the provider fell over", match="South"),  # attempt 1 fails
        text_reply("South: 250 orders.", match="South"),  # attempt 2
    )
    result = run(ws, [])
    assert result.outputs["ask"] == TextOutput("South: 250 orders.")
    assert len(server.requests) == 2


def test_consistency_run_picks_the_answer_most_runs_agree_with(
    make_workspace: Callable[..., Workspace], server: ModelServer
) -> None:
    ws = make_workspace({"duck": agent_file("local")}, files=_workflow("    consistency_run: 3\n"))
    server.add(
        text_reply("South has 250 orders.", match="How many orders in South?"),
        text_reply("South: 9 orders.", match="How many orders in South?"),
        text_reply("There are 250 orders in South.", match="How many orders in South?"),
        # the judge, pair by pair: (0,1) (0,2) (1,2)
        text_reply("250 vs 9 differ.\nAnswer: B", match="[Submission 2]: South: 9 orders."),
        text_reply("Same number.\nAnswer: A", match="[Submission 2]: There are 250"),
        text_reply("9 vs 250.\nAnswer: B", match="[Submission 2]: There are 250"),
    )
    events: list[dict[str, Any]] = []
    journal = MemoryJournal()
    result = run(ws, events, journal)
    assert result.outputs["ask"] == TextOutput("South has 250 orders.")
    judged = [r for r in server.requests if "[Submission 1]" in r.last]
    assert len(judged) == 3 and all(len(r.body["messages"]) == 2 for r in judged)
    assert not any(r.body.get("tools") for r in judged)
    facts = StepResult.from_bytes(journal.entries["tasks.0"]).meta
    assert facts["runs"] == 3 and facts["consistency"] == 0.5
    assert facts["consistency_scores"] == [0.5, 0.0, 0.5]
    assert sorted(k for k in journal.entries if ".judge." in k) == [
        "tasks.0.judge.agent.0.1",
        "tasks.0.judge.agent.0.2",
        "tasks.0.judge.agent.1.2",
    ]
