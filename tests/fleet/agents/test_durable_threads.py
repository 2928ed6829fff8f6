"""A thread's turn on the fleet: asked through a serve replica (which runs no
workers), executed by a worker process that is SIGKILLed while it waits for the
model; another worker resumes the turn without repeating the model call or the query
that had finished, and the replica's event stream, opened before the kill, goes on to
the answer."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from quarry.core.settings import Settings
from quarry.factory.local import compile_local
from quarry.node.services import build_services
from quarry.store.run_tables import run_steps
from tests.fleet.agents.conftest import notes_workspace, start_worker
from tests.support.model_server import ModelServer, Reply, text_reply, tool_reply
from tests.support.processes import start_quarry, wait_healthy, wait_until

pytestmark = pytest.mark.slow

SQL = "SELECT region, count(*) AS n FROM notes GROUP BY region ORDER BY region"
WS = "/api/v1/workspaces/ws"


def _follow(url: str, path: str, into: list[tuple[str, dict[str, Any]]]) -> None:
    with (
        httpx.Client(base_url=url, timeout=180) as client,
        client.stream("GET", path) as response,
    ):
        fields: dict[str, str] = {}
        for line in response.iter_lines():
            if line:
                key, _, value = line.partition(": ")
                fields[key] = value
                continue
            into.append((fields["event"], json.loads(fields["data"])))
            fields = {}
            if into[-1][0] == "done":
                return


def test_a_thread_turn_resumes_on_another_worker_and_the_replica_stream_goes_on(
    pg_database: str, notes_warehouse: str, tmp_path: Path
) -> None:
    warehouse = notes_warehouse
    with ModelServer() as server:
        server.add(
            tool_reply("execute_sql", match="notes per region", sql=SQL),
            Reply(text="never delivered", match="region,n", delay=30),  # worker A dies here
            text_reply("north 2, south 1", match="region,n"),
        )
        root = notes_workspace(tmp_path / "ws", warehouse, server)
        env = {
            "QUARRY_DATABASE_URL": pg_database,
            "QUARRY_BLOB_URL": (tmp_path / "blobs").as_uri(),
            "QUARRY_WORKER_LEASE_SECONDS": "2",
            "QUARRY_AUTH": "open",
            "TEST_OPENAI_KEY": "sk-test",
        }
        svc = build_services(Settings(database_url=pg_database, blob_url=env["QUARRY_BLOB_URL"]))
        compile_local(svc.engine, svc.store, "local", root, "ws")
        replica = start_quarry(
            ["serve", "--role", "serve"],
            {**env, "QUARRY_DATA_DIR": str(tmp_path / "serve")},
            tmp_path / "serve.log",
        )
        first = second = None
        try:
            wait_healthy(replica, timeout=120)
            first = start_worker(
                {**env, "QUARRY_DATA_DIR": str(tmp_path / "a")}, tmp_path / "worker-a.log"
            )
            with httpx.Client(base_url=replica.url, timeout=60) as client:
                created = client.post(
                    f"{WS}/agents/agents/notes/threads",
                    json={"message": "How many notes per region?"},
                )
                assert created.status_code == 201, created.text + replica.log()
                body = created.json()
                events: list[tuple[str, dict[str, Any]]] = []
                follower = threading.Thread(
                    target=_follow, args=(replica.url, body["events_url"], events), daemon=True
                )
                follower.start()
                wait_until(lambda: len(server.requests) >= 2, 90, "the second model call")
                first.send_signal(signal.SIGKILL)
                first.wait(timeout=10)
                second = start_worker(
                    {**env, "QUARRY_DATA_DIR": str(tmp_path / "b")}, tmp_path / "worker-b.log"
                )
                follower.join(timeout=150)
                assert not follower.is_alive(), (tmp_path / "worker-b.log").read_text()
                thread = client.get(f"{WS}/threads/{body['thread']['id']}").json()
        finally:
            for worker in (first, second):
                if worker is not None and worker.poll() is None:
                    worker.terminate()
                    worker.wait(timeout=30)
            replica.stop()
        requests = list(server.requests)

    names = [name for name, _ in events]
    assert names[-1] == "done" and events[-1][1]["status"] == "answered", events
    started = [data for name, data in events if name == "started"]
    assert len(started) == 2 and started[1].get("resumed") is True
    # The query was called once (by worker A); worker B replayed its journaled result.
    assert names.count("tool_call") == 1
    results = [data for name, data in events if name == "tool_result"]
    assert [bool(r.get("replayed")) for r in results] == [False, True]
    answer = next(data for name, data in events if name == "answer")
    assert answer["content"] == "north 2, south 1"
    # Model call 0 was not repeated; call 1 (in flight at the kill) was made again.
    assert len(requests) == 3
    assert requests[2].body["messages"] == requests[1].body["messages"]
    reply = thread["messages"][1]
    assert reply["status"] == "answered" and reply["content"] == "north 2, south 1"
    assert reply["tools"] == [
        {
            "id": reply["tools"][0]["id"],
            "name": "execute_sql",
            "arguments": json.dumps({"sql": SQL}),
            "sql": SQL,
            "content": results[0]["content"],
            "database": "pg",
            "rows": 2,
            "rows_shown": 2,
            "truncated": False,
        }
    ]
    with svc.engine.connect() as conn:
        steps = dict(
            conn.execute(
                select(run_steps.c.step_key, run_steps.c.attempt).where(
                    run_steps.c.run_id == reply["run_id"]
                )
            ).all()
        )
    assert steps["turn.agent.model.0"] == 1 and steps["turn.agent.tool.0.0"] == 1
    assert steps["turn.agent.model.1"] == 2
    svc.close()
