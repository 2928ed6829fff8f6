"""The driver loop on its thread: fires on time, runs the reaper and the purge."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from quarry.core.clock import utcnow
from quarry.node.services import Services
from quarry.scheduling.driver import Driver
from quarry.store.queue_tables import tasks
from tests.integration.scheduling.helpers import scheduled_runs
from tests.integration.scheduling.workspace import Workspace, schedule_yaml
from tests.support.processes import wait_until


def test_driver_thread_fires_due_schedules_and_stops(ws: Workspace, svc: Services) -> None:
    ws.write("schedules/every.schedule.yml", schedule_yaml("* * * * * *"))
    ws.compile()
    driver = Driver(svc, interval=5.0, keep_fires=10)
    driver.interval = 0.5  # settable while running; wakes the loop
    with pytest.raises(ValueError, match="positive"):
        driver.interval = 0
    driver.start()
    try:
        wait_until(lambda: len(scheduled_runs(svc.engine)) >= 2, 20, "two fires")
    finally:
        driver.stop()
    assert driver.stats.errors == 0 and driver.stats.fired >= 2
    # It slept until the due time rather than a whole interval: fires are prompt.
    late = [
        (f.scheduled_for, r.created_at)
        for f in driver.stats.fires
        for r in scheduled_runs(svc.engine)
        if r.id == f.run_id
    ]
    assert late and all(created - due < timedelta(seconds=0.5) for due, created in late)


def test_tick_reaps_expired_leases_and_purges_finished_tasks(svc: Services) -> None:
    held = svc.queue.enqueue("t1", "noop", {})
    task = svc.queue.claim("someone", lease_seconds=0.2)
    assert task is not None and task.id == held.id
    done = svc.queue.enqueue("t1", "noop", {})
    with svc.engine.begin() as conn:
        conn.execute(
            update(tasks)
            .where(tasks.c.id == done.id)
            .values(state="succeeded", finished_at=utcnow() - timedelta(days=30))
        )
    wait_until(
        lambda: task.lease_expires_at is not None and utcnow() > task.lease_expires_at,
        10,
        "the lease to expire",
    )
    driver = Driver(svc, purge_interval=0.0, purge_after=86400.0)
    driver.tick()
    assert driver.stats.reaped == 1 and driver.stats.purged == 1
    with svc.engine.connect() as conn:
        states = dict(conn.execute(select(tasks.c.id, tasks.c.state)).all())
    assert states == {held.id: "queued"}
