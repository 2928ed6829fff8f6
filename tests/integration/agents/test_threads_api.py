"""Threads over HTTP (a real socket) with the real worker and the real OpenAI SDK
against the scripted model server, on SQLite and on Postgres: a turn queued, executed
by the worker and followed as server-sent events; the next turn sends the model the
thread so far; cancel, retry, one turn at a time, and the per-tenant ceilings."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from quarry.api.app import create_app
from quarry.demo import create_demo_workspace
from quarry.factory.local import compile_local
from quarry.node.services import Services, build_services
from quarry.store import threads as tq
from tests.conftest import Backend
from tests.integration.agents.conftest import agent_file
from tests.support.model_server import ModelServer, Reply, text_reply, tool_reply
from tests.support.processes import serve_in_thread, wait_until

WS = "/api/v1/workspaces/shop"
SQL = "SELECT region, count(*) AS n FROM 'orders.csv' GROUP BY region ORDER BY region"

Api = Callable[..., tuple[httpx.Client, Services]]


@pytest.fixture
def api(
    backend: Backend, tmp_path: Path, server: ModelServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Api]:
    monkeypatch.setenv("TEST_OPENAI_KEY", "sk-test")
    opened: list[Any] = []

    def start(**settings: object) -> tuple[httpx.Client, Services]:
        svc = build_services(
            backend.settings(
                data_dir=tmp_path / "data", revision_cache_ttl=0, inprocess_workers="on", **settings
            )
        )
        root = create_demo_workspace(tmp_path / "shop")
        server.serve_models(root, "TEST_OPENAI_KEY")
        (root / "agents" / "duck.agent.yml").write_text(agent_file("local"))
        result = compile_local(svc.engine, svc.store, "local", root, "shop")
        assert not [p for p in result.problems if not p.is_warning], result.problems
        serving = serve_in_thread(create_app(svc))
        url = serving.__enter__()
        client = httpx.Client(base_url=url, timeout=60)
        opened.append((client, serving, svc))
        return client, svc

    yield start
    for client, serving, svc in opened:
        client.close()
        serving.__exit__(None, None, None)
        svc.close()


def follow(client: httpx.Client, url: str, **headers: str) -> list[tuple[int, str, Any]]:
    """The turn's server-sent events, as (id, name, data), until ``done``."""
    events: list[tuple[int, str, Any]] = []
    with client.stream("GET", url, headers=headers) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        fields: dict[str, str] = {}
        for line in response.iter_lines():
            if line:
                key, _, value = line.partition(": ")
                fields[key] = value
                continue
            events.append((int(fields["id"]), fields["event"], json.loads(fields["data"])))
            fields = {}
            if events[-1][1] == "done":
                break
    return events


def names(events: list[tuple[int, str, Any]]) -> list[str]:
    return [name for _, name, _ in events]


