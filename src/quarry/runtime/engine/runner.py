"""Running a workflow: steps in order, each checkpointed, each replayable.

Every step has a stable key derived from its position (``tasks.0``,
``tasks.2.iter.3.tasks.0``, ``tasks.4.workflow.tasks.1``, ``tasks.1.if.0.tasks.0``,
``tasks.1.else.tasks.0``). Before executing a step the runner asks the journal for
its checkpoint: if there is one, the step is *replayed* (its stored output is used
and nothing runs); otherwise the step executes and its result is put in the journal
once it has finished. Composite steps (loops, sub-workflows, conditionals) are
checkpointed as a whole too, after their children, so a resumed run skips a whole
finished loop at once and, inside an unfinished one, only the finished iterations.

A run is watched by a :class:`~quarry.runtime.engine.watchdog.Watchdog`: a step
over its timeout, the run past its deadline or a stop (cancel, shutdown) interrupts
the statements in flight, and the step fails with the reason (``RunCancelled`` for
a stop).
"""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from quarry.core.errors import NotFound, QuarryError
from quarry.definitions.kinds import Kind
from quarry.definitions.models.tasks import Task
from quarry.definitions.models.workflow import WorkflowConfig
from quarry.runtime.connectors.base import ConnectorError
from quarry.runtime.connectors.registry import Connections
from quarry.runtime.engine import task_cache
from quarry.runtime.engine.context import EventSink, ExportSink, RunContext, Scope
from quarry.runtime.engine.errors import (
    RunCancelled,
    SqlFailed,
    StepFailed,
    UnknownWorkflow,
    WorkflowError,
)
from quarry.runtime.engine.journal import NoJournal, StepJournal
from quarry.runtime.engine.results import Output, StepResult, row_count
from quarry.runtime.engine.templating import strict_templates, workspace_strict
from quarry.runtime.engine.variables import resolve_variables
from quarry.runtime.engine.watchdog import Deadline, Watchdog
from quarry.runtime.source import RevisionSource, normalise_path

Handler = Callable[[RunContext, Any, Scope, str], StepResult]

# Executors of task types whose engines live above the runtime (``agent``: in
# quarry.agents), installed at composition (quarry.node.services.build_services).
_registered: dict[str, Handler] = {}


def register_task_handler(task_type: str, handler: Handler) -> None:
    """Run ``task_type`` steps with ``handler`` (replacing the built-in answer)."""
    _registered[task_type] = handler


# Steps that contain other steps: the default step timeout does not apply to them
# (their children have their own), only a ``timeout`` the task sets itself.
COMPOSITE_TASK_TYPES = frozenset({"loop_sequential", "conditional", "workflow"})


@dataclass(frozen=True)
class Limits:
    """How long a run's steps may take.

    ``step_timeout`` is the timeout of each leaf step (SQL, formatter, ...) whose
    task sets no ``timeout``; ``deadline`` is when the whole run must be over.
    """

    step_timeout: float | None = None
    deadline: Deadline | None = None


@dataclass(frozen=True)
class RunResult:
    workflow: str
    variables: dict[str, Any]
    outputs: dict[str, Output]


def run_workflow(
    source: RevisionSource,
    workflow: str,
    variables: Mapping[str, Any] | None = None,
    *,
    connections: Connections,
    journal: StepJournal | None = None,
    on_event: EventSink | None = None,
    on_export: ExportSink | None = None,
    coerce_text: bool = False,
    should_stop: Callable[[], bool] | None = None,
    limits: Limits | None = None,
    run_id: str | None = None,
    attempt: int = 1,
) -> RunResult:
    """Run ``workflow`` (a name like ``workflows/sales`` or its file path) to the end.

    Raises a :class:`WorkflowError` subclass; errors inside a step name the step.
    ``should_stop`` is watched while the run runs; answering True interrupts the
    step in flight and ends the run with :class:`RunCancelled` (finished steps stay
    checkpointed, so it can resume). ``run_id`` and ``attempt`` are what templates
    see as ``step.run_id`` / ``step.attempt`` (and in ``step.idempotency_key``).
    """
    name, config = resolve_workflow(source, workflow)
    values = resolve_variables(name, config.variables, variables, coerce_text=coerce_text)
    scope = Scope(variables=dict(values))
    with _context(
        source, connections, journal, on_event, on_export, should_stop, limits, run_id, attempt
    ) as ctx:
        ctx.emit("run_started", "", workflow=name, revision=source.revision_id)
        started = time.monotonic()
        try:
            run_tasks(ctx.entering(name), config.tasks, scope, "tasks")
        except WorkflowError as exc:
            event = "run_cancelled" if isinstance(exc, RunCancelled) else "run_failed"
            ctx.emit(event, exc.step or "", error=exc.to_json())
            raise
        ctx.emit("run_finished", "", seconds=round(time.monotonic() - started, 6))
    return RunResult(workflow=name, variables=values, outputs=dict(scope.outputs))


