"""Alert state: ``firing`` or ``resolved``, notified once per change of state.

A monitor check produces a value and a verdict. The alert row remembers the state
and the last value; only a check whose verdict differs from the stored state writes
an ``alert_events`` row (the history) and queues one delivery per notification, in
the same transaction — so a state change is notified exactly once, and a check that
finds the same state as before notifies nobody, however often it runs.

The first check of a new monitor that is not firing records ``resolved`` silently:
there is nothing to resolve yet.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from quarry.runtime.queue import TaskQueue
from quarry.store import alerts as alertq
from quarry.store.db import Connection

FIRING = "firing"
RESOLVED = "resolved"
DELIVERY_QUEUE = "quarry.alerts"
DELIVERY_TASK_KIND = "alert_delivery"

_OPS = {
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}


def as_number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def evaluate(condition: dict[str, Any], value: Any, previous: str | None) -> tuple[bool, str]:
    """(firing?, a sentence saying why) for a condition body and a checked value."""
    if condition["type"] == "change":
        shown = json.dumps(value, default=str)
        if previous is None:
            return False, f"first value {shown}"
        changed = shown != previous
        return changed, (f"changed from {previous} to {shown}" if changed else f"still {shown}")
    number = as_number(value)
    op, limit = condition["operator"], float(condition["value"])
    if number is None:
        return True, f"value {value!r} is not a number (condition {op} {limit:g})"
    firing = bool(_OPS[op](number, limit))
    verb = "meets" if firing else "does not meet"
    return firing, f"value {number:g} {verb} the condition {op} {limit:g}"


@dataclass(frozen=True)
class Transition:
    alert_id: str
    state: str
    event_id: int | None  # None: no change of state, nothing notified
    deliveries: int


def record_check(
    conn: Connection,
    queue: TaskQueue,
    monitor: Any,
    value: Any,
    *,
    now: datetime,
    delivery_attempts: int,
) -> Transition:
    """Inside the check's transaction: store the value, and on a change of state
    append the event and queue its deliveries."""
    body = json.loads(monitor.body)
    current = alertq.lock_alert(conn, monitor.id)
    previous_value = current.value if current is not None else None
    firing, message = evaluate(body["condition"], value, previous_value)
    state = FIRING if firing else RESOLVED
    stored_value = json.dumps(value, default=str)
    if current is None:
        alertq.insert_alert(
            conn,
            id=monitor.id,
            tenant_id=monitor.tenant_id,
            workspace_id=monitor.workspace_id,
            monitor=monitor.name,
            state=RESOLVED,
            value=stored_value,
            checked_at=now,
            changed_at=None,
        )
        old_state = RESOLVED
    else:
        old_state = current.state
        alertq.record_value(conn, monitor.id, stored_value, now)
    if state == old_state:
        return Transition(monitor.id, state, None, 0)
    alertq.set_state(conn, monitor.id, state, now)
    event_id = alertq.insert_event(
        conn,
        alert_id=monitor.id,
        tenant_id=monitor.tenant_id,
        state=state,
        value=stored_value,
        message=message,
        created_at=now,
    )
    count = 0
    for notification in body.get("notify") or []:
        delivery_id = alertq.insert_delivery(
            conn,
            event_id=event_id,
            alert_id=monitor.id,
            tenant_id=monitor.tenant_id,
            target=notification["url_env"],
            format=notification.get("format", "json"),
            created_at=now,
        )
        task = queue.enqueue(
            monitor.tenant_id,
            DELIVERY_TASK_KIND,
            {"delivery_id": int(delivery_id)},
            queue=DELIVERY_QUEUE,
            max_attempts=delivery_attempts,
            dedupe_key=f"delivery:{delivery_id}",
            conn=conn,
        )
        alertq.set_delivery_task(conn, delivery_id, task.id)
        count += 1
    return Transition(monitor.id, state, event_id, count)