def test_a_turn_is_queued_executed_by_the_worker_and_streamed(
    api: Api, server: ModelServer
) -> None:
    client, _svc = api()
    server.add(
        tool_reply("execute_sql", match="orders per region", sql=SQL),
        Reply(text="North leads with the most orders.", match="[4 rows]"),
    )
    created = client.post(
        f"{WS}/agents/agents/duck/threads", json={"message": "How many orders per region?"}
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["thread"]["agent"] == "agents/duck"
    assert body["thread"]["title"] == "How many orders per region?"
    assert body["reply"]["status"] in ("queued", "running")
    events = follow(client, body["events_url"])
    seen = names(events)
    assert seen[0] == "queued" and seen[1] == "started" and seen[-1] == "done"
    assert seen.index("tool_call") < seen.index("tool_result") < seen.index("answer")
    call = next(data for _, name, data in events if name == "tool_call")
    assert call["name"] == "execute_sql" and call["sql"] == SQL
    result = next(data for _, name, data in events if name == "tool_result")
    assert result["rows"] == 4 and "North" in result["content"]
    text = "".join(data["text"] for _, name, data in events if name == "text")
    assert text == "North leads with the most orders."
    answer = next(data for _, name, data in events if name == "answer")
    assert answer["content"] == text and answer["status"] == "answered"
    assert answer["input_tokens"] == 22 and answer["output_tokens"] == 14
    assert events[-1][2] == {"message_id": body["reply"]["id"], "status": "answered"}
    ids = [event_id for event_id, _, _ in events]
    assert ids == sorted(ids)

    thread = client.get(f"{WS}/threads/{body['thread']['id']}").json()
    question, reply = thread["messages"]
    assert question["role"] == "user" and question["content"] == "How many orders per region?"
    assert reply["status"] == "answered" and reply["content"] == text
    assert reply["tools"][0]["sql"] == SQL and reply["tools"][0]["rows"] == 4

    # Last-Event-ID resumes after the event given: the rest, the same ids.
    middle = events[3][0]
    again = follow(client, body["events_url"], **{"Last-Event-ID": str(middle)})
    assert [e for e in events if e[0] > middle and e[1] != "done"] == again[:-1]
    assert again[-1][1] == "done"


def test_the_next_turn_sends_the_model_the_thread_so_far(api: Api, server: ModelServer) -> None:
    client, _svc = api()
    server.add(
        tool_reply("execute_sql", match="orders per region", sql=SQL),
        text_reply("North leads.", match="[4 rows]"),
        text_reply("South is second.", match="And second?"),
    )
    first = client.post(f"{WS}/agents/agents/duck/threads", json={"message": "orders per region"})
    thread_id = first.json()["thread"]["id"]
    follow(client, first.json()["events_url"])
    second = client.post(f"{WS}/threads/{thread_id}/messages", json={"content": "And second?"})
    assert second.status_code == 202, second.text
    assert names(follow(client, second.json()["events_url"]))[-2:] == ["answer", "done"]
    sent = server.requests[-1].body["messages"]
    roles = [m["role"] for m in sent]
    assert roles == ["system", "user", "assistant", "tool", "assistant", "user"]
    assert sent[1]["content"] == "orders per region"
    assert sent[2]["tool_calls"][0]["function"]["name"] == "execute_sql"
    assert sent[4]["content"] == "North leads." and sent[5]["content"] == "And second?"
    listed = client.get(f"{WS}/threads").json()["threads"]
    assert [t["id"] for t in listed] == [thread_id]
    messages = client.get(f"{WS}/threads/{thread_id}").json()["messages"]
    assert [m["content"] for m in messages] == [
        "orders per region",
        "North leads.",
        "And second?",
        "South is second.",
    ]


def test_a_running_turn_is_cancelled_and_retried(api: Api, server: ModelServer) -> None:
    client, svc = api()
    server.add(
        Reply(text="too late", match="slow question", delay=60),
        text_reply("Here it is.", match="slow question"),
    )
    created = client.post(f"{WS}/agents/agents/duck/threads", json={"message": "slow question"})
    thread_id = created.json()["thread"]["id"]
    wait_until(lambda: len(server.requests) == 1, 30, "the model call")
    busy = client.post(f"{WS}/threads/{thread_id}/messages", json={"content": "another"})
    assert busy.status_code == 409 and "in progress" in busy.json()["message"]
    cancelled = client.post(f"{WS}/threads/{thread_id}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["cancelled"] is True
    events = follow(client, created.json()["events_url"])
    assert "cancel_requested" in names(events) and "answer" not in names(events)
    assert events[-1][2]["status"] == "cancelled"
    reply = client.get(f"{WS}/threads/{thread_id}").json()["messages"][1]
    assert reply["status"] == "cancelled" and reply["content"] == ""

    retried = client.post(f"{WS}/threads/{thread_id}/retry")
    assert retried.status_code == 202, retried.text
    assert follow(client, retried.json()["events_url"])[-1][2]["status"] == "answered"
    messages = client.get(f"{WS}/threads/{thread_id}").json()["messages"]
    assert [(m["role"], m.get("status")) for m in messages] == [
        ("user", None),
        ("assistant", "cancelled"),
        ("user", None),
        ("assistant", "answered"),
    ]
    # the cancelled turn is not in the history of the retried one
    assert [m["role"] for m in server.requests[-1].body["messages"]] == ["system", "user"]
    again = client.post(f"{WS}/threads/{thread_id}/retry")
    assert again.status_code == 409 and "answered" in again.json()["message"]
    with svc.engine.connect() as conn:
        assert len(tq.get_messages(conn, thread_id)) == 4


def test_concurrent_turns_past_the_tenant_ceiling_are_refused_with_429(
    api: Api, server: ModelServer
) -> None:
    client, _svc = api(agent_max_concurrent_turns=1)
    server.add(Reply(text="late", match="first", delay=60), text_reply("ok", match="second"))
    first = client.post(f"{WS}/agents/agents/duck/threads", json={"message": "first"})
    assert first.status_code == 201, first.text
    other = client.post(f"{WS}/agents/agents/duck/threads", json={})
    thread_id = other.json()["thread"]["id"]
    refused = client.post(f"{WS}/threads/{thread_id}/messages", json={"content": "second"})
    assert refused.status_code == 429, refused.text
    assert refused.json()["details"]["limit"] == "concurrent_turns"
    assert "QUARRY_AGENT_MAX_CONCURRENT_TURNS" in refused.json()["message"]
    assert refused.headers["Retry-After"] == "5"
    client.post(f"{WS}/threads/{first.json()['thread']['id']}/cancel")
    follow(client, first.json()["events_url"])
    accepted = client.post(f"{WS}/threads/{thread_id}/messages", json={"content": "second"})
    assert accepted.status_code == 202, accepted.text


def test_tokens_past_the_daily_ceiling_are_refused_with_429(api: Api, server: ModelServer) -> None:
    client, _svc = api(agent_max_tokens_per_day=10)
    server.add(text_reply("one", match="first"))
    first = client.post(f"{WS}/agents/agents/duck/threads", json={"message": "first"})
    follow(client, first.json()["events_url"])  # 11 + 7 tokens: past the ceiling of 10
    thread_id = first.json()["thread"]["id"]
    refused = client.post(f"{WS}/threads/{thread_id}/messages", json={"content": "second"})
    assert refused.status_code == 429, refused.text
    assert refused.json()["details"] == {"limit": "tokens_per_day", "ceiling": 10, "used": 18}
    assert int(refused.headers["Retry-After"]) > 0
    assert len(server.requests) == 1


def test_tokens_of_a_running_turn_count_against_the_daily_ceiling(
    api: Api, server: ModelServer
) -> None:
    client, _svc = api(agent_max_tokens_per_day=10)
    server.add(
        tool_reply("execute_sql", match="first", sql="SELECT 42 AS answer"),
        Reply(text="late", match="answer\n42", delay=60),
    )
    first = client.post(f"{WS}/agents/agents/duck/threads", json={"message": "first"})
    assert first.status_code == 201, first.text
    wait_until(lambda: len(server.requests) == 2, 30, "the second model call")
    # The first response (11 + 7 tokens) was journaled and counted; the turn runs on.
    other = client.post(f"{WS}/agents/agents/duck/threads", json={})
    thread_id = other.json()["thread"]["id"]
    refused = client.post(f"{WS}/threads/{thread_id}/messages", json={"content": "second"})
    assert refused.status_code == 429, refused.text
    assert refused.json()["details"] == {"limit": "tokens_per_day", "ceiling": 10, "used": 18}
    client.post(f"{WS}/threads/{first.json()['thread']['id']}/cancel")
    assert follow(client, first.json()["events_url"])[-1][2]["status"] == "cancelled"
    assert len(server.requests) == 2


def test_bad_requests_change_nothing(api: Api) -> None:
    client, svc = api()
    missing = client.post(f"{WS}/agents/agents/nobody/threads", json={"message": "hi"})
    assert missing.status_code == 404 and "agents/nobody" in missing.json()["message"]
    created = client.post(f"{WS}/agents/agents/duck/threads", json={})
    thread_id = created.json()["thread"]["id"]
    blank = client.post(f"{WS}/threads/{thread_id}/messages", json={"content": "   "})
    assert blank.status_code == 400 and blank.json()["details"]["parameter"] == "content"
    assert client.post(f"{WS}/threads/nope/messages", json={"content": "x"}).status_code == 404
    assert client.get(f"{WS}/threads/{thread_id}/events").status_code == 404
    nothing = client.post(f"{WS}/threads/{thread_id}/cancel").json()
    assert nothing == {"cancelled": False, "reply": None}
    with svc.engine.connect() as conn:
        assert tq.get_messages(conn, thread_id) == []
