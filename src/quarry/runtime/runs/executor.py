"""Executing a run on a worker: load it, run it with a durable journal, record the
outcome. Bad definitions, missing variables and failing SQL are errors *on the run*
(the task itself succeeds, so the worker moves on); infrastructure failures raise
and the queue retries the task, and a resumed attempt replays finished steps.

Every run is limited (:class:`RunLimits`): each step by its timeout, the whole run
by a deadline counted from its creation (so a resumed attempt keeps the same one).
A cancel reaches a running run through ``task.stop_event``, which the worker's
heartbeat sets when it sees ``cancel_requested``: the engine's watchdog then
interrupts the statement in flight and the run ends ``cancelled``.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any, Protocol

from quarry.catalog.reader import Catalog
from quarry.catalog.task_sources import TaskSources, task_sources
from quarry.core.errors import BadRequest, QuarryError
from quarry.core.hashing import canonical_json
from quarry.core.logs import request_context
from quarry.core.metrics import RUN_DURATION
from quarry.core.settings import Settings
from quarry.definitions.kinds import Kind
from quarry.runtime.apps import app_result_key, build_app_result, resolve_controls
from quarry.runtime.apps.load import load_app
from quarry.runtime.apps.reuse import reusable_tasks
from quarry.runtime.connectors.datasets import BlobCache
from quarry.runtime.connectors.registry import Connections
from quarry.runtime.engine.errors import RunCancelled, VariableError, WorkflowError
from quarry.runtime.engine.results import TableOutput
from quarry.runtime.engine.runner import Limits, run_task_list, run_workflow
from quarry.runtime.engine.views import to_view
from quarry.runtime.engine.watchdog import Deadline
from quarry.runtime.queue import LeaseLost, Task
from quarry.runtime.queue.worker import TaskCancelled
from quarry.runtime.runs.events import RunEvent
from quarry.runtime.runs.journal import DurableJournal, RunStorage, RunWriter
from quarry.runtime.source import RevisionSource
from quarry.store import runs as runq
from quarry.store import workspaces as wq
from quarry.store.runs import RunRow

log = logging.getLogger(__name__)


class RunKindHandler(Protocol):
    """Executes runs of a kind whose engine lives above the runtime; ``on_event``
    appends a run event as given (``{"type": ...}``)."""

    def __call__(
        self,
        run: RunRow,
        source: RevisionSource,
        *,
        connections: Connections,
        journal: DurableJournal,
        on_event: Callable[[dict[str, Any]], None],
        should_stop: Callable[[], bool],
        limits: Limits,
        attempt: int,
    ) -> None: ...


# Run kinds executed above the runtime (``agent``: a turn of a thread, in
# quarry.agents.threads), installed at composition as task handlers are.
_run_kinds: dict[str, RunKindHandler] = {}


def register_run_kind(kind: str, handler: RunKindHandler) -> None:
    _run_kinds[kind] = handler


def write_in_workspace(root: Path, relpath: str, data: bytes) -> None:
    """A local run also writes each export at its path, as existing workspaces expect;
    atomically, and never outside the workspace."""
    target = (root / relpath).resolve()
    if not target.is_relative_to(root.resolve()):
        raise QuarryError(f"export path {relpath!r} leaves the workspace")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}.partial")
    partial.write_bytes(data)
    os.replace(partial, target)


@dataclass(frozen=True)
class RunLimits:
    """Operator limits on runs, in seconds (None: no limit).

    ``step_timeout`` is the default timeout of each leaf step (a task's own
    ``timeout:`` wins); ``run_deadline`` is how long after its creation a run must
    have finished.
    """

    step_timeout: float | None = None
    run_deadline: float | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> RunLimits:
        return cls(
            step_timeout=settings.step_timeout_seconds or None,
            run_deadline=settings.run_deadline_seconds or None,
        )

    def for_run(self, run: RunRow, requested: float | None = None) -> Limits:
        """``requested`` (the run request's ``deadline_seconds``) may only shorten
        the operator's deadline."""
        seconds = min((s for s in (self.run_deadline, requested) if s is not None), default=None)
        deadline = None
        if seconds is not None:
            created = run.created_at
            if created.tzinfo is None:  # SQLite gives back naive UTC
                created = created.replace(tzinfo=UTC)
            deadline = Deadline(created.timestamp() + seconds, seconds)
        return Limits(step_timeout=self.step_timeout, deadline=deadline)


class RunServices(RunStorage, Protocol):
    """What executing runs needs of the process (a
    :class:`~quarry.runtime.services.Services` is one): the run's writes
    (:class:`~quarry.runtime.runs.journal.RunStorage`) and the catalog its
    definitions are read from."""

    @property
    def catalog(self) -> Catalog: ...


class RunExecutor:
    def __init__(
        self,
        svc: RunServices,
        cache_dir: Path,
        *,
        export_root: Path | None = None,
        on_event: Callable[[dict[str, Any]], None] | None = None,
        limits: RunLimits | None = None,
    ) -> None:
        self.svc = svc
        self.engine = svc.engine
        self.queue = svc.queue
        self.catalog = svc.catalog
        self.cache = BlobCache(cache_dir)
        self.export_root = export_root
        self.listener = on_event
        self.limits = limits or RunLimits()

    def handle(self, task: Task) -> object:
        """The queue handler for ``run`` tasks."""
        run_id = str(task.payload["run_id"])
        with self.engine.connect() as conn:
            run = runq.get_run_by_id(conn, run_id)
        if run.tenant_id != task.tenant_id:
            raise QuarryError(f"task {task.id} and run {run_id} belong to different tenants")
        return self.execute(run, task)

    def execute(self, run: RunRow, task: Task | None) -> dict[str, Any]:
        """Execute with the creating request's id as the logging context, and record
        the attempt's duration when it reaches an outcome."""
        started = time.monotonic()
        with request_context(run.request_id):
            outcome = self._execute(run, task)
        if not outcome.get("skipped"):
            RUN_DURATION.labels(run.target_kind, outcome["state"]).observe(
                time.monotonic() - started
            )
        return outcome

    def _execute(self, run: RunRow, task: Task | None) -> dict[str, Any]:
        if run.finished:
            return {"run_id": run.id, "state": run.state, "skipped": True}
        writer = RunWriter(self.svc, run, task)
        attempt = task.attempts if task else 1
        extra = {"run_id": run.id, "request_id": run.request_id, "attempt": attempt}
        log.info("run %s: executing %s %s", run.id, run.target_kind, run.target_name, extra=extra)

        if writer.begin() is None:  # finished meanwhile (cancelled while queued)
            return {"run_id": run.id, "state": run.state, "skipped": True}
        try:
            self._run(run, writer)
        except LeaseLost:
            raise
        except RunCancelled:
            if task is None or not self._cancel_requested(task):
                raise  # shutting down or lease lost: the run resumes elsewhere
            self._finish(writer, "cancelled", "cancelled while running", None)
            raise TaskCancelled(f"run {run.id} cancelled") from None
        except WorkflowError as exc:
            return self._finish(writer, "failed", exc.message, exc.to_json())
        except QuarryError as exc:
            if task is not None and task.attempts < task.max_attempts:
                raise
            return self._finish(writer, "failed", exc.message, exc.to_json())
        except Exception as exc:
            if task is not None and task.attempts < task.max_attempts:
                raise
            message = f"internal error: {type(exc).__name__}: {exc}"
            return self._finish(writer, "failed", message, {"error": "internal_error"})
        return self._finish(writer, "succeeded", None, None)

    def _run_app(
        self,
        run: RunRow,
        workspace: wq.WorkspaceRow,
        source: RevisionSource,
        writer: RunWriter,
        connections: Connections,
        journal: DurableJournal,
        on_event: Callable[[dict[str, Any]], None],
        limits: Limits,
    ) -> None:
        """Refresh an app's data: run its tasks with the controls, store the page
        document where the app's (revision, controls) cache key says."""
        app = load_app(self.catalog, workspace, run.revision_id, run.target_name)
        try:
            controls = resolve_controls(app, run.variables)
        except BadRequest as exc:
            raise VariableError(exc.message) from exc
        outputs = run_task_list(
            source,
            reusable_tasks(app, source, run.target_name, controls),  # only what changed runs
            {"controls": controls},
            connections=connections,
            journal=journal,
            on_event=on_event,
            should_stop=writer.should_stop,
            limits=limits,
            run_id=run.id,
            attempt=writer.attempt,
        )
        tables = {k: v.table for k, v in outputs.items() if isinstance(v, TableOutput)}
        names: dict[str, Any] = {k: to_view(v) for k, v in outputs.items()}
        names["controls"] = controls
        document = build_app_result(
            app,
            tables,
            controls,
            revision_id=run.revision_id,
            app_name=run.target_name,
            names=names,
        )
        key = app_result_key(
            run.tenant_id, run.workspace_id, run.revision_id, run.target_name, controls
        )
        writer.store_artifact("app_data", run.target_name, "json", key, canonical_json(document))

    def _task_sources(self, run: RunRow, workspace: wq.WorkspaceRow) -> TaskSources | None:
        """Where the run's tasks are written, for a failed step's ``source``; None when
        unknown (a failure to find out never changes how the run ends)."""
        try:
            return task_sources(
                self.engine,
                self.catalog,
                workspace,
                run.revision_id,
                run.target_kind,
                run.target_name,
            )
        except Exception:
            log.exception("run %s: the task positions could not be read", run.id)
            return None

    def _cancel_requested(self, task: Task) -> bool:
        current = self.queue.get(task.id)
        return current is not None and current.cancel_requested

    def _finish(
        self, writer: RunWriter, state: str, error: str | None, detail: dict[str, Any] | None
    ) -> dict[str, Any]:
        run_id = writer.run.id
        if writer.finish(state, error, detail):
            log.info("run %s: %s", run_id, state, extra={"run_id": run_id})
        return {"run_id": run_id, "state": state}

    def _run(self, run: RunRow, writer: RunWriter) -> None:
        with self.engine.connect() as conn:
            workspace = wq.get_workspace_by_id(conn, run.workspace_id)
        source = RevisionSource(self.catalog, workspace, run.revision_id)
        journal = DurableJournal(writer)
        connections = Connections(source, self.cache)

        sources: list[TaskSources | None] = []  # looked up at the first failed step

        def on_event(event: dict[str, Any]) -> None:
            # Step rows are the journal's (the engine calls it); the run-level
            # notices are the writer's, once, with the run's state (events.py).
            kind = RunEvent.from_engine(str(event["event"]))
            if kind is None:
                return
            stored = {"type": kind, **event}
            if kind == RunEvent.STEP_FAILED:
                if not sources:
                    sources.append(self._task_sources(run, workspace))
                at = sources[0].of(str(event.get("step", ""))) if sources[0] else None
                if at is not None:
                    stored["source"] = at  # the file:line of the task, its own line
            writer.event(stored)
            if self.listener is not None:
                self.listener(stored)

        def on_export(path: str, data: bytes, fmt: str) -> None:
            writer.store_artifact("export", path, fmt, writer.object_key("exports", path), data)
            if self.export_root is not None:
                write_in_workspace(self.export_root, path, data)

        stop = writer.should_stop
        requested = writer.task.payload.get("deadline_seconds") if writer.task else None
        limits = self.limits.for_run(run, float(requested) if requested is not None else None)
        try:
            if run.target_kind == Kind.WORKFLOW:
                run_workflow(
                    source,
                    run.target_name,
                    run.variables,
                    connections=connections,
                    journal=journal,
                    on_event=on_event,
                    on_export=on_export,
                    should_stop=stop,
                    limits=limits,
                    run_id=run.id,
                    attempt=writer.attempt,
                )
            elif run.target_kind == Kind.APP:
                self._run_app(
                    run, workspace, source, writer, connections, journal, on_event, limits
                )
            elif run.target_kind in _run_kinds:
                _run_kinds[run.target_kind](
                    run,
                    source,
                    connections=connections,
                    journal=journal,
                    on_event=writer.event,
                    should_stop=stop,
                    limits=limits,
                    attempt=writer.attempt,
                )
            else:
                raise WorkflowError(f"running a {run.target_kind!r} is not supported")
        finally:
            connections.close()
