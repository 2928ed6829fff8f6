"""A routing agent's step run again (its worker died after the routes were narrowed)
offers the routes the first attempt chose, from the step journal: the embeddings
endpoint is not asked again, for the routes or the question."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import yaml

from quarry.runtime.connectors import Connections
from quarry.runtime.engine import MemoryJournal, StepFailed, TextOutput, run_workflow
from tests.integration.agents.conftest import Workspace, agent_file
from tests.support.model_server import ModelServer, Reply, text_reply

EMBEDS = {
    "regions": "orders per region of the shop",
    "regions_2024": "orders per region in 2024",
    "revenue": "monthly revenue trend",
    "customers": "top customers by spend",
    "products": "best selling products",
    "refunds": "refunds and returned items",
}
WORKFLOW = """\
tasks:
  - name: ask
    type: agent
    agent_ref: agents/router.agent.yml
    prompt: How many orders per region in 2024?
"""


def _files() -> dict[str, str]:
    files = {
        f"queries/route_{name}.sql": f"/*\noxy:\n  database: local\n  embed: {embed}\n*/\n"
        "SELECT 1 AS one\n"
        for name, embed in EMBEDS.items()
    }
    return {**files, "workflows/route.workflow.yml": WORKFLOW}


def _router(**extra: Any) -> str:
    body = {"type": "routing", "model": "gpt", "routes": ["queries/route_*.sql"], **extra}
    return yaml.safe_dump(body)


def _run(ws: Workspace, journal: MemoryJournal) -> Any:
    connections = Connections(ws.source, ws.cache, secrets=ws.env.get)
    try:
        return run_workflow(
            ws.source, "workflows/route", {}, connections=connections, journal=journal
        )
    finally:
        connections.close()


def _embeddings(server: ModelServer) -> int:
    return sum(1 for r in server.requests if r.path.endswith("/embeddings"))


def _offered(server: ModelServer) -> list[list[str]]:
    chats = [r for r in server.requests if r.path.endswith("/chat/completions")]
    return [[t["function"]["name"] for t in c.body.get("tools", [])] for c in chats]


def test_a_resumed_routing_turn_reuses_the_journaled_routes(
    make_workspace: Callable[..., Workspace], server: ModelServer
) -> None:
    ws = make_workspace({"router": _router(top_k=2)}, files=_files())
    server.add(Reply(status=400, error="the provider fell over"))  # 400: not retried
    journal = MemoryJournal()
    with pytest.raises(StepFailed, match="the provider fell over"):
        _run(ws, journal)
    assert _embeddings(server) == 2  # the routes, then the question
    assert sorted(journal.entries) == ["tasks.0.agent.routes"]

    server.add(text_reply("Asked."))
    result = _run(ws, journal)
    assert result.outputs["ask"] == TextOutput("Asked.")
    assert _embeddings(server) == 2  # nothing embedded again
    first, second = _offered(server)
    assert first == second == ["queries_route_regions_2024", "queries_route_regions"]


def test_routes_that_could_not_be_narrowed_stay_unnarrowed_on_resume(
    make_workspace: Callable[..., Workspace], server: ModelServer
) -> None:
    # The embeddings endpoint fails once (400: not retried): every route is offered.
    # The resumed step does not try again, though the endpoint works now: the model's
    # journaled calls may name any of those routes.
    ws = make_workspace({"router": _router(top_k=2)}, files=_files())
    server.embedding_errors.append(400)
    server.add(Reply(status=400, error="the provider fell over"))
    journal = MemoryJournal()
    with pytest.raises(StepFailed):
        _run(ws, journal)
    assert _embeddings(server) == 1
    server.add(text_reply("Asked."))
    _run(ws, journal)
    first, second = _offered(server)
    assert len(first) == 6 and first == second
    assert _embeddings(server) == 1


def test_a_resumed_turn_replays_the_fallback_answer(
    make_workspace: Callable[..., Workspace], server: ModelServer
) -> None:
    # The router calls no route, so route_fallback (an agent: one model call) answers.
    # The step's own result is then lost (its worker died before writing it): the
    # step run again replays the router's call and the fallback's answer from the
    # journal, asking the model nothing and embedding nothing.
    agents = {
        "router": _router(top_k=2, route_fallback="agents/duck.agent.yml"),
        "duck": agent_file("local"),
    }
    ws = make_workspace(agents, files=_files())
    server.add(text_reply("I cannot route that."), text_reply("Four regions."))
    journal = MemoryJournal()
    first = _run(ws, journal)
    assert first.outputs["ask"] == TextOutput("Four regions.")
    chats, embeddings = len(_offered(server)), _embeddings(server)
    assert chats == 2
    assert "tasks.0.agent.fallback" in journal.entries
    del journal.entries["tasks.0"]

    second = _run(ws, journal)
    assert second.outputs["ask"] == TextOutput("Four regions.")
    assert len(_offered(server)) == chats and _embeddings(server) == embeddings
