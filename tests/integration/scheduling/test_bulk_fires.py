"""Many schedules due in one tick: their compare-and-swaps and one bulk enqueue in
one transaction (on Postgres one INSERT INTO tasks for all of them), each run
carrying its own task."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, select

from quarry.node.services import Services
from quarry.scheduling.ticks import tick_schedules
from quarry.store.queue_tables import tasks
from tests.integration.scheduling.helpers import next_run, scheduled_runs
from tests.integration.scheduling.workspace import Workspace, schedule_yaml

COUNT = 12


def test_a_tick_queues_its_fires_in_one_statement(ws: Workspace, svc: Services) -> None:
    for i in range(COUNT):
        ws.write(f"schedules/s{i}.schedule.yml", schedule_yaml("* * * * * *"))
    ws.compile()
    due = max(next_run(svc.engine, f"schedules/s{i}") for i in range(COUNT))
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    event.listen(svc.engine, "before_cursor_execute", record)
    try:
        won = tick_schedules(svc, now=due, node="a", batch=50)
    finally:
        event.remove(svc.engine, "before_cursor_execute", record)
    assert len(won) == COUNT and all(f.task_id is not None for f in won)
    runs = scheduled_runs(svc.engine)
    assert len(runs) == COUNT
    with svc.engine.connect() as conn:
        queued = {r.id: r.state for r in conn.execute(select(tasks.c.id, tasks.c.state))}
    assert sorted(r.task_id for r in runs) == sorted(queued) == sorted(f.task_id for f in won)
    if svc.engine.dialect.name == "postgresql":
        task_inserts = [s for s in seen if "INSERT INTO tasks" in s]
        assert len(task_inserts) == 1, task_inserts
        assert "json_to_recordset" in task_inserts[0]
