"""Acceptance, with real processes on one Postgres: three ``quarry driver`` nodes,
20 schedules firing every second and a monitor checked every second.

* every due time produces exactly one run — no duplicate, no gap — through a
  SIGKILL of one node and promotions of unchanged schedules at their due instant;
* every node down across five due times: on restart each schedule fires once;
* the monitor crossing its threshold notifies a real HTTP receiver once (which
  answers 500 twice: the delivery is retried, and the schedules keep firing on
  time meanwhile), stays firing without new notifications, resolves once.

The exactly-once window is a minute, as the issue asks (``QUARRY_TEST_FIRE_SECONDS``
changes it for a quicker local run).
"""

from __future__ import annotations

import os
from collections import Counter
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Any

import pytest
from sqlalchemy import select

from quarry.core.clock import utcnow
from quarry.node.services import Services
from quarry.scheduling.ticks import fire_key
from quarry.store.run_tables import runs
from quarry.store.schedule_tables import alert_deliveries, alert_events, schedule_fires, schedules
from tests.fleet.scheduling.conftest import DriverFleet, Receiver
from tests.integration.scheduling.workspace import Workspace, monitor_yaml, schedule_yaml
from tests.support.processes import wait_until

pytestmark = pytest.mark.slow

COUNT = 20
WINDOW = float(os.environ.get("QUARRY_TEST_FIRE_SECONDS", "60"))
MONITOR = "monitors/level"


def _rows(svc: Services, kind: str = "schedule") -> dict[str, Any]:
    with svc.engine.connect() as conn:
        return {r.id: r for r in conn.execute(select(schedules).where(schedules.c.kind == kind))}


def _fired_through(svc: Services, moment: datetime) -> bool:
    rows = _rows(svc).values()
    return len(rows) == COUNT and all(
        r.last_scheduled_for is not None and r.last_scheduled_for >= moment for r in rows
    )


def _wait_wall(moment: datetime, timeout: float = 120) -> None:
    wait_until(lambda: utcnow() >= moment, timeout, f"the clock to pass {moment.isoformat()}")


def _promote_at_due_instant(workspace: Workspace, level: int) -> None:
    """A new revision (the monitored data changed) that leaves every schedule as it
    was, promoted as a second turns (within the 50 ms poll): while they are due."""
    _wait_wall(utcnow().replace(microsecond=0) + timedelta(seconds=1))
    workspace.write("data/level.csv", f"level\n{level}\n")
    assert workspace.compile().promoted


def _deliveries(svc: Services) -> list[Any]:
    with svc.engine.connect() as conn:
        return list(conn.execute(select(alert_deliveries).order_by(alert_deliveries.c.id)))


