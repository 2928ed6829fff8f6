"""Where runs are created (and cancelled): the one owner of the ``runs`` aggregate's
birth.

Every run — from the API, a schedule's fire, a Factory draft run or ``quarry run``
— gets its id from :func:`new_run_id` and is written by :func:`write_runs`, always
in one order inside one transaction: its task (when it is queued), then its row
carrying the task id, then its ``run.queued`` event. So a run is never queued
without its row, never recorded without its task, and its first event is always
``run.queued`` (docs/runs.md, "The event stream"). Many runs cost one statement
each for tasks, rows and events whatever their number (the scheduler's bulk fires,
``runs:batch``).

:func:`create_runs` (``create_run`` is a batch of one) checks requests against the
catalog and writes them in a transaction of its own; the scheduler, which must write
in the transaction of its compare-and-swap, plans runs with :func:`plan_run` and
calls :func:`write_runs` itself.

:func:`end_abandoned_runs` ends the runs whose task the queue's reaper failed or
cancelled because their last worker died: it is the reaper's ``TaskEnded`` hook
(``quarry.runtime.queue.reaper``), installed by ``quarry.node.services``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from quarry.catalog.reader import Catalog
from quarry.core.clock import utcnow
from quarry.core.errors import BadRequest
from quarry.definitions.kinds import Kind
from quarry.runtime.queue import NewTask, Reaped, TaskQueue
from quarry.runtime.runs.events import RunEvent
from quarry.store import runs as runq
from quarry.store.db import Connection, Engine
from quarry.store.runs import RunRow
from quarry.store.workspaces import WorkspaceRow

log = logging.getLogger(__name__)

RUN_TASK_KIND = "run"
RUNNABLE_KINDS = frozenset({Kind.WORKFLOW, Kind.APP})


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
    draft: bool = False
    """The run executes a draft revision of the Factory's working copy (its
    ``run.queued`` event says so)."""


@dataclass(frozen=True)
class NewRun:
    """A run planned but not yet written: its row and, when it is queued for a
    worker, its task (None: the caller executes it at once, in process)."""

    row: RunRow
    task: NewTask | None
    draft: bool = False


class RunCreation(Protocol):
    """What creating runs needs of the process (a
    :class:`~quarry.runtime.services.Services` is one): the state database, the
    queue their tasks go to, the catalog the targets are checked against."""

    @property
    def engine(self) -> Engine: ...
    @property
    def queue(self) -> TaskQueue: ...
    @property
    def catalog(self) -> Catalog: ...


def new_run_id() -> str:
    """The only place run ids are minted."""
    return uuid.uuid4().hex


def create_run(
    svc: RunCreation,
    workspace: WorkspaceRow,
    request: RunRequest,
    *,
    max_attempts: int = 3,
    enqueue: bool = True,
) -> RunRow:
    """Record a run and queue it; ``enqueue=False`` is for a caller that executes the
    run itself, at once (``quarry run``, a Factory draft run)."""
    return create_runs(svc, workspace, [request], max_attempts=max_attempts, enqueue=enqueue)[0]


def create_runs(
    svc: RunCreation,
    workspace: WorkspaceRow,
    requests: Sequence[RunRequest],
    *,
    max_attempts: int = 3,
    enqueue: bool = True,
) -> list[RunRow]:
    """Record runs and queue them, all in one transaction (all or none): every
    request is checked first (a runnable kind, a revision and a definition that
    exist), then :func:`write_runs`. The per-tenant queue cap counts the whole batch."""
    planned: list[NewRun] = []
    for index, request in enumerate(requests):
        if request.target_kind not in RUNNABLE_KINDS:
            raise BadRequest(
                f"cannot run a {request.target_kind!r}; runnable kinds: {sorted(RUNNABLE_KINDS)}",
                parameter="kind" if len(requests) == 1 else f"runs[{index}].kind",
            )
        revision_id = svc.catalog.resolve(workspace, request.revision)
        svc.catalog.definition(workspace, revision_id, request.target_kind, request.target_name)
        planned.append(
            plan_run(
                workspace.tenant_id,
                workspace.id,
                revision_id,
                request,
                max_attempts=max_attempts,
                enqueue=enqueue,
            )
        )
    with svc.engine.begin() as conn:
        return write_runs(conn, svc.queue, planned)


def plan_run(
    tenant_id: str,
    workspace_id: str,
    revision_id: str,
    request: RunRequest,
    *,
    run_id: str | None = None,
    max_attempts: int = 3,
    dedupe_key: str | None = None,
    enqueue: bool = True,
) -> NewRun:
    """A queued run (row and task, not yet written) for a target already known to
    exist; ``run_id`` for a caller that needed the id before (the scheduler records
    it with its compare-and-swap), minted by :func:`new_run_id` too."""
    row = RunRow(
        id=run_id or new_run_id(),
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
    task = None
    if enqueue:
        task = NewTask(
            tenant_id,
            RUN_TASK_KIND,
            run_task_payload(row, request.deadline_seconds),
            max_attempts=max_attempts,
            dedupe_key=dedupe_key,
        )
    return NewRun(row, task, request.draft)


def write_runs(conn: Connection, queue: TaskQueue, planned: Sequence[NewRun]) -> list[RunRow]:
    """Write planned runs in the caller's transaction, in the one order: the tasks
    (one bulk enqueue), the rows carrying their task ids (one insert), the
    ``run.queued`` events (one insert). Returns the rows as written."""
    if not planned:
        return []
    queued = [p for p in planned if p.task is not None]
    enqueued = queue.enqueue_many([p.task for p in queued if p.task is not None], conn=conn)
    task_ids = {p.row.id: e.id for p, e in zip(queued, enqueued, strict=True)}
    rows = [replace(p.row, task_id=task_ids.get(p.row.id)) for p in planned]
    runq.insert_runs(conn, rows)
    runq.append_events(conn, [(p.row.id, queued_event(p)) for p in planned])
    return rows


def queued_event(run: NewRun) -> dict[str, Any]:
    event: dict[str, Any] = {"type": RunEvent.QUEUED, "revision_id": run.row.revision_id}
    if run.draft:
        event["draft"] = True
    return event


def run_task_payload(run: RunRow, deadline_seconds: float | None) -> dict[str, Any]:
    """What a run's task carries (the worker loads everything else from the run row)."""
    payload: dict[str, Any] = {"run_id": run.id, "request_id": run.request_id}
    if deadline_seconds is not None:
        payload["deadline_seconds"] = deadline_seconds
    return payload


