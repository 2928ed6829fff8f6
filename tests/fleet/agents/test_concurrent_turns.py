"""One ``quarry worker`` process carries many thread turns at once: the turns wait on
their model together (the scripted server holds each first answer until all of them
are in flight, so a worker taking turns one at a time fails here), each journaled
and answered once."""

from __future__ import annotations

from pathlib import Path

import pytest

from quarry.agents.threads import create_thread, post_message
from quarry.core.settings import Settings
from quarry.factory.local import compile_local
from quarry.node.services import build_services
from quarry.store import threads as tq
from tests.fleet.agents.conftest import notes_workspace, start_worker
from tests.fleet.agents.test_durable_threads import SQL
from tests.support.model_server import Call, ModelServer, Reply
from tests.support.processes import wait_until

pytestmark = pytest.mark.slow

TURNS = 24


def test_one_worker_runs_many_turns_at_once(
    pg_database: str, notes_warehouse: str, tmp_path: Path
) -> None:
    warehouse = notes_warehouse
    with ModelServer() as server:
        for k in range(TURNS):
            server.add(
                Reply(calls=[Call("execute_sql", {"sql": SQL})], match=f"q{k}?", together=TURNS),
                Reply(text="north 2, south 1", match="region,n"),
            )
        root = notes_workspace(tmp_path / "ws", warehouse, server)
        blob = (tmp_path / "blobs").as_uri()
        env = {
            "QUARRY_DATABASE_URL": pg_database,
            "QUARRY_BLOB_URL": blob,
            "QUARRY_DATA_DIR": str(tmp_path / "worker"),
            "TEST_OPENAI_KEY": "sk-test",
        }
        svc = build_services(Settings(database_url=pg_database, blob_url=blob))
        compile_local(svc.engine, svc.store, "local", root, "ws")
        workspace = svc.catalog.workspace("local", "ws", fresh=True)
        replies = []
        for k in range(TURNS):
            thread = create_thread(svc.engine, svc.catalog, workspace, "agents/notes", "u")
            turn = post_message(svc.engine, svc.queue, svc.catalog, workspace, thread, f"q{k}?")
            replies.append(turn.run.id)
        worker = start_worker(env, tmp_path / "worker.log")
        try:

            def answered() -> bool:
                with svc.engine.connect() as conn:
                    rows = [tq.get_reply_of_run(conn, r) for r in replies]
                return all(m.status != tq.PENDING for m in rows)

            wait_until(answered, 120, "every turn answered")
        finally:
            worker.terminate()
            worker.wait(timeout=30)
        log = (tmp_path / "worker.log").read_text()
        with svc.engine.connect() as conn:
            rows = [tq.get_reply_of_run(conn, r) for r in replies]
        svc.close()
        peak = server.peak_in_flight
        requests = list(server.requests)
    assert peak >= TURNS, log
    assert [m.status for m in rows] == ["answered"] * TURNS, log
    # Two model calls per turn, none repeated.
    assert len(requests) == 2 * TURNS
