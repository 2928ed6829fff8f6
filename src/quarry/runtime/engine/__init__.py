"""The workflow engine: runs a compiled workflow step by step, checkpointing each step.

Public entry points: :func:`run_workflow` (with :class:`Connections` for the
databases), :class:`StepJournal`/:class:`MemoryJournal` for durability, and the
output types of :mod:`quarry.runtime.engine.results`.
"""

from quarry.runtime.engine.errors import (
    ExportFailed,
    NotSupportedYet,
    RunCancelled,
    SqlFailed,
    StepFailed,
    TemplateFailed,
    UnknownWorkflow,
    VariableError,
    WorkflowError,
)
from quarry.runtime.engine.journal import MemoryJournal, NoJournal, StepJournal
from quarry.runtime.engine.results import (
    ListOutput,
    MapOutput,
    Output,
    StepResult,
    TableOutput,
    TextOutput,
)
from quarry.runtime.engine.runner import RunResult, run_task_list, run_workflow, workflow_name

__all__ = [
    "ExportFailed",
    "ListOutput",
    "MapOutput",
    "MemoryJournal",
    "NoJournal",
    "NotSupportedYet",
    "Output",
    "RunCancelled",
    "RunResult",
    "SqlFailed",
    "StepFailed",
    "StepJournal",
    "StepResult",
    "TableOutput",
    "TemplateFailed",
    "TextOutput",
    "UnknownWorkflow",
    "VariableError",
    "WorkflowError",
    "run_task_list",
    "run_workflow",
    "workflow_name",
]
