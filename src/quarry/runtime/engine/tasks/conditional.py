"""``conditional``: the tasks of the first condition that holds, else ``else``.

The output maps the chosen branch's task names to their outputs (empty when no
branch ran) and records which branch ran, so a replay takes the same one.
"""

from __future__ import annotations

from quarry.definitions.models.tasks import ConditionalTask
from quarry.runtime.engine.context import RunContext, Scope
from quarry.runtime.engine.errors import TemplateFailed
from quarry.runtime.engine.results import MapOutput, StepResult
from quarry.runtime.engine.templating import TemplateProblem, condition


def run(ctx: RunContext, task: ConditionalTask, scope: Scope, key: str) -> StepResult:
    from quarry.runtime.engine.runner import run_tasks

    names = scope.template_context()
    for index, branch in enumerate(task.conditions):
        try:
            holds = condition(branch.if_, names)
        except TemplateProblem as exc:
            raise TemplateFailed(f"condition {index} ({branch.if_!r}): {exc}") from exc
        if holds:
            inner = scope.child()
            run_tasks(ctx, branch.tasks, inner, f"{key}.if.{index}.tasks")
            return StepResult(MapOutput(dict(inner.outputs)), {"branch": index})
    if task.else_:
        inner = scope.child()
        run_tasks(ctx, task.else_, inner, f"{key}.else.tasks")
        return StepResult(MapOutput(dict(inner.outputs)), {"branch": "else"})
    return StepResult(MapOutput({}), {"branch": None})
