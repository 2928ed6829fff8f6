"""The vocabulary of a run's event stream (``GET /api/v1/runs/{id}/events``).

Every event written to ``run_events`` has a ``type`` from :class:`RunEvent`; the
values are the wire strings clients match on, so they never change. Run-level events
are written only by the run's owners — :mod:`quarry.runtime.runs.service` (creation,
cancel before start) and the executor through
:class:`~quarry.runtime.runs.journal.RunWriter` (start, resume, the outcome) — each
in the transaction that changes the run row, which is what makes each of them happen
exactly once (docs/runs.md, "The event stream", is the contract: names, order,
fields).

The workflow engine reports a step's progress to its caller with in-process events
named ``step_started``, ``step_finished``... (docs/workflows.md); the executor stores
them as the ``step.*`` and ``agent.*`` members here (:meth:`RunEvent.from_engine`). The engine's own
run-level notices (``run_started``, ``run_finished``...) are not stored: the run's
owner records those, once.
"""

from __future__ import annotations

from enum import StrEnum


class RunEvent(StrEnum):
    QUEUED = "run.queued"
    """First, exactly once: the run row exists (``revision_id``; ``draft`` for a
    Factory draft run)."""
    STARTED = "run.started"
    """At most once: the first attempt began executing (``attempt``)."""
    RESUMED = "run.resumed"
    """Each later attempt after a worker died, lost its lease or gave the task back
    (``attempt``); finished steps are then replayed (``step.replayed``)."""
    CANCEL_REQUESTED = "run.cancel_requested"
    """A cancel reached a run that is executing; ``run.cancelled`` follows."""
    SUCCEEDED = "run.succeeded"
    FAILED = "run.failed"
    """``error``: ``{"error": code, "message": ..., "details"?: {"step", "task"}}``."""
    CANCELLED = "run.cancelled"

    STEP_STARTED = "step.started"
    STEP_FINISHED = "step.finished"
    STEP_FAILED = "step.failed"
    STEP_REPLAYED = "step.replayed"
    STEP_WARNING = "step.warning"
    STEP_CACHE_HIT = "step.cache_hit"
    STEP_CACHE_WRITTEN = "step.cache_written"
    AGENT_TOOL_CALL = "agent.tool_call"
    AGENT_TOOL_RESULT = "agent.tool_result"
    AGENT_DONE = "agent.done"
    # A thread's turn (``kind: agent`` runs, quarry.agents.threads; docs/agents.md
    # names them without the prefix in a thread's stream).
    AGENT_TEXT = "agent.text"
    """Streamed model text (``text``), pieces joined up to every 50 ms."""
    AGENT_MODEL_RESPONSE = "agent.model_response"
    AGENT_WARNING = "agent.warning"
    AGENT_ANSWER = "agent.answer"
    """The reply is stored (``message_id``, ``status``, ``content``, usage)."""

    @classmethod
    def from_engine(cls, engine_event: str) -> RunEvent | None:
        """The stored form of an engine event (``step_started`` -> ``step.started``);
        None for the engine's run-level notices, which the stream does not carry.
        An engine event missing here is a ValueError: the vocabulary is closed."""
        if engine_event.startswith("run_"):
            return None
        return cls(engine_event.replace("_", ".", 1))

    @classmethod
    def outcome(cls, state: str) -> RunEvent:
        """The last event of a run that ended in ``state``."""
        return _OUTCOMES[state]

    @property
    def terminal(self) -> bool:
        return self in _OUTCOMES.values()


_OUTCOMES = {
    "succeeded": RunEvent.SUCCEEDED,
    "failed": RunEvent.FAILED,
    "cancelled": RunEvent.CANCELLED,
}
