"""Task types whose engines have not landed yet answer a clear error on the step."""

from __future__ import annotations

from typing import Any

from quarry.runtime.engine.context import RunContext, Scope
from quarry.runtime.engine.errors import NotSupportedYet
from quarry.runtime.engine.results import StepResult


def run(ctx: RunContext, task: Any, scope: Scope, key: str) -> StepResult:
    raise NotSupportedYet(f"{task.type} tasks are not supported yet", task_type=task.type)
