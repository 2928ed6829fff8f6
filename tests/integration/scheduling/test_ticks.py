"""The compare-and-swap tick: exactly one fire per due time, whoever ticks."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from quarry.node.services import Services
from quarry.scheduling.admin import trigger
from quarry.scheduling.ticks import fire_key, tick_schedules
from quarry.store.queue_tables import tasks
from quarry.store.run_tables import runs
from quarry.store.schedule_tables import schedules
from tests.integration.scheduling.helpers import fires, next_run, schedule_row, scheduled_runs
from tests.integration.scheduling.workspace import Workspace, schedule_yaml

NAME = "schedules/every"
PATH = "schedules/every.schedule.yml"


def test_due_schedule_fires_once_whoever_ticks(ws: Workspace, svc: Services) -> None:
    ws.write(PATH, schedule_yaml("* * * * * *", extra="variables: {region: EU}\n"))
    ws.compile()
    due = next_run(svc.engine, NAME)
    now = due + timedelta(milliseconds=100)
    won = tick_schedules(svc, now=now, node="a")
    lost = tick_schedules(svc, now=now, node="b")
    assert [f.scheduled_for for f in won] == [due] and lost == []
    row = schedule_row(svc.engine, NAME)
    assert row.next_run_at == due + timedelta(seconds=1)
    assert row.last_scheduled_for == due
    [run] = scheduled_runs(svc.engine)
    assert run.target_kind == "workflow" and run.target_name == "workflows/nightly"
    assert run.request_id == fire_key(row.id, due)
    assert '"region": "EU"' in run.variables
    assert run.revision_id == row.revision_id
    with svc.engine.connect() as conn:
        task = conn.execute(select(tasks).where(tasks.c.id == run.task_id)).one()
    assert task.state == "queued" and task.kind == "run"
    [fire] = fires(svc.engine, row.id)
    assert fire.run_id == run.id and fire.node == "a" and fire.outcome == "run"


def test_a_time_put_back_cannot_fire_twice(ws: Workspace, svc: Services) -> None:
    """Even if next_run_at were reset to a fired time (a racing redeploy), the
    fire log's key stops a second run."""
    ws.write(PATH, schedule_yaml("* * * * * *"))
    ws.compile()
    due = next_run(svc.engine, NAME)
    now = due + timedelta(milliseconds=100)
    assert len(tick_schedules(svc, now=now)) == 1
    with svc.engine.begin() as conn:
        conn.execute(update(schedules).where(schedules.c.name == NAME).values(next_run_at=due))
    assert tick_schedules(svc, now=now) == []
    assert len(scheduled_runs(svc.engine)) == 1
    assert next_run(svc.engine, NAME) == due + timedelta(seconds=1)


def test_missed_windows_fire_once_on_recovery(ws: Workspace, svc: Services) -> None:
    ws.write(PATH, schedule_yaml("* * * * * *"))
    ws.compile()
    due = next_run(svc.engine, NAME)
    # Every node was down for ten due times; the catch-up window is 2 s.
    now = due + timedelta(seconds=10, milliseconds=300)
    first = tick_schedules(svc, now=now, catchup=2.0)
    again = tick_schedules(svc, now=now, catchup=2.0)
    assert len(first) == 1 and again == []
    assert first[0].scheduled_for == due and first[0].coalesced == 10
    assert next_run(svc.engine, NAME) == due + timedelta(seconds=11)
    assert len(scheduled_runs(svc.engine)) == 1


def test_a_late_tick_within_catchup_fires_every_window(ws: Workspace, svc: Services) -> None:
    ws.write(PATH, schedule_yaml("* * * * * *"))
    ws.compile()
    due = next_run(svc.engine, NAME)
    now = due + timedelta(seconds=2, milliseconds=500)
    fired = []
    for _ in range(5):
        fired += tick_schedules(svc, now=now, catchup=5.0)
    assert [f.scheduled_for for f in fired] == [due + timedelta(seconds=i) for i in range(3)]


def test_overlap_skip_records_a_skipped_fire(ws: Workspace, svc: Services) -> None:
    ws.write(PATH, schedule_yaml("* * * * * *", overlap="skip"))
    ws.compile()
    due = next_run(svc.engine, NAME)
    first = tick_schedules(svc, now=due)
    second = tick_schedules(svc, now=due + timedelta(seconds=1))
    assert first[0].outcome == "run" and second[0].outcome == "skipped"
    assert len(scheduled_runs(svc.engine)) == 1
    # Once the previous run finished, the next due time runs again.
    with svc.engine.begin() as conn:
        conn.execute(update(runs).values(state="succeeded"))
    third = tick_schedules(svc, now=due + timedelta(seconds=2))
    assert third[0].outcome == "run"


def test_paused_and_disabled_schedules_do_not_fire(ws: Workspace, svc: Services) -> None:
    ws.write(PATH, schedule_yaml("* * * * * *"))
    ws.compile()
    due = next_run(svc.engine, NAME)
    with svc.engine.begin() as conn:
        conn.execute(update(schedules).values(paused=True))
    assert tick_schedules(svc, now=due + timedelta(seconds=1)) == []
    ws.write(PATH, schedule_yaml("* * * * * *", enabled=False))
    ws.compile()
    with svc.engine.begin() as conn:
        conn.execute(update(schedules).values(paused=False))
    assert tick_schedules(svc, now=due + timedelta(seconds=5)) == []


def test_trigger_now_fires_outside_the_cron(ws: Workspace, svc: Services) -> None:
    ws.write(PATH, schedule_yaml("0 3 1 1 *"))
    ws.compile()
    before = next_run(svc.engine, NAME)
    fire = trigger(svc, "local", ws.workspace_id, NAME)
    assert fire.outcome == "manual" and fire.run_id is not None
    assert next_run(svc.engine, NAME) == before
    assert len(scheduled_runs(svc.engine)) == 1


def test_a_failing_fire_does_not_hold_the_others_back(
    ws: Workspace, svc: Services, caplog: pytest.LogCaptureFixture
) -> None:
    ws.write(PATH, schedule_yaml("* * * * * *"))
    ws.write("schedules/other.schedule.yml", schedule_yaml("* * * * * *"))
    ws.compile()
    due = max(next_run(svc.engine, NAME), next_run(svc.engine, "schedules/other"))
    with svc.engine.begin() as conn:  # a row this release cannot fire
        conn.execute(update(schedules).where(schedules.c.name == NAME).values(body="{}"))
    fired = tick_schedules(svc, now=due)
    assert [f.name for f in fired] == ["schedules/other"]
    assert "fire for" in caplog.text and "retried next tick" in caplog.text
    # Nothing of the failed fire was kept: still due, no fire-log row, no run.
    bad = schedule_row(svc.engine, NAME)
    assert bad.next_run_at <= due and fires(svc.engine, bad.id) == []
    assert len(scheduled_runs(svc.engine)) == 1
