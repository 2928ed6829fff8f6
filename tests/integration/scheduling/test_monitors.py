"""Monitor checks against a real DuckDB dataset, alert state changes, and webhook
deliveries to a real HTTP receiver (retried after a 500, outcomes recorded)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from quarry.node.services import Services
from quarry.runtime.connectors.policy import ConnectorPolicy
from quarry.runtime.queue.worker import Worker
from quarry.scheduling.alerts import DELIVERY_QUEUE
from quarry.scheduling.delivery import Deliverer
from quarry.scheduling.monitors import MonitorChecker
from quarry.scheduling.ticks import MONITOR_QUEUE, tick_monitor_schedules
from quarry.store.schedule_tables import alert_deliveries, alert_events, alerts
from tests.fleet.scheduling.conftest import Receiver
from tests.integration.scheduling.helpers import next_run
from tests.integration.scheduling.workspace import Workspace, monitor_yaml
from tests.support.processes import wait_until

NAME = "monitors/level"
PATH = "monitors/level.monitor.yml"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    hook = Receiver([500])
    yield hook
    hook.close()


class Harness:
    def __init__(self, svc: Services, ws: Workspace, receiver: Receiver, cache: Path) -> None:
        self.svc, self.ws = svc, ws
        env = {"TEST_ALERT_HOOK": receiver.url}
        self.checker = MonitorChecker(svc, cache, delivery_attempts=3)
        self.deliverer = Deliverer(svc.engine, timeout=5, env=env.get)
        self.check_worker = Worker(
            svc.queue,
            self.checker.handle,
            queues=(MONITOR_QUEUE,),
            reap_interval=None,
            listen=False,
        )
        self.delivery_worker = Worker(
            svc.queue,
            self.deliverer.handle,
            queues=(DELIVERY_QUEUE,),
            reap_interval=None,
            listen=False,
        )
        self.now = next_run(svc.engine, NAME, "monitor")

    def check(self, level: Any = None) -> None:
        """Set the data (a new revision), then fire one check and execute it."""
        if level is not None:
            self.ws.write("data/level.csv", f"level\n{level}\n")
            self.ws.compile()
        self.now = max(self.now + timedelta(seconds=1), next_run(self.svc.engine, NAME, "monitor"))
        fired = tick_monitor_schedules(self.svc, now=self.now)
        assert [f.outcome for f in fired] == ["check"]
        self.check_worker.drain()

    def deliver(self) -> None:
        self.delivery_worker.drain()

    def rows(self) -> tuple[Any, list[Any], list[Any]]:
        with self.svc.engine.connect() as conn:
            alert = conn.execute(select(alerts)).one()
            events = list(conn.execute(select(alert_events).order_by(alert_events.c.id)))
            deliveries = list(
                conn.execute(select(alert_deliveries).order_by(alert_deliveries.c.id))
            )
        return alert, events, deliveries


@pytest.fixture
def harness(ws: Workspace, svc: Services, receiver: Receiver, tmp_path: Path) -> Iterator[Harness]:
    ws.write(PATH, monitor_yaml("select level from 'level.csv'", operator=">", value=10))
    ws.compile()
    h = Harness(svc, ws, receiver, tmp_path / "cache")
    yield h
    h.deliverer.close()


def test_threshold_alert_notifies_once_per_change(harness: Harness, receiver: Receiver) -> None:
    harness.check()  # level 1: resolved, silently
    alert, events, deliveries = harness.rows()
    assert alert.state == "resolved" and events == [] and deliveries == []

    harness.check(level=50)
    alert, events, deliveries = harness.rows()
    assert alert.state == "firing" and [e.state for e in events] == ["firing"]
    assert "value 50 meets the condition > 10" in events[0].message
    harness.deliver()  # the receiver answers 500: recorded, retried later
    [delivery] = harness.rows()[2]
    assert (delivery.state, delivery.attempts, delivery.last_status) == ("pending", 1, 500)

    # Still over the threshold: checks go on, nobody is notified again.
    harness.check(level=70)
    harness.check()
    assert len(harness.rows()[1]) == 1

    def delivered() -> bool:
        harness.deliver()
        return harness.rows()[2][0].state == "delivered"

    wait_until(delivered, 15, "the retried delivery (backoff 1 s)")
    [delivery] = harness.rows()[2]
    assert (delivery.attempts, delivery.last_status, delivery.last_error) == (2, 200, None)

    harness.check(level=3)
    harness.deliver()
    alert, events, deliveries = harness.rows()
    assert alert.state == "resolved" and [e.state for e in events] == ["firing", "resolved"]
    assert [d.state for d in deliveries] == ["delivered", "delivered"]
    bodies = [body for _, body in receiver.received()]
    assert [b["state"] for b in bodies] == ["firing", "firing", "resolved"]
    assert bodies[-1]["monitor"] == NAME and bodies[-1]["value"] == 3


def test_missing_webhook_variable_fails_the_delivery_without_retrying(
    harness: Harness, receiver: Receiver
) -> None:
    harness.deliverer.env = {}.get
    harness.check(level=99)
    harness.deliver()
    [delivery] = harness.rows()[2]
    assert delivery.state == "failed" and "TEST_ALERT_HOOK is not set" in delivery.last_error
    assert receiver.received() == []


@pytest.mark.parametrize(
    ("variable", "policy"),
    [
        ("QUARRY_DATABASE_URL", None),  # Quarry's own: never, in any mode
        ("TEST_ALERT_HOOK", ConnectorPolicy()),  # fleet mode, not on the allow-list
    ],
)
def test_a_monitor_names_only_variables_its_tenant_may_read(
    ws: Workspace,
    svc: Services,
    receiver: Receiver,
    tmp_path: Path,
    variable: str,
    policy: ConnectorPolicy | None,
) -> None:
    ws.write(PATH, monitor_yaml("select level from 'level.csv'", value=0, hook_env=variable))
    ws.compile()
    h = Harness(svc, ws, receiver, tmp_path / "cache")
    h.deliverer.env = {variable: receiver.url}.get
    h.deliverer.policy = policy
    try:
        h.check()  # level 1 > 0: firing
        h.deliver()
    finally:
        h.deliverer.close()
    [delivery] = h.rows()[2]
    assert delivery.state == "failed" and delivery.attempts == 1
    assert f"url_env names {variable!r}, which this tenant may not read" in delivery.last_error
    assert "QUARRY_SECRET_ENV_ALLOW" in delivery.last_error
    assert receiver.received() == []


def test_slack_format_and_change_condition(
    ws: Workspace, svc: Services, receiver: Receiver, tmp_path: Path
) -> None:
    ws.write(
        PATH,
        "query: {database: local, sql: \"select level from 'level.csv'\"}\n"
        "condition: {type: change}\ncron: '* * * * * *'\n"
        "notify: [{url_env: TEST_ALERT_HOOK, format: slack}]\n",
    )
    ws.compile()
    receiver.statuses.clear()
    h = Harness(svc, ws, receiver, tmp_path / "cache")
    h.check()  # first value: nothing to compare with
    h.check()  # unchanged
    h.check(level=2)  # changed: firing
    h.check()  # unchanged again: resolved
    h.deliver()
    _, events, _ = h.rows()
    assert [e.state for e in events] == ["firing", "resolved"]
    texts = [body["text"] for _, body in receiver.received()]
    assert "is firing: changed from 1 to 2" in texts[0] and "is resolved" in texts[1]
    h.deliverer.close()