def run_task_list(
    source: RevisionSource,
    tasks: Sequence[Task],
    names: Mapping[str, Any] | None = None,
    *,
    connections: Connections,
    journal: StepJournal | None = None,
    on_event: EventSink | None = None,
    on_export: ExportSink | None = None,
    should_stop: Callable[[], bool] | None = None,
    limits: Limits | None = None,
    run_id: str | None = None,
    attempt: int = 1,
) -> dict[str, Output]:
    """Run a list of tasks outside a workflow (an app's tasks, with ``controls``).

    ``names`` are visible to templates as variables are, unchecked; step keys are
    ``tasks.N`` as in a workflow.
    """
    scope = Scope(variables=dict(names or {}))
    with _context(
        source, connections, journal, on_event, on_export, should_stop, limits, run_id, attempt
    ) as ctx:
        run_tasks(ctx, tasks, scope, "tasks")
    return dict(scope.outputs)


@contextmanager
def _context(
    source: RevisionSource,
    connections: Connections,
    journal: StepJournal | None,
    on_event: EventSink | None,
    on_export: ExportSink | None,
    should_stop: Callable[[], bool] | None,
    limits: Limits | None,
    run_id: str | None,
    attempt: int,
) -> Iterator[RunContext]:
    """A run's context, its watchdog closed when the run ends."""
    limits = limits or Limits()
    with Watchdog(should_stop=should_stop, deadline=limits.deadline) as watchdog:
        yield RunContext(
            source=source,
            connections=connections,
            journal=journal or NoJournal(),
            watchdog=watchdog,
            on_event=on_event or (lambda _e: None),
            on_export=on_export,
            step_timeout=limits.step_timeout,
            run_id=run_id or uuid.uuid4().hex,
            attempt=attempt,
            strict_templates=workspace_strict(source),
        )


def workflow_name(ref: str) -> str:
    """A workflow reference as the catalog looks it up: a name, or a file path kept
    whole (``a.workflow.yml`` and ``a.procedure.yml`` coexist, so the suffix counts)."""
    try:
        return normalise_path(ref)
    except ValueError as exc:
        raise UnknownWorkflow(str(exc), workflow=ref) from exc


def resolve_workflow(source: RevisionSource, ref: str) -> tuple[str, WorkflowConfig]:
    """The workflow ``ref`` (name or file path) finds, with the name it is known by
    (so a run's events and the self-call check see one name however it was named)."""
    wanted = workflow_name(ref)
    config = load_workflow(source, wanted)
    return source.definition_name(Kind.WORKFLOW, wanted), config


def load_workflow(source: RevisionSource, name: str) -> WorkflowConfig:
    try:
        model: BaseModel = source.definition(Kind.WORKFLOW, name)
    except NotFound as exc:
        raise UnknownWorkflow(
            f"no workflow named {name!r} in revision {source.revision_id}", workflow=name
        ) from exc
    assert isinstance(model, WorkflowConfig)
    return model


def run_tasks(ctx: RunContext, tasks: Sequence[Task], scope: Scope, prefix: str) -> None:
    """Run ``tasks`` in order, each output becoming visible to the next by name."""
    for index, task in enumerate(tasks):
        result = run_step(ctx, task, scope, f"{prefix}.{index}")
        scope.outputs[task.name] = result.output


def step_timeout(ctx: RunContext, task: Task) -> float | None:
    """The task's own ``timeout``, else the default for a leaf step."""
    if task.timeout is not None:
        return task.timeout
    return None if task.type in COMPOSITE_TASK_TYPES else ctx.step_timeout


