"""One tick of the global driver: fire what is due, exactly once across all nodes.

Every node runs the same code and there is no leader. For each due row a node
opens a transaction and tries the compare-and-swap

    UPDATE schedules SET next_run_at = :next WHERE id = :id AND next_run_at = :due

Exactly one node's UPDATE matches (the others find ``next_run_at`` moved and match
no row). In that same transaction the winner inserts the fire-log row
``(schedule_id, scheduled_for)`` — a primary key, so even a time put back by a racing
promotion cannot be fired twice — and queues the run (or the monitor check). Either
all of it commits or none of it: a node killed mid-tick leaves the row due for the
next node, never a fire without its run.

Missed windows (every node down): due times later than ``catchup`` seconds in the
past are folded into the one fire made on recovery, which records how many it
folded; within ``catchup`` each window fires on its own, so a loaded node that runs
a little late skips nothing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from quarry.core.clock import utcnow
from quarry.core.errors import NotFound
from quarry.core.hashing import canonical_json, sha256_hex, short_id
from quarry.core.identity import node_name
from quarry.definitions.kinds import Kind, classify_path
from quarry.definitions.kinds import definition_name as name_of
from quarry.runtime.queue import NewTask, TaskQueue
from quarry.runtime.runs.service import NewRun, RunRequest, new_run_id, plan_run, write_runs
from quarry.scheduling.timing import fires_between, next_fire
from quarry.store import schedules as scheduleq
from quarry.store.db import Connection, Engine
from quarry.store.runs import TERMINAL

log = logging.getLogger(__name__)

MONITOR_QUEUE = "quarry.monitors"
MONITOR_TASK_KIND = "monitor_check"
_COUNT_CAP = 10_000

Clock = Callable[[], datetime]


@dataclass(frozen=True)
class Fire:
    schedule_id: str
    name: str
    scheduled_for: datetime
    outcome: str  # run | check | skipped | manual
    run_id: str | None
    task_id: int | None
    coalesced: int


@dataclass(frozen=True)
class _Pending:
    """A fire whose compare-and-swap won in this transaction, its task not yet queued."""

    fire: Fire
    task: NewTask | None
    """A monitor check's task (a run's task is planned with its run)."""
    run: NewRun | None


def fire_key(schedule_id: str, scheduled_for: datetime) -> str:
    """Identifies one fire: the run's ``request_id`` and the task's dedupe key."""
    stamp = scheduled_for.isoformat(timespec="microseconds")
    return short_id(sha256_hex(canonical_json(["fire", schedule_id, stamp])))


def advance(
    cron: str, timezone: str, due: datetime, now: datetime, catchup: float
) -> tuple[datetime, int]:
    """(next due time after firing ``due``, how many later windows were folded in)."""
    candidate = next_fire(cron, timezone, due)
    if candidate > now - timedelta(seconds=catchup):
        return candidate, 0
    folded = fires_between(cron, timezone, due, now, limit=_COUNT_CAP)
    return next_fire(cron, timezone, now), len(folded)


def _log_fire(
    conn: Connection,
    row: Any,
    due: datetime,
    now: datetime,
    node: str,
    folded: int,
    outcome: str,
    run_id: str | None = None,
) -> bool:
    return scheduleq.record_fire(
        conn,
        schedule_id=row.id,
        tenant_id=row.tenant_id,
        scheduled_for=due,
        fired_at=now,
        node=node,
        outcome=outcome,
        coalesced=folded,
        run_id=run_id,
    )


def _still_running(conn: Connection, run_id: str | None) -> bool:
    if run_id is None:
        return False
    state = scheduleq.run_state(conn, run_id)
    return state is not None and state not in TERMINAL


def _fire_run(row: Any, due: datetime, run_id: str) -> NewRun:
    """The run a fire makes and its task (not yet written)."""
    body = json.loads(row.body)
    target = body["target"]
    kind = Kind.WORKFLOW if target.get("workflow") else Kind.APP
    path = target.get("workflow") or target.get("app")
    key = fire_key(row.id, due)
    request = RunRequest(
        kind,
        definition_name(path),
        dict(body.get("variables") or {}),
        origin="schedule",
        request_id=key,
    )
    return plan_run(
        row.tenant_id,
        row.workspace_id,
        row.revision_id,
        request,
        run_id=run_id,
        dedupe_key=f"schedule:{key}",
    )


def _fire_check(row: Any, due: datetime) -> NewTask:
    """The monitor check task a fire queues (not yet written)."""
    return NewTask(
        row.tenant_id,
        MONITOR_TASK_KIND,
        {"schedule_id": row.id, "scheduled_for": due.isoformat(), "revision_id": row.revision_id},
        queue=MONITOR_QUEUE,
        max_attempts=1,
        dedupe_key=f"monitor:{fire_key(row.id, due)}",
    )


def _write_fires(conn: Connection, queue: TaskQueue, fires: list[_Pending]) -> list[Fire]:
    """Write the runs of ``fires`` (runs.service.write_runs: one bulk enqueue, one
    insert of rows carrying their task ids, one of events) and queue the monitor
    checks (one bulk enqueue), in the caller's transaction: the compare-and-swaps
    that won these fires commit with them or not at all. A tick fires one kind."""
    written = write_runs(conn, queue, [p.run for p in fires if p.run is not None])
    task_ids = {r.id: r.task_id for r in written}
    checks = [p.task for p in fires if p.run is None and p.task is not None]
    checked = iter(queue.enqueue_many(checks, conn=conn) if checks else [])
    done: list[Fire] = []
    for pending in fires:
        if pending.run is not None:
            task_id = task_ids[pending.run.row.id]
        else:
            task_id = next(checked).id
            scheduleq.set_fire_task(
                conn, pending.fire.schedule_id, pending.fire.scheduled_for, task_id
            )
        done.append(replace(pending.fire, task_id=task_id))
    return done


def _enqueue_run(conn: Connection, queue: TaskQueue, row: Any, due: datetime, run_id: str) -> int:
    """The run row and its task, in the caller's transaction (one fire on its own)."""
    fire = Fire(row.id, row.name, due, "run", run_id, None, 0)
    pending = _Pending(fire, None, _fire_run(row, due, run_id))
    return _write_fires(conn, queue, [pending])[0].task_id or 0


