"""Routing agents narrow their routes by embedding similarity, as Oxy does: with more
routes than ``top_k``, only the ``top_k`` most similar to the question are offered to
the model. Embeddings from the scripted server's OpenAI embeddings endpoint (a bag of
words: texts sharing words are similar) through the real SDK, or from the local
WordLlama model shipped inside its wheel, which must load with no network."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Callable
from typing import Any

import yaml

from tests.integration.agents.conftest import Workspace
from tests.support.model_server import ModelServer, text_reply, tool_reply

EMBEDS = {
    "regions": "orders per region of the shop",
    "regions_2024": "orders per region in 2024",
    "revenue": "monthly revenue trend",
    "customers": "top customers by spend",
    "products": "best selling products",
    "refunds": "refunds and returned items",
}


def _sql(embed: str) -> str:
    return f"/*\noxy:\n  database: local\n  embed: {embed}\n*/\nSELECT 1 AS one\n"


def _files() -> dict[str, str]:
    return {f"queries/route_{name}.sql": _sql(embed) for name, embed in EMBEDS.items()}


def _router(**extra: Any) -> str:
    body = {"type": "routing", "model": "gpt", "routes": ["queries/route_*.sql"], **extra}
    return yaml.safe_dump(body)


def _offered(server: ModelServer) -> list[str]:
    chats = [r for r in server.requests if r.path.endswith("/chat/completions")]
    return [t["function"]["name"] for t in chats[-1].body.get("tools", [])]


def _embedded(server: ModelServer) -> list[list[str]]:
    return [
        list(r.body["input"]) if isinstance(r.body["input"], list) else [r.body["input"]]
        for r in server.requests
        if r.path.endswith("/embeddings")
    ]


def test_the_top_k_most_similar_routes_are_offered_and_cached_per_revision(
    make_workspace: Callable[..., Workspace], server: ModelServer
) -> None:
    ws = make_workspace({"router": _router(top_k=2)}, files=_files())
    server.add(text_reply("Asked.", match="orders per region in 2024"))
    ws.ask("agents/router", "How many orders per region in 2024?")
    # most similar first; the four others are not offered
    assert _offered(server) == ["queries_route_regions_2024", "queries_route_regions"]
    first = _embedded(server)
    assert len(first) == 2 and sorted(first[0]) == sorted(EMBEDS.values())
    assert first[1] == ["How many orders per region in 2024?"]
    embeddings = next(r for r in server.requests if r.path.endswith("/embeddings"))
    # the routing agent's own model entry: its endpoint and key, Oxy's default model
    assert embeddings.body["model"] == "text-embedding-3-small"
    assert embeddings.headers["authorization"] == "Bearer sk-test"

    # another question on the same revision embeds only the question
    server.add(text_reply("Asked.", match="refunds"))
    ws.ask("agents/router", "How many refunds and returned items?")
    assert _offered(server)[0] == "queries_route_refunds"
    assert _embedded(server)[2:] == [["How many refunds and returned items?"]]


def test_no_more_routes_than_top_k_embeds_nothing(
    make_workspace: Callable[..., Workspace], server: ModelServer
) -> None:
    ws = make_workspace({"router": _router(top_k=6)}, files=_files())
    server.add(text_reply("Asked."))
    ws.ask("agents/router", "Anything?")
    assert len(_offered(server)) == 6 and _embedded(server) == []


def test_when_embeddings_fail_every_route_is_offered_with_a_warning(
    make_workspace: Callable[..., Workspace], server: ModelServer
) -> None:
    # an Anthropic entry has no embeddings endpoint
    ws = make_workspace({"router": _router(top_k=2, embed_model="claude")}, files=_files())
    server.add(text_reply("Asked."))
    events: list[dict[str, Any]] = []
    ws.ask("agents/router", "Anything?", events)
    assert len(_offered(server)) == 6
    (warning,) = [e["message"] for e in events if e["type"] == "warning"]
    assert "could not be narrowed" in warning and "'claude' is a anthropic model" in warning


def test_local_embeddings_route_the_question(
    make_workspace: Callable[..., Workspace], server: ModelServer
) -> None:
    ws = make_workspace({"router": _router(top_k=1, embed_model="wordllama")}, files=_files())
    server.add(text_reply("Asked."))
    ws.ask("agents/router", "Which customers spend the most?")
    assert _offered(server) == ["queries_route_customers"]
    assert _embedded(server) == []  # nothing asked of the server


def test_the_retrieval_tool_embeds_locally_too(
    make_workspace: Callable[..., Workspace], server: ModelServer
) -> None:
    tool = {"type": "retrieval", "src": ["queries/route_*.sql"], "embed_model": "wordllama"}
    agent = {"model": "gpt", "system_instructions": "Answer.", "tools": [tool | {"top_k": 1}]}
    ws = make_workspace({"finder": yaml.safe_dump(agent)}, files=_files())
    server.add(
        tool_reply("retrieval", match="big spenders", query="customers who spend the most"),
        text_reply("Found it.", match="-- queries/"),
    )
    events: list[dict[str, Any]] = []
    assert ws.ask("agents/finder", "big spenders?", events).answer == "Found it."
    (result,) = [e for e in events if e["type"] == "tool_result"]
    assert result["documents"] == ["queries/route_customers.sql"], result
    assert _embedded(server) == []


def test_the_local_model_loads_and_embeds_with_no_network() -> None:
    """In a fresh process where every socket connection and name lookup raises (an
    audit hook sees them all), the model loads from the wheel and ranks by meaning."""
    script = textwrap.dedent(
        """
        import asyncio, json, sys

        def no_network(event, args):
            if event in ("socket.connect", "socket.getaddrinfo", "socket.gethostbyname"):
                raise RuntimeError(f"network used: {event} {args!r}")

        sys.addaudithook(no_network)
        from quarry.agents.embeddings import LocalEmbedder

        texts = ["orders per region", "how many orders in each region?", "monthly revenue"]
        vectors = asyncio.run(LocalEmbedder().embed(texts))
        print(json.dumps(vectors))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    vectors = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(vectors) == 3 and len(vectors[0]) == 256

    def cosine(a: list[float], b: list[float]) -> float:
        dot = sum(x * y for x, y in zip(a, b, strict=True))
        return float(dot / (sum(x * x for x in a) ** 0.5 * sum(y * y for y in b) ** 0.5))

    assert cosine(vectors[1], vectors[0]) > cosine(vectors[1], vectors[2]) + 0.2
