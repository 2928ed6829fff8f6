"""The tools beyond SQL, through the real OpenAI SDK against the scripted model server:
semantic_query (the topic catalog in its description, bound SQL from the semantic
layer), visualize (a chart spec in the tool result), workflow (the demo analyst's
monthly_revenue) and agent (an agent asking another, nesting bounded)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import yaml

from tests.integration.agents.conftest import Workspace, agent_file
from tests.support.model_server import Call, ModelServer, Reply, text_reply, tool_reply


def _agent(tools: list[dict[str, Any]], **extra: Any) -> str:
    return yaml.safe_dump(
        {"model": "gpt", "system_instructions": "Answer.", "tools": tools, **extra}
    )


def _results(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == "tool_result"]


def test_semantic_query_answers_from_the_topic_and_a_bad_member_is_fed_back(
    make_workspace: Callable[..., Workspace], server: ModelServer
) -> None:
    ws = make_workspace({"sem": _agent([{"type": "semantic_query", "topic": "sales"}])})
    server.add(
        tool_reply("semantic_query", match="revenue by region", measures=["orders.profit"]),
        tool_reply(
            "semantic_query",
            match="orders.profit",
            measures=["orders.revenue"],
            dimensions=["orders.region"],
            orders=[{"field": "orders.revenue", "direction": "desc"}],
        ),
        text_reply("The North leads.", match="[4 rows]"),
    )
    events: list[dict[str, Any]] = []
    result = ws.ask("agents/sem", "revenue by region?", events)
    assert result.answer == "The North leads."
    tool = server.requests[0].body["tools"][0]["function"]
    assert tool["name"] == "semantic_query"
    assert "Topic sales" in tool["description"]
    assert "measure orders.revenue (sum)" in tool["description"]
    assert "dimension orders.region (string)" in tool["description"]
    bad, good = _results(events)
    assert "orders.profit" in bad["error"]
    assert good["topic"] == "sales" and good["rows"] == 4 and good["database"] == "local"
    assert "GROUP BY" in good["sql"].upper()
    first_line = good["content"].splitlines()[0]
    assert first_line.split(",")[0].endswith("region")


def test_visualize_hands_on_a_chart_spec_and_refuses_a_bad_one(
    make_workspace: Callable[..., Workspace], server: ModelServer
) -> None:
    ws = make_workspace({"viz": _agent([{"type": "visualize"}])})
    chart = {
        "title": "Revenue by region",
        "xAxis": {"type": "category", "data": ["North", "South"]},
        "yAxis": {"type": "value"},
        "series": [{"name": "revenue", "type": "bar", "data": [120, 80]}],
    }
    server.add(
        tool_reply("visualize", match="chart", series=[{"type": "donut", "data": [1]}]),
        Reply(calls=[Call("visualize", chart)], match="series[0].type"),
        text_reply("Here is the chart.", match="is shown"),
    )
    events: list[dict[str, Any]] = []
    assert ws.ask("agents/viz", "a chart please", events).answer == "Here is the chart."
    bad, good = _results(events)
    assert "series[0].type must be one of line, bar, pie" in bad["error"]
    assert good["chart"] == chart
    assert good["content"] == "The chart 'Revenue by region' is shown to the user."


def test_the_demo_analyst_runs_its_workflow_tool(
    make_workspace: Callable[..., Workspace], server: ModelServer
) -> None:
    ws = make_workspace({})
    server.add(
        tool_reply("monthly_revenue", match="month by month"),
        text_reply("Revenue grew.", match="# Monthly revenue"),
    )
    events: list[dict[str, Any]] = []
    result = ws.ask("agents/analyst", "Revenue month by month?", events)
    assert result.answer == "Revenue grew." and result.status == "answered"
    (done,) = _results(events)
    assert done["workflow"] == "workflows/monthly_revenue"
    assert done["content"].startswith("## monthly_revenue\n")
    assert "## top_products\n" in done["content"] and "## summary\n" in done["content"]


def test_an_agent_asks_another_and_nesting_is_bounded(
    make_workspace: Callable[..., Workspace], server: ModelServer
) -> None:
    ask_duck = {
        "type": "agent",
        "name": "ask_duck",
        "agent_ref": "agents/duck.agent.yml",
        "description": "Ask the SQL analyst.",
    }
    ask_self = {**ask_duck, "name": "ask_self", "agent_ref": "agents/loop.agent.yml"}
    ws = make_workspace(
        {
            "boss": _agent([ask_duck]),
            "duck": agent_file("local"),
            "loop": _agent([ask_self], max_iterations=2),
        }
    )
    server.add(
        tool_reply("ask_duck", match="How many regions", prompt="Count the regions"),
        text_reply("There are 4 regions.", match="Count the regions"),
        text_reply("Four.", match="There are 4 regions."),
    )
    events: list[dict[str, Any]] = []
    assert ws.ask("agents/boss", "How many regions?", events).answer == "Four."
    (asked,) = _results(events)
    assert asked["agent"] == "agents/duck.agent.yml" and asked["status"] == "answered"
    assert asked["content"] == "There are 4 regions."

    # loop asks itself: levels 0..3 each call ask_self; the call at level 3 is refused
    server.add(
        *[tool_reply("ask_self", match="again", prompt="again") for _ in range(4)],
        text_reply("Stopped.", match="at most 3 deep"),
        *[text_reply("Stopped.", match="Stopped.") for _ in range(3)],
    )
    events = []
    assert ws.ask("agents/loop", "again", events).answer == "Stopped."
    refused = [r for r in server.requests if "at most 3 deep" in r.last]
    assert len(refused) == 1
    assert sum(1 for r in server.requests if r.last == "again") == 4


def test_retrieval_finds_the_closest_documents_by_embeddings(
    make_workspace: Callable[..., Workspace], server: ModelServer
) -> None:
    tool = {
        "type": "retrieval",
        "src": ["queries/*.sql", "docs/*.md"],
        "top_k": 1,
        "key_var": "TEST_OPENAI_KEY",
        "api_url": server.openai_url,
        "embed_model": "embed-test",
    }
    ws = make_workspace({"finder": _agent([tool])})
    query = "top products ranked by revenue product"
    server.add(
        tool_reply("retrieval", match="best sellers", query=query),
        tool_reply("retrieval", match="-- queries/", query=query),
        text_reply("Use the top products query.", match="-- queries/"),
    )
    events: list[dict[str, Any]] = []
    assert ws.ask("agents/finder", "best sellers?", events).answer == "Use the top products query."
    first, second = _results(events)
    assert first["documents"] == ["queries/top_products.sql"]
    assert first["content"].startswith("-- queries/top_products.sql\n")
    assert second["documents"] == first["documents"]
    embedded = [r for r in server.requests if r.path == "/v1/embeddings"]
    # the three documents once (cached for the revision), then each query
    assert [len(r.body["input"]) for r in embedded] == [3, 1, 1]
    assert embedded[0].headers["authorization"] == "Bearer sk-test"
    assert embedded[0].body["model"] == "embed-test"