def test_fleet_fires_exactly_once_and_alerts_once_per_change(
    drivers: DriverFleet, factory: Services, workspace: Workspace, receiver: Receiver
) -> None:
    nodes = [drivers.start(f"node{i}") for i in range(3)]
    for node in nodes:
        node.wait_ready()
    for i in range(COUNT):
        workspace.write(f"schedules/s{i:02d}.schedule.yml", schedule_yaml("* * * * * *"))
    workspace.write(f"{MONITOR}.monitor.yml", monitor_yaml("select level from 'level.csv'"))
    workspace.compile()
    first = max(r.next_run_at for r in _rows(factory).values())
    end = first + timedelta(seconds=WINDOW)

    # A few checks below the threshold: resolved, silently.
    wait_until(lambda: len(_checks(factory)) >= 2, 20, "the first monitor checks")
    # A third of the way in: SIGKILL one node, whatever it is doing.
    _wait_wall(first + timedelta(seconds=WINDOW / 3))
    nodes[0].kill()
    # Over the threshold: firing, notified once (500, 500, then 200: retried).
    _promote_at_due_instant(workspace, 50)
    retry_from = utcnow()
    wait_until(
        lambda: any(d.state == "delivered" for d in _deliveries(factory)),
        30,
        "the firing notification to be delivered",
    )
    retry_to = utcnow()
    # Still over: stays firing, no new notification.
    _promote_at_due_instant(workspace, 60)
    checks_at_60 = len(_checks(factory))
    wait_until(lambda: len(_checks(factory)) >= checks_at_60 + 3, 20, "checks while firing")
    assert len(receiver.received()) == 3
    # Back under: resolved, notified once.
    _promote_at_due_instant(workspace, 1)
    wait_until(
        lambda: len(_deliveries(factory)) == 2 and _deliveries(factory)[1].state == "delivered",
        30,
        "the resolved notification",
    )
    _wait_wall(end)
    wait_until(lambda: _fired_through(factory, end), 30, "every schedule to fire through the end")

    # Every node down across five due times, then one node back.
    for node in nodes[1:]:
        node.kill()
    down = utcnow()
    _wait_wall(down + timedelta(seconds=5.5))
    back = drivers.start("node3")
    back.wait_ready()
    recovered = utcnow() + timedelta(seconds=2)
    wait_until(lambda: _fired_through(factory, recovered), 30, "fires after the restart")
    back.stop()

    with factory.engine.connect() as conn:
        fires = list(conn.execute(select(schedule_fires).order_by(schedule_fires.c.scheduled_for)))
        scheduled = list(conn.execute(select(runs.c.request_id).where(runs.c.origin == "schedule")))
        events = list(conn.execute(select(alert_events).order_by(alert_events.c.id)))
    schedule_ids = set(_rows(factory))
    # No duplicate: one run per fire key, ever.
    per_key = Counter(r.request_id for r in scheduled)
    assert per_key and max(per_key.values()) == 1, per_key.most_common(3)
    by_schedule: dict[str, list[Any]] = {}
    for fire in fires:
        if fire.schedule_id in schedule_ids:
            by_schedule.setdefault(fire.schedule_id, []).append(fire)
    assert len(by_schedule) == COUNT
    for sid, log in by_schedule.items():
        # No gap: each fire is followed by the next second, unless it folded missed
        # windows in (the outage), and then by the first one after them.
        for prev, nxt in pairwise(log):
            step = nxt.scheduled_for - prev.scheduled_for
            assert step == timedelta(seconds=1 + prev.coalesced), (sid, prev, nxt)
        assert all(per_key[fire_key(sid, f.scheduled_for)] == 1 for f in log), sid
        assert log[0].scheduled_for <= first and log[-1].scheduled_for >= recovered
        # The outage fired once: one recovery fire folded the missed windows in.
        folded = [f for f in log if f.coalesced]
        assert len(folded) == 1 and folded[0].coalesced >= 4, (sid, folded)
        # ... made by the restarted node, after the outage.
        assert folded[0].node.endswith(f":{back.process.pid}") and folded[0].fired_at > down
        # The failing webhook did not hold any schedule back.
        during = [f for f in log if retry_from <= f.scheduled_for <= retry_to]
        assert during and max(f.fired_at - f.scheduled_for for f in during) < timedelta(
            seconds=1
        ), sid
    # Leaderless: every node of the first three fired some of them.
    early = {f.node for f in fires if f.scheduled_for < first + timedelta(seconds=WINDOW / 3)}
    assert len(early) == 3, early

    # The monitor: two changes of state, each notified once (the first after retries).
    assert [e.state for e in events] == ["firing", "resolved"]
    statuses = [status for status, _ in receiver.received()]
    assert statuses == [500, 500, 200, 200]
    bodies = [body for _, body in receiver.received()]
    assert [b["state"] for b in bodies] == ["firing"] * 3 + ["resolved"]
    assert bodies[0]["value"] == 50 and bodies[3]["value"] == 1
    firing, resolved = _deliveries(factory)
    assert (firing.state, firing.attempts, firing.last_status) == ("delivered", 3, 200)
    assert (resolved.state, resolved.attempts) == ("delivered", 1)


def _checks(svc: Services) -> list[Any]:
    monitor_ids = set(_rows(svc, "monitor"))
    with svc.engine.connect() as conn:
        return [
            f
            for f in conn.execute(select(schedule_fires))
            if f.schedule_id in monitor_ids and f.outcome == "check"
        ]
