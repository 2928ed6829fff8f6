"""The workflow engine: runs a compiled workflow step by step, checkpointing each step.

Public entry points: :func:`run_workflow` (with :class:`Connections` for the
databases), :class:`StepJournal`/:class:`MemoryJournal` for durability, and the
output types of :mod:`quarry.runtime.engine.results`.

The names are resolved on first use (PEP 562): importing a submodule such as
``quarry.runtime.engine.templating`` (every CLI command sets the template limits)
must not import the runner, the task handlers and their libraries with it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
    from quarry.runtime.engine.runner import (
        RunResult,
        run_task_list,
        run_workflow,
        workflow_name,
    )

_MODULES = {
    "quarry.runtime.engine.errors": (
        "ExportFailed",
        "NotSupportedYet",
        "RunCancelled",
        "SqlFailed",
        "StepFailed",
        "TemplateFailed",
        "UnknownWorkflow",
        "VariableError",
        "WorkflowError",
    ),
    "quarry.runtime.engine.journal": ("MemoryJournal", "NoJournal", "StepJournal"),
    "quarry.runtime.engine.results": (
        "ListOutput",
        "MapOutput",
        "Output",
        "StepResult",
        "TableOutput",
        "TextOutput",
    ),
    "quarry.runtime.engine.runner": ("RunResult", "run_task_list", "run_workflow", "workflow_name"),
}
_WHERE = {name: module for module, names in _MODULES.items() for name in names}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_WHERE})


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
