"""Creating and cancelling runs.

The run row and its task are written in one transaction, so a run is never queued
without its row nor recorded without its task. ``create_runs`` is the one way runs
are created from requests (``create_run`` is a batch of one).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import Connection, Engine

from quarry.catalog.reader import Catalog
from quarry.core.clock import utcnow
from quarry.core.errors import BadRequest
from quarry.runtime.queue import NewTask, TaskQueue
from quarry.store import runs as runq
from quarry.store.runs import RunRow
from quarry.store.workspaces import WorkspaceRow

RUN_TASK_KIND = "run"
RUNNABLE_KINDS = frozenset({"workflow", "app"})


@dataclass(frozen=True)
class RunRequest:
    target_kind: str
    target_name: str
    variables: dict[str, Any]
    revision: str | None = None
    origin: str = "api"
    request_id: str | None = None
    deadline_seconds: float | None = None
    """A deadline for this run shorter than the operator's (it travels in the task)."""


def create_run(
    engine: Engine,
    queue: TaskQueue,
    catalog: Catalog,
    workspace: WorkspaceRow,
    request: RunRequest,
    *,
    max_attempts: int = 3,
    enqueue: bool = True,
) -> RunRow:
    """Record a run and queue it; ``enqueue=False`` is for a caller that executes the
    run itself, at once (``quarry run``)."""
    return create_runs(
        engine, queue, catalog, workspace, [request], max_attempts=max_attempts, enqueue=enqueue
    )[0]


def create_runs(
    engine: Engine,
    queue: TaskQueue,
    catalog: Catalog,
    workspace: WorkspaceRow,
    requests: Sequence[RunRequest],
    *,
    max_attempts: int = 3,
    enqueue: bool = True,
) -> list[RunRow]:
    """Record runs and queue them, all in one transaction (all or none): every
    request is checked first, then the tasks go in with one bulk enqueue, the run rows
    (carrying their task ids) with one insert and their ``run.queued`` events with one
    more. The per-tenant queue cap counts the whole batch."""
    rows: list[RunRow] = []
    for index, request in enumerate(requests):
        if request.target_kind not in RUNNABLE_KINDS:
            raise BadRequest(
                f"cannot run a {request.target_kind!r}; runnable kinds: {sorted(RUNNABLE_KINDS)}",
                parameter="kind" if len(requests) == 1 else f"runs[{index}].kind",
            )
        revision_id = catalog.resolve(workspace, request.revision)
        catalog.definition(workspace, revision_id, request.target_kind, request.target_name)
        rows.append(new_run(workspace.tenant_id, workspace.id, revision_id, request))
    with engine.begin() as conn:
        if not enqueue:
            runq.insert_runs(conn, rows)
            return rows
        tasks = [
            NewTask(
                run.tenant_id,
                RUN_TASK_KIND,
                run_task_payload(run, request.deadline_seconds),
                max_attempts=max_attempts,
            )
            for run, request in zip(rows, requests, strict=True)
        ]
        enqueued = queue.enqueue_many(tasks, conn=conn)
        rows = [replace(run, task_id=e.id) for run, e in zip(rows, enqueued, strict=True)]
        runq.insert_runs(conn, rows)
        runq.append_events(
            conn, [(r.id, {"type": "run.queued", "revision_id": r.revision_id}) for r in rows]
        )
        return rows


def run_task_payload(run: RunRow, deadline_seconds: float | None) -> dict[str, Any]:
    """What a run's task carries (the worker loads everything else from the run row)."""
    payload: dict[str, Any] = {"run_id": run.id, "request_id": run.request_id}
    if deadline_seconds is not None:
        payload["deadline_seconds"] = deadline_seconds
    return payload


def new_run(
    tenant_id: str,
    workspace_id: str,
    revision_id: str,
    request: RunRequest,
) -> RunRow:
    """A queued run row (not yet written) for a target already known to exist."""
    return RunRow(
        id=uuid.uuid4().hex,
        tenant_id=tenant_id,
        workspace_id=workspace_id,
        revision_id=revision_id,
        target_kind=request.target_kind,
        target_name=request.target_name,
        variables=request.variables,
        state="queued",
        origin=request.origin,
        task_id=None,
        error=None,
        request_id=request.request_id,
        created_at=utcnow(),
        started_at=None,
        finished_at=None,
    )


def queue_run_in(
    conn: Connection,
    queue: TaskQueue,
    run: RunRow,
    *,
    max_attempts: int = 3,
    dedupe_key: str | None = None,
    deadline_seconds: float | None = None,
) -> int:
    """Inside the caller's transaction: queue the task of an inserted run row, link
    it and record the event; returns the task id."""
    task_id = enqueue_run_task(
        conn,
        queue,
        run,
        max_attempts=max_attempts,
        dedupe_key=dedupe_key,
        deadline_seconds=deadline_seconds,
    )
    runq.set_task(conn, run.id, task_id)
    runq.append_event(conn, run.id, {"type": "run.queued", "revision_id": run.revision_id})
    return task_id


def enqueue_run_task(
    conn: Connection,
    queue: TaskQueue,
    run: RunRow,
    *,
    max_attempts: int = 3,
    dedupe_key: str | None = None,
    deadline_seconds: float | None = None,
) -> int:
    """Only the task of ``run`` (its row may be inserted after it, in the same
    transaction, already carrying the task id: the scheduler saves a statement per
    fire that way, inside the transaction of its compare-and-swap)."""
    payload = run_task_payload(run, deadline_seconds)
    return queue.enqueue(
        run.tenant_id,
        RUN_TASK_KIND,
        payload,
        max_attempts=max_attempts,
        dedupe_key=dedupe_key,
        conn=conn,
    ).id


def cancel_run(engine: Engine, queue: TaskQueue, tenant_id: str, run_id: str) -> RunRow:
    with engine.connect() as conn:
        run = runq.get_run(conn, tenant_id, run_id)
    if run.finished or run.task_id is None:
        return run
    state = queue.cancel(run.task_id)
    with engine.begin() as conn:
        if state == "cancelled":
            runq.mark_finished(conn, run_id, "cancelled", "cancelled before it started")
            runq.append_event(conn, run_id, {"type": "run.cancelled"})
        else:
            runq.append_event(conn, run_id, {"type": "run.cancel_requested"})
        return runq.get_run(conn, tenant_id, run_id)