def definition_name(path: str) -> str:
    """``workflows/x.workflow.yml`` -> ``workflows/x`` (the run target's name)."""
    kind = classify_path(path)
    if kind is None:
        raise ValueError(f"{path!r} is not a definition file")
    return name_of(path, kind)


def _enqueue_check(conn: Connection, queue: TaskQueue, row: Any, due: datetime) -> int:
    return queue.enqueue_many([_fire_check(row, due)], conn=conn)[0].id


class ScheduleServices(Protocol):
    """What firing schedules needs of the process (a
    :class:`~quarry.runtime.services.Services` is one): the state database the
    schedules live in and the queue their runs and checks go to."""

    @property
    def engine(self) -> Engine: ...
    @property
    def queue(self) -> TaskQueue: ...


def _tick(
    svc: ScheduleServices,
    kind: str,
    *,
    now: datetime,
    node: str,
    catchup: float,
    batch: int,
) -> list[Fire]:
    """Fire due rows in transactions of up to ``batch`` rows, one commit for all of
    them. The fast path has no savepoints; if any fire in a batch fails, the batch is
    rolled back and done again with a savepoint per fire, so one bad row (or a
    refused enqueue) cannot hold the others back."""
    fires: list[Fire] = []
    while True:
        args = (svc, kind, now, node, catchup, batch)
        try:
            done, seen = _batch(*args, isolate=False)
        except Exception:
            done, seen = _batch(*args, isolate=True)
        fires += done
        if seen < batch or not done:
            return fires


def _batch(
    svc: ScheduleServices,
    kind: str,
    now: datetime,
    node: str,
    catchup: float,
    batch: int,
    *,
    isolate: bool,
) -> tuple[list[Fire], int]:
    fires: list[Fire] = []
    queue = svc.queue
    with svc.engine.begin() as conn:
        due_rows = scheduleq.due_schedules(conn, kind, now, batch)
        pending: list[_Pending] = []
        for due_row in due_rows:
            if not isolate:
                # Fast path: every fire's CAS now, all their tasks in one bulk enqueue
                # at the end, in this same transaction.
                fire = _fire_in(
                    conn, queue, kind, due_row, now=now, node=node, catchup=catchup, defer=pending
                )
            else:
                try:
                    with conn.begin_nested():
                        fire = _fire_in(
                            conn, queue, kind, due_row, now=now, node=node, catchup=catchup
                        )
                except Exception:
                    log.exception(
                        "schedule %s: fire for %s failed; retried next tick",
                        due_row.id,
                        due_row.next_run_at,
                    )
                    continue
            if fire is not None:
                fires.append(fire)
        if pending:
            written = {
                (f.schedule_id, f.scheduled_for): f for f in _write_fires(conn, queue, pending)
            }
            fires = [written.get((f.schedule_id, f.scheduled_for), f) for f in fires]
    return fires, len(due_rows)


