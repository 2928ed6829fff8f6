"""``loop_sequential``: the loop's tasks once per value, up to ``concurrency`` at once.

Inside the loop ``<loop name>.value`` is the current value and ``.index`` its
position; afterwards the loop's output is a list with one entry per value, each
mapping the loop's task names to their outputs. Iterations run in their own scope,
so concurrent iterations never see each other's outputs; the result keeps the order
of the values whatever order iterations finish in.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from quarry.definitions.models.tasks import LoopSequentialTask
from quarry.runtime.engine.context import RunContext, Scope
from quarry.runtime.engine.errors import TemplateFailed
from quarry.runtime.engine.results import ListOutput, Output, StepResult
from quarry.runtime.engine.templating import TemplateProblem, evaluate
from quarry.runtime.engine.views import LoopValue, MapView, TableView


def loop_values(task: LoopSequentialTask, scope: Scope) -> list[Any]:
    try:
        values = evaluate(task.values, scope.template_context())
    except TemplateProblem as exc:
        raise TemplateFailed(f"values: {exc}") from exc
    if isinstance(values, str):
        try:
            values = json.loads(values)
        except ValueError:
            raise TemplateFailed(
                f"values must give a list; {task.values!r} gave the text {values[:80]!r}"
            ) from None
    if isinstance(values, TableView):
        values = list(values)
    if isinstance(values, MapView):
        values = [values[name] for name in values]
    if not isinstance(values, (list, tuple)):
        raise TemplateFailed(f"values must give a list, not {type(values).__name__}")
    return list(values)


def run(ctx: RunContext, task: LoopSequentialTask, scope: Scope, key: str) -> StepResult:
    from quarry.runtime.engine.runner import run_tasks

    values = loop_values(task, scope)

    def iteration(index: int) -> dict[str, Output]:
        inner = scope.child(**{task.name: LoopValue(values[index], index)})
        run_tasks(ctx, task.tasks, inner, f"{key}.iter.{index}.tasks")
        return dict(inner.outputs)

    workers = max(1, min(task.concurrency, len(values)))
    if workers == 1:
        items = [iteration(i) for i in range(len(values))]
    else:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="quarry-loop") as pool:
            futures = [pool.submit(iteration, i) for i in range(len(values))]
            # The first failure in value order wins, whichever finished first.
            items = [future.result() for future in futures]
    return StepResult(ListOutput(tuple(items)), {"iterations": len(values)})
