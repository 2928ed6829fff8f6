"""What can go wrong running a workflow, each with a message fit to show a user.

Errors raised inside a step are tagged with the step's stable key
(``tasks.2.iter.0.tasks.1``) and task name by the runner, so a failed run points at
the line to fix; the driver's own exception stays as ``__cause__`` for the logs and
is never shown raw.
"""

from __future__ import annotations

from typing import Any, Self

from quarry.core.errors import QuarryError


class WorkflowError(QuarryError):
    """Base class of every failure the engine reports."""

    status_code = 422
    code = "workflow_failed"

    def __init__(
        self, message: str, *, step: str | None = None, task: str | None = None, **details: Any
    ) -> None:
        self.cause = message
        self.step = step
        self.task = task
        if step is not None:
            details = {"step": step, "task": task, **details}
            message = f"step {step} ({task}): {message}"
        super().__init__(message, **details)
        self._details = {k: v for k, v in details.items() if k not in ("step", "task")}

    def at(self, step: str, task: str) -> Self:
        """The same error, located at a step (errors already located are kept)."""
        if self.step is not None:
            return self
        located = type(self)(self.cause, step=step, task=task, **self._details)
        located.__cause__ = self.__cause__
        return located


class UnknownWorkflow(WorkflowError):
    status_code = 404
    code = "unknown_workflow"


class VariableError(WorkflowError):
    """A run-time variable is missing, unknown or of the wrong type."""

    status_code = 400
    code = "invalid_variables"


class RunCancelled(WorkflowError):
    """The run was asked to stop (cancelled, the worker is shutting down, its lease lost).

    Raised before a step, or by a step whose statement was interrupted because of
    the stop: every step that finished is checkpointed, so the run can be resumed
    later exactly where it stopped.
    """

    status_code = 409
    code = "run_cancelled"


class StepFailed(WorkflowError):
    code = "step_failed"


class StepTimedOut(StepFailed):
    """A step ran longer than its ``timeout`` (or the operator's default): its
    statements were interrupted and the step failed, located at that step."""

    code = "step_timeout"


class RunDeadlineExceeded(StepFailed):
    """The run was still running at its deadline; the step in flight was interrupted."""

    code = "run_deadline_exceeded"


class TooManyStatements(StepFailed):
    """An ``execute_sql`` task's SQL holds several statements without opting in."""

    code = "multiple_statements"


class SqlFailed(StepFailed):
    code = "sql_failed"


class TemplateFailed(StepFailed):
    code = "template_failed"


class NotSupportedYet(StepFailed):
    status_code = 501
    code = "not_supported_yet"


class ExportFailed(StepFailed):
    code = "export_failed"