def cancel_run(engine: Engine, queue: TaskQueue, tenant_id: str, run_id: str) -> RunRow:
    """A queued run ends ``cancelled`` at once; a running one is marked for its
    worker (``run.cancel_requested``), which interrupts it and records the outcome."""
    with engine.connect() as conn:
        run = runq.get_run(conn, tenant_id, run_id)
    if run.finished or run.task_id is None:
        return run
    state = queue.cancel(run.task_id)
    with engine.begin() as conn:
        if state == "cancelled":
            if runq.mark_finished(conn, run_id, "cancelled", "cancelled before it started"):
                runq.append_event(conn, run_id, {"type": RunEvent.CANCELLED})
        elif runq.lock_unfinished(conn, run_id):
            runq.append_event(conn, run_id, {"type": RunEvent.CANCEL_REQUESTED})
        return runq.get_run(conn, tenant_id, run_id)


def end_abandoned_runs(queue: TaskQueue, reaped: Sequence[Reaped]) -> None:
    """End the runs of tasks the reaper failed (their last allowed attempt's worker
    died) or cancelled (a cancel was requested and the worker died before acting on
    it): the row goes ``failed`` or ``cancelled`` with its terminal event, in one
    transaction, only if the run had not ended — so a run still gets exactly one
    outcome, and calling this twice adds nothing. Tasks of other kinds are left to
    their owners."""
    for ended in reaped:
        task = queue.get(ended.id)
        if task is None or task.kind != RUN_TASK_KIND or ended.state == "queued":
            continue
        run_id = str(task.payload["run_id"])
        event: dict[str, Any]
        if ended.state == "cancelled":
            state, error = "cancelled", "cancelled: its worker stopped before it could end"
            event = {"type": RunEvent.CANCELLED}
        else:
            state = "failed"
            error = (
                f"the worker executing the run stopped (its lease expired) on the last "
                f"allowed attempt ({ended.attempts} of {task.max_attempts})"
            )
            event = {
                "type": RunEvent.FAILED,
                "error": {"error": "worker_lost", "message": error},
            }
        with queue.engine.begin() as conn:
            if runq.mark_finished(conn, run_id, state, error):
                runq.append_event(conn, run_id, event)
                log.warning("run %s: %s (%s)", run_id, state, error, extra={"run_id": run_id})
