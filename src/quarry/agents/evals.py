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
from collections.abc import Awaitable, Callable
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
from quarry.definitions.models.evals import CaseEval, ConsistencyEval
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


async def _answers(
    source: RevisionSource,
    connections: Connections,
    agent: str,
    prompt: str,
    n: int,
    concurrency: int,
) -> list[str]:
    gate = asyncio.Semaphore(max(1, concurrency))

    async def one() -> str:
        async with gate:
            result = await ask_agent(source, connections, agent, prompt, stream=False)
            return result.answer if result.status == "answered" else ""

    return list(await asyncio.gather(*(one() for _ in range(n))))


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
            model = test.judge_model or agent.model
            provider = make_provider(source.config, model, connections.secrets)
            judge = judge_with(provider)
            try:
                for case_index, case in enumerate(test.cases):
                    label = f"{name} case {case.name or case_index}"
                    progress(f"{label}: asking {test.runs} times")
                    runs = max(1, test.runs)
                    answers = await _answers(
                        source, connections, agent_ref, case.prompt, runs, test.concurrency
                    )
                    good = 0
                    for answer in answers:
                        text = render_text(
                            CONSISTENCY_PROMPT,
                            {
                                "task_description": case.prompt,
                                "submission_1": case.expected,
                                "submission_2": answer,
                            },
                        )
                        good += consistent(await judge(text))
                    score = good / len(answers)
                    results.append(
                        TestResult(
                            agent_ref,
                            label,
                            test.type,
                            round(score, 4),
                            runs,
                            score >= threshold,
                            {"answers": answers, "expected": case.expected},
                        )
                    )
            finally:
                await provider.close()
        else:
            results.append(
                TestResult(agent_ref, name, test.type, None, 0, True, {"skipped": "not run yet"})
            )
    return results


def junit_xml(results: list[TestResult], threshold: float) -> str:
    from xml.sax.saxutils import escape, quoteattr

    failures = sum(1 for r in results if not r.passed)
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<testsuite name="quarry agent tests" tests="{len(results)}" failures="{failures}">',
    ]
    for r in results:
        head = f"  <testcase classname={quoteattr(r.agent)} name={quoteattr(r.name)}"
        if r.score is None:
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
