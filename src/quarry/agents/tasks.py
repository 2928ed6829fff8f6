"""``agent`` tasks of workflows (``agent_ref``, ``prompt``, ``variables``): one turn of
the agent, on the run's connections, its SQL under the run's watchdog.

The runtime cannot import agents (they sit above it), so :func:`install` registers
this executor with the engine's task dispatch; ``build_services`` calls it in every
process (local CLI, serve, worker). The step's output is the answer's text (what
``{{ task_name }}`` gives later steps); its facts say how the turn ended.

Each model response and tool result is journaled in the run's step journal as it
happens (``<step>.agent.model.N``, ``<step>.agent.tool.N.I``), so a step run again
after its worker died replays them: no model call or query is repeated, and the turn
goes on from the first thing missing.

``retry`` asks again (that many attempts in all) when a turn fails or ends without an
answer; ``consistency_run: N`` asks N times and a judge picks the answer most runs
agree with (:mod:`quarry.agents.consistency`), each run, retry and verdict journaled
under keys of its own.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
from collections.abc import Coroutine
from typing import Any, TypeVar

from quarry.agents.loop import TurnResult
from quarry.core.errors import QuarryError
from quarry.definitions.models.tasks import AgentTask
from quarry.runtime.connectors.base import Connector
from quarry.runtime.engine.context import RunContext, Scope
from quarry.runtime.engine.errors import StepFailed, TemplateFailed
from quarry.runtime.engine.journal import StepJournal
from quarry.runtime.engine.results import StepResult, TextOutput
from quarry.runtime.engine.runner import register_task_handler
from quarry.runtime.engine.templating import TemplateProblem, evaluate, render_text

T = TypeVar("T")


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to the end from this (step) thread, which has no running loop —
    or, if it has one, on a thread of its own."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


class StepTurnJournal:
    """A turn's checkpoints as entries of the run's step journal, under the step's key."""

    def __init__(self, journal: StepJournal, step: str) -> None:
        self.journal = journal
        self.step = step

    def get(self, key: str) -> dict[str, Any] | None:
        found = self.journal.get(f"{self.step}.agent.{key}")
        if found is None or not isinstance(found.output, TextOutput):
            return None
        entry: dict[str, Any] = json.loads(found.output.text)
        return entry

    def put(self, key: str, entry: dict[str, Any]) -> None:
        name = f"agent {key.replace('.', ' ', 1)}"
        self.journal.put(
            f"{self.step}.agent.{key}",
            StepResult(TextOutput(json.dumps(entry)), {"name": name}),
        )


def run(ctx: RunContext, task: AgentTask, scope: Scope, key: str) -> StepResult:
    # Imported here: the SDKs take seconds to import, and build_services installs this
    # executor in every process, most of which never run an agent.
    from quarry.agents.service import ask_agent

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

    async def ask(journal: StepTurnJournal) -> TurnResult:
        return await ask_agent(
            ctx.source,
            ctx.connections,
            ref,
            prompt,
            variables=variables if isinstance(variables, dict) else None,
            on_event=event,
            stream=False,
            statement_guard=guard,
            journal=journal,
        )

    async def with_retries(step: str) -> TurnResult:
        """One answer, asked again (``retry`` times in all) when a turn fails or
        ends without an answer; each attempt journaled under its own key."""
        attempts = max(1, task.retry)
        for attempt in range(attempts):
            journal = StepTurnJournal(
                ctx.journal, step if attempt == 0 else f"{step}.retry{attempt}"
            )
            try:
                result = await ask(journal)
            except QuarryError:
                if attempt == attempts - 1:
                    raise
                continue
            if result.status == "answered" or attempt == attempts - 1:
                return result
        raise AssertionError("unreachable")

    async def answer() -> tuple[TurnResult, dict[str, Any]]:
        runs = max(1, task.consistency_run)
        results = [await with_retries(key if i == 0 else f"{key}.run{i}") for i in range(runs)]
        if runs == 1:
            return results[0], {}
        return await _most_consistent(ctx, task, key, ref, prompt, results)

    result, extra = run_async(answer())
    if result.status != "answered":
        raise StepFailed(result.answer, agent=ref, status=result.status)
    meta = {
        "agent": ref,
        "status": result.status,
        "model_calls": result.model_calls,
        "tool_calls": result.tool_calls,
        "input_tokens": result.usage.input_tokens,
        "output_tokens": result.usage.output_tokens,
        **extra,
    }
    return StepResult(TextOutput(result.answer), meta)


async def _most_consistent(
    ctx: RunContext,
    task: AgentTask,
    key: str,
    ref: str,
    prompt: str,
    results: list[TurnResult],
) -> tuple[TurnResult, dict[str, Any]]:
    """The answer most runs agree with (``consistency_run``), judged by the agent's
    model; each verdict journaled, so a resumed step does not ask the judge again."""
    from quarry.agents.consistency import judge_with, pick
    from quarry.agents.providers.configured import make_provider
    from quarry.agents.service import load_agent

    answered = [r for r in results if r.status == "answered"]
    if not answered:
        return results[0], {"runs": len(results), "consistency": 0.0}
    agent = load_agent(ctx.source, ref)
    provider = make_provider(ctx.source.config, agent.model, ctx.connections.secrets)
    journal = StepTurnJournal(ctx.journal, f"{key}.judge")
    ask_judge = judge_with(provider)

    async def judge(i: int, j: int, text: str) -> str:
        entry = await asyncio.to_thread(journal.get, f"{i}.{j}")
        if entry is not None:
            return str(entry["text"])
        verdict = await ask_judge(text)
        await asyncio.to_thread(journal.put, f"{i}.{j}", {"text": verdict})
        return verdict

    try:
        chosen = await pick(prompt, [r.answer for r in answered], judge, task.consistency_prompt)
    finally:
        await provider.close()
    extra = {
        "runs": len(results),
        "consistency": round(chosen.score, 4),
        "consistency_scores": [round(x, 4) for x in chosen.scores],
    }
    return answered[chosen.index], extra


def install() -> None:
    """Make ``agent`` tasks, and the turns of threads, run through the agent loop in
    this process."""
    register_task_handler("agent", run)
    from quarry.agents.threads import install as install_threads  # it imports this module

    install_threads()  # ``agent`` runs: turns of threads
