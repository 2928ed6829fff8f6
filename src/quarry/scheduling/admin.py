"""Operator views and actions on schedules and alerts (the API and the CLI share them).

Pause and resume are database state, not definition edits: the definitions in git
say *what* runs *when*; an operator pausing a noisy schedule at 3 a.m. must not need
a commit, and a later promotion keeps the pause. Resuming recomputes the next due
time from now, so the windows that passed while paused are not fired.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from quarry.core.clock import utcnow
from quarry.core.errors import BadRequest, NotFound
from quarry.scheduling.sync import TRIGGER_KINDS
from quarry.scheduling.ticks import Fire, ScheduleServices, fire_now
from quarry.scheduling.timing import next_fire
from quarry.store import alerts as alertq
from quarry.store import schedules as scheduleq
from quarry.store.db import Connection, Engine


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


@dataclass(frozen=True)
class ScheduleView:
    id: str
    kind: str
    name: str
    cron: str
    timezone: str
    enabled: bool
    paused: bool
    overlap: str
    revision_id: str
    next_run_at: str | None
    last_scheduled_for: str | None
    last_fired_at: str | None
    last_run_id: str | None
    target: dict[str, Any] | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _view(row: Any) -> ScheduleView:
    body = json.loads(row.body)
    return ScheduleView(
        id=row.id,
        kind=row.kind,
        name=row.name,
        cron=row.cron,
        timezone=row.timezone,
        enabled=bool(row.enabled),
        paused=bool(row.paused),
        overlap=row.overlap,
        revision_id=row.revision_id,
        next_run_at=_iso(row.next_run_at),
        last_scheduled_for=_iso(row.last_scheduled_for),
        last_fired_at=_iso(row.last_fired_at),
        last_run_id=row.last_run_id,
        target=body.get("target"),
    )


def list_schedules(
    conn: Connection, tenant_id: str, workspace_id: str, kind: str | None = None
) -> list[ScheduleView]:
    return [_view(r) for r in scheduleq.list_schedules(conn, tenant_id, workspace_id, kind)]


def _find(conn: Connection, tenant_id: str, workspace_id: str, kind: str, name: str) -> Any:
    if kind not in TRIGGER_KINDS:
        raise BadRequest(f"kind must be one of {list(TRIGGER_KINDS)}", parameter="kind")
    row = scheduleq.find_schedule(conn, tenant_id, workspace_id, kind, name)
    if row is None:
        raise NotFound(f"no {kind} named {name!r} in this workspace", name=name)
    return row


def get_schedule(
    conn: Connection, tenant_id: str, workspace_id: str, name: str, kind: str = "schedule"
) -> ScheduleView:
    return _view(_find(conn, tenant_id, workspace_id, kind, name))


def set_paused(
    engine: Engine,
    tenant_id: str,
    workspace_id: str,
    name: str,
    paused: bool,
    *,
    kind: str = "schedule",
    now: datetime | None = None,
) -> ScheduleView:
    now = now or utcnow()
    with engine.begin() as conn:
        row = _find(conn, tenant_id, workspace_id, kind, name)
        resumed = not paused and row.paused and row.enabled
        nxt = next_fire(row.cron, row.timezone, now) if resumed else None
        return _view(scheduleq.set_paused(conn, row.id, paused, next_run_at=nxt))


def trigger(
    svc: ScheduleServices,
    tenant_id: str,
    workspace_id: str,
    name: str,
    *,
    kind: str = "schedule",
) -> Fire:
    with svc.engine.connect() as conn:
        row = _find(conn, tenant_id, workspace_id, kind, name)
    return fire_now(svc, row.id)


def list_fires(
    conn: Connection,
    tenant_id: str,
    workspace_id: str,
    name: str,
    *,
    kind: str = "schedule",
    limit: int = 50,
) -> list[dict[str, Any]]:
    row = _find(conn, tenant_id, workspace_id, kind, name)
    rows = scheduleq.recent_fires(conn, row.id, limit)
    return [
        {
            "scheduled_for": _iso(r.scheduled_for),
            "fired_at": _iso(r.fired_at),
            "node": r.node,
            "outcome": r.outcome,
            "run_id": r.run_id,
            "task_id": r.task_id,
            "coalesced": r.coalesced,
        }
        for r in rows
    ]


def list_alerts(conn: Connection, tenant_id: str, workspace_id: str) -> list[dict[str, Any]]:
    rows = alertq.list_alerts(conn, tenant_id, workspace_id)
    return [
        {
            "monitor": r.monitor,
            "state": r.state,
            "value": None if r.value is None else json.loads(r.value),
            "checked_at": _iso(r.checked_at),
            "changed_at": _iso(r.changed_at),
        }
        for r in rows
    ]


def alert_history(
    conn: Connection, tenant_id: str, workspace_id: str, monitor: str, *, limit: int = 50
) -> list[dict[str, Any]]:
    """State changes of one monitor's alert, newest first, each with its deliveries."""
    alert = alertq.find_alert(conn, tenant_id, workspace_id, monitor)
    if alert is None:
        raise NotFound(f"no alert for monitor {monitor!r} (never checked?)", monitor=monitor)
    events = alertq.recent_events(conn, alert.id, limit)
    deliveries: dict[int, list[dict[str, Any]]] = {}
    for d in alertq.deliveries_of_events(conn, [int(e.id) for e in events]):
        deliveries.setdefault(int(d.event_id), []).append(
            {
                "target": d.target,
                "format": d.format,
                "state": d.state,
                "attempts": d.attempts,
                "last_status": d.last_status,
                "last_error": d.last_error,
                "finished_at": _iso(d.finished_at),
            }
        )
    return [
        {
            "id": int(e.id),
            "state": e.state,
            "value": None if e.value is None else json.loads(e.value),
            "message": e.message,
            "at": _iso(e.created_at),
            "deliveries": deliveries.get(int(e.id), []),
        }
        for e in events
    ]
