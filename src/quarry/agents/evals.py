"""Agent tests as code (an agent's ``tests:``, run by ``quarry test``).

* ``consistency`` (``n``, ``task_description``): the question asked ``n`` times; the
  score is the share of answer pairs the judge finds consistent
  (:mod:`quarry.agents.consistency`).
* ``test_case`` (``cases`` of ``prompt``/``expected``, ``runs``): each case asked
  ``runs`` times; the score is the share of answers the judge finds consistent with
  the expected one (the judge is ``judge_model`` or the agent's model).
* ``custom`` (datasets) is reported as not run.

A workflow's (procedure's) ``consistency`` tests run the workflow ``n`` times and
judge the output of ``task_ref`` (default: its last task) the same way, with the
first model of ``config.yml`` as the judge.

Turns run ``concurrency`` at a time. A test passes when its score reaches the
threshold the caller gives.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from quarry.agents.consistency import (
    CONSISTENCY_PROMPT,
    Judge,
    consistent,
    judge_with,
    pick,
)
from quarry.agents.providers.base import ModelNotConfigured
from quarry.agents.providers.configured import make_provider
from quarry.agents.service import ask_agent, load_agent
from quarry.definitions.models.evals import CaseEval, ConsistencyEval, EvalCase
from quarry.runtime.connectors.registry import Connections
from quarry.runtime.engine.templating import render_text
from quarry.runtime.source import RevisionSource

Progress = Callable[[str], None]


@dataclass
class TestResult:
    agent: str
    name: str
    kind: str
    score: float | None
    runs: int
    passed: bool
    detail: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "agent": self.agent,
            "name": self.name,
            "type": self.kind,
            "score": self.score,
            "runs": self.runs,
            "passed": self.passed,
            **self.detail,
        }


async def _turns(
    source: RevisionSource,
    connections: Connections,
    agent: str,
    prompt: str,
    n: int,
    concurrency: int,
) -> list[tuple[str, set[str]]]:
    """``n`` answers to ``prompt`` (empty when a turn ended without one), each with
    the names of the tools its turn called."""
    gate = asyncio.Semaphore(max(1, concurrency))

    async def one() -> tuple[str, set[str]]:
        async with gate:
            result = await ask_agent(source, connections, agent, prompt, stream=False)
            called = {call.name for m in result.messages for call in m.tool_calls}
            return (result.answer if result.status == "answered" else "", called)

    return list(await asyncio.gather(*(one() for _ in range(n))))


async def _answers(
    source: RevisionSource,
    connections: Connections,
    agent: str,
    prompt: str,
    n: int,
    concurrency: int,
) -> list[str]:
    turns = await _turns(source, connections, agent, prompt, n, concurrency)
    return [answer for answer, _ in turns]


async def run_cases(
    source: RevisionSource,
    connections: Connections,
    agent_ref: str,
    label: str,
    cases: Sequence[EvalCase],
    *,
    runs: int,
    concurrency: int,
    judge_model: str | None,
    threshold: float,
    progress: Progress,
    kind: str = "test_case",
) -> list[TestResult]:
    """Each case asked ``runs`` times; its score is the share of answers the judge
    finds consistent with ``expected`` — and, when the case names a ``tool``, whose
    turn called that tool (a deterministic check Oxy's schema has and does not run
    yet)."""
    agent = load_agent(source, agent_ref)
    provider = make_provider(source.config, judge_model or agent.model, connections.secrets)
    judge = judge_with(provider)
    results: list[TestResult] = []
    try:
        for case_index, case in enumerate(cases):
            name = f"{label} case {case.name or case_index}"
            progress(f"{name}: asking {max(1, runs)} times")
            turns = await _turns(
                source, connections, agent_ref, case.prompt, max(1, runs), concurrency
            )
            good = 0
            without_tool = 0
            for answer, called in turns:
                if case.tool is not None and case.tool not in called:
                    without_tool += 1
                    continue
                text = render_text(
                    CONSISTENCY_PROMPT,
                    {
                        "task_description": case.prompt,
                        "submission_1": case.expected,
                        "submission_2": answer,
                    },
                )
                good += consistent(await judge(text))
            score = good / len(turns)
            detail: dict[str, Any] = {
                "answers": [answer for answer, _ in turns],
                "expected": case.expected,
            }
            if case.tags:
                detail["tags"] = list(case.tags)
            if case.tool is not None:
                detail["tool"] = case.tool
                detail["runs_without_tool"] = without_tool
            results.append(
                TestResult(
                    agent_ref, name, kind, round(score, 4), len(turns), score >= threshold, detail
                )
            )
    finally:
        await provider.close()
    return results


def _pairwise(judge: Callable[[str], Awaitable[str]]) -> Judge:
    async def verdict(_i: int, _j: int, text: str) -> str:
        return await judge(text)

    return verdict


async def run_agent_tests(
    source: RevisionSource,
    connections: Connections,
    agent_ref: str,
    threshold: float,
    progress: Progress = lambda _line: None,
) -> list[TestResult]:
    agent = load_agent(source, agent_ref)
    results: list[TestResult] = []
    for index, test in enumerate(agent.tests):
        name = f"{agent_ref}#{index} {test.type}"
        if isinstance(test, ConsistencyEval):
            question = test.task_description or ""
            progress(f"{name}: asking {test.n} times")
            answers = await _answers(
                source, connections, agent_ref, question, test.n, test.concurrency
            )
            provider = make_provider(source.config, agent.model, connections.secrets)
            try:
                chosen = await pick(question, answers, _pairwise(judge_with(provider)))
            finally:
                await provider.close()
            score = sum(chosen.scores) / len(chosen.scores) if chosen.scores else 0.0
            results.append(
                TestResult(
                    agent_ref,
                    name,
                    test.type,
                    round(score, 4),
                    test.n,
                    score >= threshold,
                    {"answers": answers, "chosen": chosen.answer},
                )
            )
        elif isinstance(test, CaseEval):
            results += await run_cases(
                source,
                connections,
                agent_ref,
                name,
                test.cases,
                runs=test.runs,
                concurrency=test.concurrency,
                judge_model=test.judge_model,
                threshold=threshold,
                progress=progress,
            )
        else:
            results.append(
                TestResult(agent_ref, name, test.type, None, 0, True, {"skipped": "not run yet"})
            )
    return results


def junit_xml(results: list[TestResult], threshold: float) -> str:
    from xml.sax.saxutils import escape, quoteattr

    failures = sum(1 for r in results if not r.passed and "error" not in r.detail)
    errors = sum(1 for r in results if "error" in r.detail)
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<testsuite name="quarry agent tests" tests="{len(results)}" failures="{failures}" '
        f'errors="{errors}">',
    ]
    for r in results:
        head = f"  <testcase classname={quoteattr(r.agent)} name={quoteattr(r.name)}"
        if "error" in r.detail:
            message = quoteattr(str(r.detail["error"]))
            lines.append(f"{head}><error message={message}/></testcase>")
        elif r.score is None:
            lines.append(f"{head}><skipped/></testcase>")
        elif r.passed:
            lines.append(f"{head}/>")
        else:
            message = escape(f"score {r.score} under the threshold {threshold}")
            lines.append(f'{head}><failure message="{message}"/></testcase>')
    lines.append("</testsuite>")
    return "\n".join(lines) + "\n"


def _text(output: Any) -> str:
    from quarry.agents.tools.readonly import SqlLimits
    from quarry.agents.tools.sql import render_table
    from quarry.runtime.engine.results import TableOutput, TextOutput

    if isinstance(output, TableOutput):
        return render_table(output.table, SqlLimits())[0]
    if isinstance(output, TextOutput):
        return output.text
    return str(output)


async def run_workflow_tests(
    source: RevisionSource,
    connections: Connections,
    workflow: str,
    threshold: float,
    progress: Progress = lambda _line: None,
) -> list[TestResult]:
    from quarry.runtime.engine.journal import MemoryJournal
    from quarry.runtime.engine.runner import resolve_workflow, run_workflow

    name, config = resolve_workflow(source, workflow)
    results: list[TestResult] = []
    for index, test in enumerate(config.tests):
        label = f"{workflow}#{index} {test.type}"
        if not isinstance(test, ConsistencyEval):
            results.append(
                TestResult(workflow, label, test.type, None, 0, True, {"skipped": "not run yet"})
            )
            continue
        if not source.config.models:
            raise ModelNotConfigured(
                f"{workflow}: a consistency test needs a judge: config.yml defines no models"
            )
        progress(f"{label}: running {test.n} times")
        wanted = test.task_ref or (config.tasks[-1].name if config.tasks else None)

        def once(task: str | None) -> str:
            run = run_workflow(source, name, {}, connections=connections, journal=MemoryJournal())
            output = run.outputs.get(task) if task else None
            return "" if output is None else _text(output)

        outputs = [await asyncio.to_thread(once, wanted) for _ in range(test.n)]
        provider = make_provider(source.config, source.config.models[0].name, connections.secrets)
        try:
            chosen = await pick(
                test.task_description or workflow,
                outputs,
                _pairwise(judge_with(provider)),
                config.consistency_prompt,
            )
        finally:
            await provider.close()
        score = sum(chosen.scores) / len(chosen.scores) if chosen.scores else 0.0
        results.append(
            TestResult(
                workflow,
                label,
                test.type,
                round(score, 4),
                test.n,
                score >= threshold,
                {"outputs": outputs, "task_ref": wanted},
            )
        )
    return results
