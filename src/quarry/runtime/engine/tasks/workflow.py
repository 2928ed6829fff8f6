"""``workflow``: another workflow of the same revision, run as one step.

``src`` is the workflow's file path (or name); ``variables`` are templates
evaluated in the calling scope (``"{{ regions.value }}"`` keeps the value's type)
and checked against the sub-workflow's declared variables. The sub-workflow sees
only its own variables and outputs; its output maps its task names to their
outputs and renders as its last one.
"""

from __future__ import annotations

from quarry.definitions.models.tasks import WorkflowTask
from quarry.runtime.engine.context import MAX_WORKFLOW_DEPTH, RunContext, Scope
from quarry.runtime.engine.errors import StepFailed, TemplateFailed
from quarry.runtime.engine.exports import deliver
from quarry.runtime.engine.results import MapOutput, StepResult
from quarry.runtime.engine.templating import TemplateProblem, evaluate, render_text
from quarry.runtime.engine.variables import resolve_variables


def run(ctx: RunContext, task: WorkflowTask, scope: Scope, key: str) -> StepResult:
    from quarry.runtime.engine.runner import resolve_workflow, run_tasks

    try:
        # A templated ``src`` is only known at run time (the compiler cannot check it).
        ref = render_text(task.src, scope.template_context()).strip()
    except TemplateProblem as exc:
        raise TemplateFailed(f"src: {exc}") from exc
    name, config = resolve_workflow(ctx.source, ref)
    if name in ctx.workflows:
        chain = " -> ".join((*ctx.workflows, name))
        raise StepFailed(f"workflow {name!r} calls itself ({chain})", workflow=name)
    if len(ctx.workflows) >= MAX_WORKFLOW_DEPTH:
        raise StepFailed(f"sub-workflows nest deeper than {MAX_WORKFLOW_DEPTH} levels")
    try:
        given = evaluate(dict(task.variables or {}), scope.template_context())
    except TemplateProblem as exc:
        raise TemplateFailed(f"variables: {exc}") from exc
    values = resolve_variables(name, config.variables, given)
    inner = Scope(variables=dict(values))
    run_tasks(ctx.entering(name), config.tasks, inner, f"{key}.workflow.tasks")
    output = MapOutput(dict(inner.outputs))
    exports = deliver(ctx, task.export, scope, output)
    return StepResult(output, {"workflow": name, "variables": values, "exports": exports})
