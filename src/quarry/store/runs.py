"""Queries on runs, their steps, events and artifacts."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Connection, and_, func, insert, or_, select, update

from quarry.core.clock import utcnow
from quarry.core.errors import NotFound
from quarry.store.db import insert_ignoring_duplicates
from quarry.store.run_notify import RUN_EVENTS_CHANNEL, note_local_event
from quarry.store.run_tables import artifacts, run_events, run_steps, runs

TERMINAL = frozenset({"succeeded", "failed", "cancelled"})


@dataclass(frozen=True)
class RunRow:
    id: str
    tenant_id: str
    workspace_id: str
    revision_id: str
    target_kind: str
    target_name: str
    variables: dict[str, Any]
    state: str
    origin: str
    task_id: int | None
    error: str | None
    request_id: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL


@dataclass(frozen=True)
class StepRow:
    step_key: str
    name: str
    state: str
    attempt: int
    result_key: str | None
    result_format: str | None
    rows: int | None
    error: str | None
    started_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True)
class ArtifactRow:
    id: str
    run_id: str
    step_key: str | None
    kind: str
    name: str
    format: str
    object_key: str
    size: int
    created_at: datetime


def _run(r: Any) -> RunRow:
    m = dict(r._mapping)
    m["variables"] = json.loads(m["variables"])
    return RunRow(**m)


def insert_runs(conn: Connection, rows: Sequence[RunRow]) -> None:
    """Run rows in one multi-row INSERT (only quarry.runtime.runs.service writes runs)."""
    if rows:
        values = [
            {**r.__dict__, "variables": json.dumps(r.variables, sort_keys=True)} for r in rows
        ]
        conn.execute(insert(runs).values(values))


def get_run(conn: Connection, tenant_id: str, run_id: str) -> RunRow:
    r = conn.execute(select(runs).where(runs.c.id == run_id, runs.c.tenant_id == tenant_id)).first()
    if r is None:
        raise NotFound(f"run {run_id!r} not found", run=run_id)
    return _run(r)


def run_kinds(conn: Connection, run_ids: list[str]) -> dict[str, str]:
    """The ``target_kind`` of each of ``run_ids`` that exists, in one query: what a
    worker checks after claiming a group (one query for the group, not one per task)
    to tell agent turns from workflow runs."""
    if not run_ids:
        return {}
    query = select(runs.c.id, runs.c.target_kind).where(runs.c.id.in_(set(run_ids)))
    return {str(row.id): str(row.target_kind) for row in conn.execute(query)}


def get_run_by_id(conn: Connection, run_id: str) -> RunRow:
    """For workers, which act for the tenant their task names; never for requests."""
    r = conn.execute(select(runs).where(runs.c.id == run_id)).first()
    if r is None:
        raise NotFound(f"run {run_id!r} not found", run=run_id)
    return _run(r)


def list_runs(
    conn: Connection,
    tenant_id: str,
    workspace_id: str,
    *,
    limit: int,
    before: tuple[datetime, str] | None = None,
) -> list[RunRow]:
    """Newest first; ``before`` is the (created_at, id) cursor of the previous page."""
    query = select(runs).where(runs.c.tenant_id == tenant_id, runs.c.workspace_id == workspace_id)
    if before is not None:
        at, rid = before
        query = query.where(
            or_(runs.c.created_at < at, and_(runs.c.created_at == at, runs.c.id < rid))
        )
    rows = conn.execute(query.order_by(runs.c.created_at.desc(), runs.c.id.desc()).limit(limit))
    return [_run(r) for r in rows]


def mark_started(conn: Connection, run_id: str) -> Literal["started", "resumed"] | None:
    """An attempt begins: ``started`` when it is the run's first (the run was
    queued), ``resumed`` for a later one (it was running when its worker died or gave
    it back), None when the run has already finished (nothing is changed). Decided by
    the row in the caller's transaction, so two attempts never both see ``started``."""
    values = {"state": "running", "started_at": utcnow(), "error": None}
    first = conn.execute(
        update(runs).where(runs.c.id == run_id, runs.c.state == "queued").values(**values)
    )
    if first.rowcount:
        return "started"
    again = conn.execute(
        update(runs).where(runs.c.id == run_id, runs.c.state == "running").values(**values)
    )
    return "resumed" if again.rowcount else None


