"""The run worker's ConcurrentWorker tells agent turns (light) from workflow runs by
the runs' kinds: for a claimed group, in one query (node/services._agent_turns), not
one per task, on SQLite and Postgres."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from quarry.demo import create_demo_workspace
from quarry.factory.local import compile_local
from quarry.node.services import Services, _agent_turns, build_services
from quarry.runtime.runs.service import RunRequest, create_run
from quarry.store import runs as runq
from tests.conftest import Backend


@pytest.fixture
def svc(backend: Backend, tmp_path: Path) -> Iterator[Services]:
    services = build_services(
        backend.settings(data_dir=tmp_path / "data", revision_cache_ttl=0, inprocess_workers="off")
    )
    compile_local(
        services.engine, services.store, "local", create_demo_workspace(tmp_path / "shop"), "shop"
    )
    yield services
    services.close()


def test_a_group_is_told_in_one_query(svc: Services) -> None:
    workspace = svc.catalog.workspace("local", "shop", fresh=True)
    workflow = create_run(svc, workspace, RunRequest("workflow", "workflows/monthly_revenue", {}))
    with svc.engine.begin() as conn:
        row = runq.get_run_by_id(conn, workflow.id)
        # An agent turn's row as the thread service writes it, but for its kind the
        # same: only the kind decides.
        runq.insert_runs(
            conn, [dataclasses.replace(row, id="turn-1", target_kind="agent", task_id=None)]
        )
    task = svc.queue.get(workflow.task_id or 0)
    assert task is not None
    group = [
        task,
        dataclasses.replace(task, payload={"run_id": "turn-1"}),
        dataclasses.replace(task, payload={"run_id": "no-such-run"}),
        dataclasses.replace(task, payload={}),
        dataclasses.replace(task, payload={"run_id": "turn-1"}),
    ]
    statements: list[str] = []

    def seen(*args: Any) -> None:
        statements.append(str(args[2]))

    event.listen(svc.engine, "before_cursor_execute", seen)
    try:
        answers = _agent_turns(svc, group)
    finally:
        event.remove(svc.engine, "before_cursor_execute", seen)
    assert answers == [False, True, False, False, True]
    assert len([s for s in statements if "runs" in s]) == 1, statements


def test_a_group_without_runs_asks_nothing(svc: Services) -> None:
    task = svc.queue.get(svc.queue.enqueue("local", "t", {"n": 1}).id)
    assert task is not None
    statements: list[str] = []

    def seen(*args: Any) -> None:
        statements.append(str(args[2]))

    event.listen(svc.engine, "before_cursor_execute", seen)
    try:
        assert _agent_turns(svc, [task, task]) == [False, False]
    finally:
        event.remove(svc.engine, "before_cursor_execute", seen)
    assert statements == []