def _fire_in(
    conn: Connection,
    queue: TaskQueue,
    kind: str,
    due_row: Any,
    *,
    now: datetime,
    node: str,
    catchup: float,
    defer: list[_Pending] | None = None,
) -> Fire | None:
    """One fire: the CAS, the fire log and its task. With ``defer`` the task is left
    in ``defer`` for the caller's bulk enqueue (same transaction) and the returned
    fire has no task id yet."""
    sid, due = due_row.id, due_row.next_run_at
    if kind == "monitor":
        outcome = "check"
    elif due_row.overlap == "skip" and _still_running(conn, due_row.last_run_id):
        outcome = "skipped"
    else:
        outcome = "run"
    run_id = new_run_id() if outcome == "run" else None
    nxt, folded = advance(due_row.cron, due_row.timezone, due, now, catchup)
    row = scheduleq.claim_due(conn, sid, due, nxt, now, last_run_id=run_id)
    if row is None:
        return None  # another node won (or the row changed): nothing to do
    if row.cron != due_row.cron or row.timezone != due_row.timezone:
        # Retimed by a promotion since we read it: the fire stands (its time was still
        # the row's due time), the next one follows the new timing.
        nxt, folded = advance(row.cron, row.timezone, due, now, catchup)
        scheduleq.set_next_run_at(conn, sid, nxt)
    if not _log_fire(conn, row, due, now, node, folded, outcome, run_id):
        log.warning("schedule %s already fired for %s; not firing again", row.name, due)
        return None
    fire = Fire(sid, row.name, due, outcome, run_id, None, folded)
    if outcome == "skipped":
        return fire
    if run_id is not None:
        pending = _Pending(fire, None, _fire_run(row, due, run_id))
    else:
        pending = _Pending(fire, _fire_check(row, due), None)
    if defer is not None:
        defer.append(pending)
        return fire
    return _write_fires(conn, queue, [pending])[0]


def tick_schedules(
    svc: ScheduleServices,
    *,
    now: datetime | None = None,
    node: str | None = None,
    catchup: float = 5.0,
    batch: int = 5,
    kind: str = "schedule",
) -> list[Fire]:
    """Fire every due schedule (``kind="monitor"``: queue a check for every due
    monitor) this node wins; returns what it fired."""
    return _tick(
        svc,
        kind,
        now=now or utcnow(),
        node=node or node_name(),
        catchup=catchup,
        batch=batch,
    )


def tick_monitor_schedules(
    svc: ScheduleServices,
    *,
    now: datetime | None = None,
    node: str | None = None,
    catchup: float = 5.0,
    batch: int = 5,
) -> list[Fire]:
    """Queue a check for every due monitor this node wins."""
    return tick_schedules(svc, now=now, node=node, catchup=catchup, batch=batch, kind="monitor")


def fire_now(svc: ScheduleServices, schedule_id: str, *, node: str | None = None) -> Fire:
    """Trigger now (operator action): fire outside the cron, leaving ``next_run_at`` alone.

    Recorded in the fire log at the current instant with outcome ``manual``."""
    now = utcnow()
    queue = svc.queue
    with svc.engine.begin() as conn:
        row = scheduleq.get_schedule(conn, schedule_id)
        if row is None:
            raise NotFound(f"no schedule or monitor with id {schedule_id!r}", id=schedule_id)
        run_id = None if row.kind == "monitor" else new_run_id()
        if not _log_fire(conn, row, now, now, node or node_name(), 0, "manual", run_id):
            raise RuntimeError("a manual fire at this exact instant exists")  # pragma: no cover
        if run_id is None:
            task_id = _enqueue_check(conn, queue, row, now)
        else:
            task_id = _enqueue_run(conn, queue, row, now, run_id)
            scheduleq.set_last_run(conn, schedule_id, run_id)
        scheduleq.set_fire_task(conn, schedule_id, now, task_id)
        return Fire(schedule_id, row.name, now, "manual", run_id, task_id, 0)


def earliest_due(engine: Engine) -> datetime | None:
    """When the next schedule or monitor is due (the driver sleeps until then)."""
    with engine.connect() as conn:
        return scheduleq.earliest_due(conn)
