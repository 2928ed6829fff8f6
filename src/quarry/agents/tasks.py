"""``agent`` tasks of workflows (``agent_ref``, ``prompt``, ``variables``): one turn of
the agent, on the run's connections, its SQL under the run's watchdog.

The runtime cannot import agents (they sit above it), so :func:`install` registers
this executor with the engine's task dispatch; ``build_services`` calls it in every
process (local CLI, serve, worker). The step's output is the answer's text (what
``{{ task_name }}`` gives later steps); its facts say how the turn ended.

Not built yet (docs/agents.md): ``retry`` beyond one attempt, ``consistency_run`` with
a judge, journaling each model response so a resumed step does not call the model
again (a step re-run after a crash runs the whole turn again).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Coroutine
from typing import Any, TypeVar

from quarry.agents.loop import TurnResult
from quarry.agents.service import ask_agent
from quarry.definitions.models.tasks import AgentTask
from quarry.runtime.connectors.base import Connector
from quarry.runtime.engine.context import RunContext, Scope
from quarry.runtime.engine.errors import StepFailed, TemplateFailed
from quarry.runtime.engine.results import StepResult, TextOutput
from quarry.runtime.engine.runner import register_task_handler
from quarry.runtime.engine.templating import TemplateProblem, evaluate, render_text

T = TypeVar("T")


def _run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to the end from this (step) thread, which has no running loop —
    or, if it has one, on a thread of its own."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def run(ctx: RunContext, task: AgentTask, scope: Scope, key: str) -> StepResult:
    names = scope.template_context()
    try:
        variables = evaluate(dict(task.variables), names) if task.variables else None
        prompt = render_text(task.prompt, names)
        ref = render_text(task.agent_ref, names).strip()
    except TemplateProblem as exc:
        raise TemplateFailed(str(exc)) from exc

    def guard(connector: Connector) -> Any:
        return ctx.watchdog.statement(connector, key, task.name)

    def event(fields: dict[str, Any]) -> None:
        if fields["type"] in ("tool_call", "tool_result", "done"):
            kind = fields["type"]
            ctx.emit(f"agent_{kind}", key, **{k: v for k, v in fields.items() if k != "type"})

    result: TurnResult = _run_async(
        ask_agent(
            ctx.source,
            ctx.connections,
            ref,
            prompt,
            variables=variables if isinstance(variables, dict) else None,
            on_event=event,
            stream=False,
            statement_guard=guard,
        )
    )
    if result.status != "answered":
        raise StepFailed(result.answer, agent=ref, status=result.status)
    meta = {
        "agent": ref,
        "status": result.status,
        "model_calls": result.model_calls,
        "tool_calls": result.tool_calls,
        "input_tokens": result.usage.input_tokens,
        "output_tokens": result.usage.output_tokens,
    }
    return StepResult(TextOutput(result.answer), meta)


def install() -> None:
    """Make ``agent`` tasks run through the agent loop in this process."""
    register_task_handler("agent", run)
