"""Routing agents through the OpenAI SDK against the scripted model server: routes
(an agent, the demo's workflow and topic, by path and glob) offered as tools with
their descriptions; the picked route answers (synthesized, or as it came);
route_fallback answers when no route is called."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import yaml

from tests.integration.agents.conftest import Workspace, agent_file
from tests.support.model_server import ModelServer, text_reply, tool_reply


def _router(**extra: Any) -> str:
    body = {
        "type": "routing",
        "model": "gpt",
        "description": "Routes shop questions.",
        "routes": ["agents/duck.agent.yml", "workflows/*.workflow.yml", "semantics/*.topic.yml"],
        **extra,
    }
    return yaml.safe_dump(body)


def _duck() -> str:
    body = yaml.safe_load(agent_file("local"))
    body["description"] = "Answers with SQL on the shop's orders."
    return yaml.safe_dump(body)


def test_routes_are_tools_and_the_picked_route_answers(
    make_workspace: Callable[..., Workspace], server: ModelServer
) -> None:
    ws = make_workspace({"router": _router(), "duck": _duck()})
    server.add(
        tool_reply("agents_duck_agent", match="How many orders?", prompt="Count the orders"),
        text_reply("There are 1,000 orders.", match="Count the orders"),
        text_reply("1,000 orders.", match="There are 1,000 orders."),
    )
    events: list[dict[str, Any]] = []
    result = ws.ask("agents/router", "How many orders?", events)
    assert result.answer == "1,000 orders." and result.status == "answered"
    offered = {
        t["function"]["name"]: t["function"]["description"]
        for t in server.requests[0].body["tools"]
    }
    assert offered["agents_duck_agent"] == "Answers with SQL on the shop's orders."
    assert offered["workflows_monthly_revenue_workflow"].startswith("Monthly revenue")
    assert offered["semantics_sales_topic"].startswith("Sales of the demo shop")
    assert len(offered) == 3


def test_without_synthesis_the_route_output_is_the_answer(
    make_workspace: Callable[..., Workspace], server: ModelServer
) -> None:
    ws = make_workspace({"router": _router(synthesize_results=False), "duck": _duck()})
    server.add(
        tool_reply(
            "semantics_sales_topic",
            match="orders per region",
            measures=["orders.order_count"],
            dimensions=["orders.region"],
        )
    )
    result = ws.ask("agents/router", "orders per region?")
    assert "region" in result.answer.splitlines()[0]
    assert result.answer.endswith("[4 rows]") and result.model_calls == 1
    assert len(server.requests) == 1  # the model did not see the result


def test_route_fallback_answers_when_no_route_is_called(
    make_workspace: Callable[..., Workspace], server: ModelServer
) -> None:
    ws = make_workspace(
        {"router": _router(route_fallback="agents/duck.agent.yml"), "duck": _duck()}
    )
    server.add(
        text_reply("I cannot route that.", match="What is the weather?"),
        text_reply("No weather data here.", match="What is the weather?"),
    )
    events: list[dict[str, Any]] = []
    result = ws.ask("agents/router", "What is the weather?", events)
    assert result.answer == "No weather data here." and result.tool_calls == 1
    calls = [e for e in events if e["type"] == "tool_call"]
    assert [c["name"] for c in calls] == ["agents_duck_agent"]
    # the fallback agent got the question itself
    assert server.requests[1].last == "What is the weather?"
    assert server.requests[1].body["messages"][0]["role"] == "system"