def mark_finished(conn: Connection, run_id: str, state: str, error: str | None = None) -> bool:
    """The run ends in ``state``; False (and nothing changed) when it had already
    ended, so a run's outcome is recorded once however many writers race to it."""
    done = conn.execute(
        update(runs)
        .where(runs.c.id == run_id, runs.c.state.not_in(TERMINAL))
        .values(state=state, error=error, finished_at=utcnow())
    )
    return bool(done.rowcount)


def lock_unfinished(conn: Connection, run_id: str) -> bool:
    """Lock the run's row for the caller's transaction if it has not finished: an
    event written under the lock cannot land after the run's outcome (whose writer
    updates the row first, so it waits for this transaction)."""
    locked = conn.execute(
        update(runs)
        .where(runs.c.id == run_id, runs.c.state.not_in(TERMINAL))
        .values(state=runs.c.state)
    )
    return bool(locked.rowcount)


def get_steps(conn: Connection, run_id: str) -> list[StepRow]:
    rows = conn.execute(
        select(run_steps).where(run_steps.c.run_id == run_id).order_by(run_steps.c.started_at)
    )
    return [StepRow(**{k: v for k, v in r._mapping.items() if k != "run_id"}) for r in rows]


def get_step(conn: Connection, run_id: str, step_key: str) -> StepRow | None:
    r = conn.execute(
        select(run_steps).where(run_steps.c.run_id == run_id, run_steps.c.step_key == step_key)
    ).first()
    if r is None:
        return None
    return StepRow(**{k: v for k, v in r._mapping.items() if k != "run_id"})


def upsert_step(conn: Connection, run_id: str, step: StepRow) -> None:
    values = {**step.__dict__}
    inserted = insert_ignoring_duplicates(conn, run_steps, [{"run_id": run_id, **values}])
    if not inserted:
        del values["step_key"]
        conn.execute(
            update(run_steps)
            .where(run_steps.c.run_id == run_id, run_steps.c.step_key == step.step_key)
            .values(**values)
        )


def append_event(conn: Connection, run_id: str, event: dict[str, Any]) -> None:
    """Insert the event and wake its followers (store/run_notify.py): on Postgres the
    insert and its ``pg_notify`` are one statement, delivered when the caller commits."""
    row = insert(run_events).values(
        run_id=run_id, event=json.dumps(event, default=str), created_at=utcnow()
    )
    if conn.dialect.name != "postgresql":
        conn.execute(row)
        note_local_event(conn, run_id)
        return
    inserted = row.returning(run_events.c.run_id).cte("inserted")
    conn.execute(select(func.pg_notify(RUN_EVENTS_CHANNEL, inserted.c.run_id)))


def append_events(conn: Connection, events: list[tuple[str, dict[str, Any]]]) -> None:
    """Many (run id, event) rows in one statement, with a ``pg_notify`` per row on
    Postgres (like ``append_event``)."""
    if not events:
        return
    now = utcnow()
    values = [
        {"run_id": run_id, "event": json.dumps(event, default=str), "created_at": now}
        for run_id, event in events
    ]
    rows = insert(run_events).values(values)
    if conn.dialect.name != "postgresql":
        conn.execute(rows)
        for run_id, _ in events:
            note_local_event(conn, run_id)
        return
    inserted = rows.returning(run_events.c.run_id).cte("inserted")
    conn.execute(select(func.pg_notify(RUN_EVENTS_CHANNEL, inserted.c.run_id)))


def events_after(
    conn: Connection, run_id: str, after_id: int, limit: int = 500
) -> list[tuple[int, dict[str, Any]]]:
    rows = conn.execute(
        select(run_events.c.id, run_events.c.event)
        .where(run_events.c.run_id == run_id, run_events.c.id > after_id)
        .order_by(run_events.c.id)
        .limit(limit)
    )
    return [(int(r.id), json.loads(r.event)) for r in rows]


def insert_artifact(conn: Connection, tenant_id: str, artifact: ArtifactRow) -> None:
    conn.execute(insert(artifacts).values(tenant_id=tenant_id, **artifact.__dict__))


def list_artifacts(conn: Connection, run_id: str) -> list[ArtifactRow]:
    rows = conn.execute(
        select(*[c for c in artifacts.c if c.name != "tenant_id"])
        .where(artifacts.c.run_id == run_id)
        .order_by(artifacts.c.created_at, artifacts.c.name)
    )
    return [ArtifactRow(**r._mapping) for r in rows]