def run_step(ctx: RunContext, task: Task, scope: Scope, key: str) -> StepResult:
    facts = {"task": task.name, "task_type": task.type}
    ctx.watchdog.check(key, task.name)
    stored = ctx.journal.get(key)
    if stored is not None:
        ctx.emit("step_replayed", key, rows=row_count(stored.output), **facts)
        return stored
    ctx.journal.started(key, task.name)
    ctx.emit("step_started", key, **facts)
    started = time.monotonic()
    try:
        result = _execute(ctx, task, scope, key)
    except RunCancelled:
        raise
    except Exception as exc:
        failed = _step_error(ctx, exc, key, task.name)
        if not isinstance(failed, RunCancelled):
            ctx.journal.failed(key, task.name, failed.message)
            ctx.emit("step_failed", key, error=failed.to_json(), **facts)
        raise failed from (exc.__cause__ if isinstance(exc, WorkflowError) else exc)
    seconds = round(time.monotonic() - started, 6)
    ctx.journal.put(key, result)
    ctx.emit("step_finished", key, seconds=seconds, rows=row_count(result.output), **facts)
    return result


def _execute(ctx: RunContext, task: Task, scope: Scope, key: str) -> StepResult:
    """Run the step, or read it from its task ``cache`` (:mod:`.task_cache`)."""
    cached_at = task_cache.cache_path(ctx, task, scope, key)
    if cached_at is not None:
        hit = task_cache.read(ctx, cached_at)
        if hit is not None:
            ctx.emit("step_cache_hit", key, task=task.name, path=cached_at)
            return hit
    result = _run_handler(ctx, task, scope, key)
    if cached_at is not None:
        result = task_cache.write(ctx, cached_at, result)
        ctx.emit("step_cache_written", key, task=task.name, path=cached_at)
    return result


def _run_handler(ctx: RunContext, task: Task, scope: Scope, key: str) -> StepResult:
    handler = _registered.get(task.type) or _handlers().get(task.type, _unsupported)
    with (
        ctx.watchdog.step(key, task.name, step_timeout(ctx, task)),
        strict_templates(ctx.strict_templates),  # set per step: loops run on threads
    ):
        result = handler(ctx, task, scope.for_step(ctx.step_facts(key)), key)
    own = ctx.watchdog.own_timeout(key)
    if own is not None:
        # Nothing in the step could be interrupted: it finished, over its limit.
        raise own.error(key, task.name)
    return result


def _step_error(ctx: RunContext, exc: Exception, key: str, task: str) -> WorkflowError:
    """What a step that raised ``exc`` fails with, located at the step."""
    stop = ctx.watchdog.stop
    if stop is not None:
        # Interrupted because the run must stop: say why, not what the driver said.
        stopped = stop.error(key, task)
        if isinstance(exc, WorkflowError) and type(exc) is type(stopped):
            return exc.at(key, task)  # raised by an inner step, already located
        return stopped
    if isinstance(exc, WorkflowError):
        return exc.at(key, task)
    if isinstance(exc, ConnectorError):
        return SqlFailed(exc.message, step=key, task=task)
    if isinstance(exc, QuarryError):
        return StepFailed(exc.message, step=key, task=task)
    return StepFailed(f"internal error: {type(exc).__name__}: {exc}", step=key, task=task)


def _unsupported(ctx: RunContext, task: Any, scope: Scope, key: str) -> StepResult:
    from quarry.runtime.engine.tasks import unsupported

    return unsupported.run(ctx, task, scope, key)


def _semantic_query(ctx: RunContext, task: Any, scope: Scope, key: str) -> StepResult:
    """Imported by the first semantic_query step: the semantic compiler (sqlglot) is
    ~0.15 s that a run of SQL steps does not pay."""
    from quarry.runtime.engine.tasks import semantic_query

    return semantic_query.run(ctx, task, scope, key)


@functools.cache
def _handlers() -> dict[str, Handler]:
    from quarry.runtime.engine.tasks import (
        conditional,
        execute_sql,
        formatter,
        loop,
        unsupported,
        workflow,
    )

    return {
        "execute_sql": execute_sql.run,
        "formatter": formatter.run,
        "loop_sequential": loop.run,
        "conditional": conditional.run,
        "workflow": workflow.run,
        "semantic_query": _semantic_query,
        "agent": unsupported.run,
        # Parsed (Oxy's integrations and LLM charts) but not run by Quarry yet; any
        # other type (an unknown one included) is answered by ``_unsupported`` too.
        "omni_query": unsupported.run,
        "looker_query": unsupported.run,
        "visualize": unsupported.run,
    }
