"""SIGKILL a worker in the middle of an agent turn (waiting for the model): another
worker finishes the turn without repeating the model call or the query that had
finished, and the model is sent the same tool result again."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from sqlalchemy import select

from quarry.core.settings import Settings
from quarry.factory.local import compile_local
from quarry.node.services import build_services
from quarry.runtime.runs.service import RunRequest, create_run
from quarry.store.run_tables import run_events, run_steps, runs
from tests.fleet.agents.conftest import notes_workspace, start_worker
from tests.support.model_server import ModelServer, Reply, text_reply, tool_reply
from tests.support.processes import wait_until

pytestmark = pytest.mark.slow

SQL = "SELECT region, count(*) AS n FROM notes GROUP BY region ORDER BY region"


def _workspace(root: Path, warehouse: str, server: ModelServer) -> Path:
    """The notes workspace with a workflow whose one task asks the agent."""
    notes_workspace(root, warehouse, server)
    (root / "workflows").mkdir()
    (root / "workflows" / "ask.workflow.yml").write_text(
        "tasks:\n  - name: ask\n    type: agent\n    agent_ref: agents/notes.agent.yml\n"
        "    prompt: How many notes per region?\n"
    )
    return root


def test_a_turn_resumes_on_another_worker_without_repeating_calls(
    pg_database: str, notes_warehouse: str, tmp_path: Path
) -> None:
    warehouse = notes_warehouse
    with ModelServer() as server:
        server.add(
            tool_reply("execute_sql", match="notes per region", sql=SQL),
            Reply(text="never delivered", match="region,n", delay=30),  # worker A dies here
            text_reply("north 2, south 1", match="region,n"),
        )
        root = _workspace(tmp_path / "ws", warehouse, server)
        env = {
            "QUARRY_DATABASE_URL": pg_database,
            "QUARRY_BLOB_URL": (tmp_path / "blobs").as_uri(),
            "QUARRY_DATA_DIR": str(tmp_path / "data"),
            "QUARRY_WORKER_LEASE_SECONDS": "2",
            "TEST_OPENAI_KEY": "sk-test",
        }
        svc = build_services(
            Settings(
                database_url=pg_database,
                blob_url=env["QUARRY_BLOB_URL"],
                data_dir=tmp_path / "data",
            )
        )
        compile_local(svc.engine, svc.store, "local", root, "ws")
        workspace = svc.catalog.workspace("local", "ws", fresh=True)
        run = create_run(
            svc,
            workspace,
            RunRequest("workflow", "workflows/ask", {}),
        )

        def run_state() -> str:
            with svc.engine.connect() as conn:
                return str(
                    conn.execute(select(runs.c.state).where(runs.c.id == run.id)).scalar_one()
                )

        first = start_worker(env, tmp_path / "worker-a.log")
        try:
            wait_until(lambda: len(server.requests) >= 2, 90, "the second model call")
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=10)
        finally:
            if first.poll() is None:
                first.kill()
        second = start_worker(env, tmp_path / "worker-b.log")
        try:
            wait_until(lambda: run_state() in {"succeeded", "failed"}, 120, "the run to finish")
        finally:
            second.terminate()
            second.wait(timeout=30)
        assert run_state() == "succeeded", (tmp_path / "worker-b.log").read_text()
        requests = list(server.requests)

    # Model call 0 was not repeated; call 1 (in flight at the kill) was made again, with
    # the tool result worker A had journaled.
    assert len(requests) == 3
    assert requests[2].body["messages"][-1] == requests[1].body["messages"][-1]
    assert requests[2].body["messages"][-1]["content"].startswith("region,n\nnorth,2\nsouth,1")
    with svc.engine.connect() as conn:
        steps = dict(
            conn.execute(
                select(run_steps.c.step_key, run_steps.c.attempt).where(
                    run_steps.c.run_id == run.id
                )
            ).all()
        )
        events = [
            json.loads(row)
            for row in conn.execute(
                select(run_events.c.event).where(run_events.c.run_id == run.id)
            ).scalars()
        ]
    # The query ran once, by worker A (attempt 1); worker B replayed its result.
    assert steps["tasks.0.agent.model.0"] == 1 and steps["tasks.0.agent.tool.0.0"] == 1
    assert steps["tasks.0"] == 2
    results = [e for e in events if e.get("type") == "agent.tool_result"]
    assert any(e.get("replayed") for e in results)
    assert sum(1 for e in events if e.get("type") == "agent.tool_call") <= 1
    svc.close()
