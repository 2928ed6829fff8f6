"""The durable step journal: checkpoints in ``run_steps``, result bytes in the
object store, every write fenced by the task's lease.

The result bytes are uploaded first, under a key unique to the lease, and the row
that points at them is written in a transaction that commits only while the lease is
held. A worker that lost its lease can upload an orphan object but can never make a
checkpoint point at it.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any, Protocol

from quarry.core.clock import utcnow
from quarry.runtime.engine.results import StepResult, row_count
from quarry.runtime.queue import Task, TaskQueue
from quarry.runtime.runs.events import RunEvent
from quarry.store import runs as runq
from quarry.store.db import Connection, Engine
from quarry.store.objects import ObjectStore
from quarry.store.objects.base import tenant_prefix
from quarry.store.runs import ArtifactRow, StepRow

CHECKPOINT_FORMAT = "qsr"


class RunStorage(Protocol):
    """What a run's writes need of the process (a
    :class:`~quarry.runtime.services.Services` is one): the state database, the
    queue that fences writes by lease, the object store for results."""

    @property
    def engine(self) -> Engine: ...
    @property
    def queue(self) -> TaskQueue: ...
    @property
    def store(self) -> ObjectStore: ...


class RunWriter:
    """Every write a worker makes for a run, fenced by its lease when it has one
    (``task`` is None only for a local ``quarry run`` that owns the run outright)."""

    def __init__(self, svc: RunStorage, run: runq.RunRow, task: Task | None) -> None:
        self.engine = svc.engine
        self.queue = svc.queue
        self.store = svc.store
        self.run = run
        self.task = task

    def transaction(self) -> Any:
        if self.task is None:
            return self.engine.begin()
        return self.queue.fenced_transaction(self.task)

    def write(self, fn: Any) -> None:
        with self.transaction() as conn:
            fn(conn)

    def begin(self) -> RunEvent | None:
        """Mark the run running and record ``run.started`` (its first attempt) or
        ``run.resumed`` (a later one), together; None when the run has already
        finished (nothing is written and the attempt must not execute)."""
        began: list[RunEvent] = []

        def begin(conn: Connection) -> None:
            state = runq.mark_started(conn, self.run.id)
            if state is None:
                return
            event = RunEvent.STARTED if state == "started" else RunEvent.RESUMED
            runq.append_event(conn, self.run.id, {"type": event, "attempt": self.attempt})
            began.append(event)

        self.write(begin)
        return began[0] if began else None

    def finish(self, state: str, error: str | None, detail: dict[str, Any] | None) -> bool:
        """Record the run's outcome and its event (``run.succeeded|failed|cancelled``)
        together; False when the run had already ended (nothing is written again)."""
        finished: list[bool] = []

        def finish(conn: Connection) -> None:
            if not runq.mark_finished(conn, self.run.id, state, error):
                return
            event: dict[str, Any] = {"type": RunEvent.outcome(state)}
            if detail is not None:
                event["error"] = detail
            runq.append_event(conn, self.run.id, event)
            finished.append(True)

        self.write(finish)
        return bool(finished)

    def event(self, event: dict[str, Any]) -> None:
        """Append a step's event (``{"type": "step.started", ...}``, see
        :class:`RunEvent`). Run-level events (``run.*``) are refused: they are written
        only with the state change they report (:meth:`begin`, :meth:`finish`), which
        is what keeps each of them to once per run."""
        if str(event.get("type", "")).startswith("run."):
            raise ValueError(f"{event['type']} is written with the run's state, not as an event")
        self.write(lambda conn: runq.append_event(conn, self.run.id, event))

    def store_artifact(self, kind: str, name: str, fmt: str, key: str, data: bytes) -> None:
        """Upload first, then index it (fenced): an index row always has its object."""
        self.store.put(key, data)
        artifact = ArtifactRow(
            id=uuid.uuid4().hex,
            run_id=self.run.id,
            step_key=None,
            kind=kind,
            name=name,
            format=fmt,
            object_key=key,
            size=len(data),
            created_at=utcnow(),
        )
        self.write(lambda conn: runq.insert_artifact(conn, self.run.tenant_id, artifact))

    @property
    def attempt(self) -> int:
        """The task's attempt (1 for a run executed outright)."""
        return self.task.attempts if self.task else 1

    def should_stop(self) -> bool:
        """Watched by the engine while the run runs: cancellation (seen by the
        worker's heartbeat), lease lost or shutdown."""
        return self.task is not None and self.task.stop_event.is_set()

    def object_key(self, *parts: str) -> str:
        salt = self.task.lease_token if self.task and self.task.lease_token else "local"
        return "/".join([tenant_prefix(self.run.tenant_id), "runs", self.run.id, *parts, salt])


class DurableJournal:
    """The engine's :class:`~quarry.runtime.engine.journal.StepJournal` for a run: step
    rows in ``run_steps`` (``started``/``failed``/``put``) and checkpoints read back
    (``get``), each write fenced by the run's lease through its :class:`RunWriter`."""

    def __init__(self, writer: RunWriter) -> None:
        self.writer = writer

    def get(self, step_key: str) -> StepResult | None:
        with self.writer.engine.connect() as conn:
            step = runq.get_step(conn, self.writer.run.id, step_key)
        if step is None or step.state != "succeeded" or step.result_key is None:
            return None
        return StepResult.from_bytes(self.writer.store.get(step.result_key))

    def started(self, step_key: str, name: str) -> None:
        step = StepRow(
            step_key, name, "running", self._attempt(), None, None, None, None, utcnow(), None
        )
        self.writer.write(lambda conn: runq.upsert_step(conn, self.writer.run.id, step))

    def failed(self, step_key: str, name: str, error: str) -> None:
        step = StepRow(
            step_key, name, "failed", self._attempt(), None, None, None, error, None, utcnow()
        )
        self.writer.write(lambda conn: self._merge(conn, step))

    def put(self, step_key: str, result: StepResult) -> None:
        digest = hashlib.sha256(step_key.encode()).hexdigest()[:24]
        key = self.writer.object_key("steps", digest)
        self.writer.store.put(key, result.to_bytes())
        step = StepRow(
            step_key,
            str(result.meta.get("name", step_key)),
            "succeeded",
            self._attempt(),
            key,
            CHECKPOINT_FORMAT,
            row_count(result.output),
            None,
            None,
            utcnow(),
        )
        self.writer.write(lambda conn: self._merge(conn, step))

    def _merge(self, conn: Connection, step: StepRow) -> None:
        existing = runq.get_step(conn, self.writer.run.id, step.step_key)
        if existing is not None:
            step = StepRow(
                step.step_key,
                existing.name if step.name == step.step_key else step.name,
                step.state,
                step.attempt,
                step.result_key,
                step.result_format,
                step.rows,
                step.error,
                existing.started_at,
                step.finished_at,
            )
        runq.upsert_step(conn, self.writer.run.id, step)

    def _attempt(self) -> int:
        return self.writer.attempt
