"""``formatter``: a Jinja template over earlier outputs; its output is the text."""

from __future__ import annotations

from quarry.definitions.models.tasks import FormatterTask
from quarry.runtime.engine.context import RunContext, Scope
from quarry.runtime.engine.errors import TemplateFailed
from quarry.runtime.engine.exports import deliver
from quarry.runtime.engine.results import StepResult, TextOutput
from quarry.runtime.engine.templating import TemplateProblem, render_text


def run(ctx: RunContext, task: FormatterTask, scope: Scope, key: str) -> StepResult:
    try:
        text = render_text(task.template, scope.template_context())
    except TemplateProblem as exc:
        raise TemplateFailed(str(exc)) from exc
    output = TextOutput(text)
    return StepResult(output, {"exports": deliver(ctx, task.export, scope, output)})
