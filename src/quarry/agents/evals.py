"""Agent tests as code (an agent's ``tests:``, run by ``quarry test``).

* ``consistency`` (``n``, ``task_description``): the question asked ``n`` times; the
  score is the share of answer pairs the judge finds consistent
  (:mod:`quarry.agents.consistency`).
* ``test_case`` (``cases`` of ``prompt``/``expected``, ``runs``): each case asked
  ``runs`` times; the score is the share of answers the judge finds consistent with
  the expected one (the judge is ``judge_model`` or the agent's model).
  A case with ``expected_sql`` is scored by SQL results instead: a run is correct
  when the result of its last successful ``execute_sql`` equals the expected query's
  (:mod:`quarry.agents.evals_sql`); no judge is asked.
* ``custom`` (a dataset of questions and reference answers, Oxy's format): each
  question asked once, scored by the test's ``metrics`` (:mod:`quarry.agents.evals_custom`).

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
from quarry.agents.evals_custom import (
    DatasetError,
    Output,
    Record,
    agent_outputs,
    workflow_outputs,
)
from quarry.agents.evals_sql import (
    ExpectedSqlFailed,
    SqlVerdict,
    agent_database,
    check_answer,
    expected_result,
    last_executed_sql,
)
from quarry.agents.providers.base import ModelNotConfigured
from quarry.agents.providers.configured import make_provider
from quarry.agents.service import ask_agent, load_agent
from quarry.definitions.models.evals import CaseEval, ConsistencyEval, CustomEval, EvalCase
from quarry.runtime.connectors.registry import Connections
from quarry.runtime.engine.templating import render_text
from quarry.runtime.source import RevisionSource

Progress = Callable[[str], None]
ReadFile = Callable[[str], bytes]
"""A workspace file by its path from the root (a ``custom`` test's dataset)."""


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


@dataclass(frozen=True)
class Turn:
    answer: str
    """Empty when the turn ended without an answer."""
    called: set[str]
    """The names of the tools the turn called."""
    events: list[dict[str, Any]]


async def _turns(
    source: RevisionSource,
    connections: Connections,
    agent: str,
    prompt: str,
    n: int,
    concurrency: int,
) -> list[Turn]:
    """``n`` turns answering ``prompt``, ``concurrency`` at a time."""
    gate = asyncio.Semaphore(max(1, concurrency))

    async def one() -> Turn:
        events: list[dict[str, Any]] = []
        async with gate:
            result = await ask_agent(
                source, connections, agent, prompt, stream=False, on_event=events.append
            )
        called = {call.name for m in result.messages for call in m.tool_calls}
        return Turn(result.answer if result.status == "answered" else "", called, events)

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
    return [turn.answer for turn in turns]


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
    finds consistent with ``expected`` (or, with ``expected_sql``, whose SQL result
    equals the expected query's) — and, when the case names a ``tool``, whose turn
    called that tool (a deterministic check Oxy's schema has and does not run yet)."""
    agent = load_agent(source, agent_ref)
    provider = make_provider(source.config, judge_model or agent.model, connections.secrets)
    judge = judge_with(provider)
    results: list[TestResult] = []
    try:
        for case_index, case in enumerate(cases):
            name = f"{label} case {case.name or case_index}"
            expected_table = None
            if case.expected_sql is not None:
                database = agent_database(getattr(agent, "tools", ()))
                if database is None:
                    results.append(
                        _error(
                            agent_ref,
                            name,
                            kind,
                            "expected_sql needs an agent with an execute_sql tool (its database)",
                        )
                    )
                    continue
                try:
                    expected_table = await expected_result(connections, database, case.expected_sql)
                except ExpectedSqlFailed as exc:
                    results.append(_error(agent_ref, name, kind, str(exc)))
                    continue
            progress(f"{name}: asking {max(1, runs)} times")
            turns = await _turns(
                source, connections, agent_ref, case.prompt, max(1, runs), concurrency
            )
            good = 0
            without_tool = 0
            verdicts: list[SqlVerdict] = []
            for turn in turns:
                if expected_table is not None:
                    verdict = await check_answer(
                        connections, last_executed_sql(turn.events), *expected_table
                    )
                    verdicts.append(verdict)
                if case.tool is not None and case.tool not in turn.called:
                    without_tool += 1
                    continue
                if expected_table is not None:
                    good += verdicts[-1].equal
                    continue
                text = render_text(
                    CONSISTENCY_PROMPT,
                    {
                        "task_description": case.prompt,
                        "submission_1": case.expected,
                        "submission_2": turn.answer,
                    },
                )
                good += consistent(await judge(text))
            score = good / len(turns)
            detail: dict[str, Any] = {
                "answers": [turn.answer for turn in turns],
                "expected": case.expected,
            }
            if case.expected_sql is not None:
                detail["expected_sql"] = case.expected_sql
                detail["sql_equal"] = sum(v.equal for v in verdicts)
                detail["sql_results"] = [v.to_json() for v in verdicts]
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


def _error(target: str, name: str, kind: str, message: str) -> TestResult:
    return TestResult(target, name, kind, None, 0, False, {"error": message})


def _pairwise(judge: Callable[[str], Awaitable[str]]) -> Judge:
    async def verdict(_i: int, _j: int, text: str) -> str:
        return await judge(text)

    return verdict


async def run_custom(
    source: RevisionSource,
    connections: Connections,
    target: str,
    name: str,
    test: CustomEval,
    threshold: float,
    read_file: ReadFile | None,
    progress: Progress,
    outputs_of: Callable[[list[Record]], Awaitable[list[Output]]],
) -> list[TestResult]:
    """A ``custom`` test: one result per metric (``<name> <metric>``), or one error
    when the dataset cannot be read."""
    from quarry.agents.evals_custom import metrics_of, parse_dataset, score_metric

    path = test.dataset.strip().removeprefix("./")
    try:
        data = (read_file or source.file_bytes)(path)
    except Exception as exc:  # missing file: NotFound / OSError, with its own message
        return [_error(target, name, test.type, f"dataset {test.dataset!r}: {exc}")]
    try:
        records = parse_dataset(test.dataset, data)
    except DatasetError as exc:
        return [_error(target, name, test.type, str(exc))]
    progress(f"{name}: {len(records)} records from {test.dataset}")
    outputs = await outputs_of(records)
    errors = [o.error for o in outputs if o.error is not None]
    results = []
    for metric in metrics_of(test):
        scored = await score_metric(source, connections, metric, records, outputs, test.concurrency)
        score = round(scored.score, 4)
        results.append(
            TestResult(
                target,
                f"{name} {scored.kind}",
                test.type,
                score,
                len(records),
                score >= threshold,
                {
                    "dataset": test.dataset,
                    "metric": scored.kind,
                    "records": scored.records,
                    "errors": errors,
                },
            )
        )
    return results


async def run_agent_tests(
    source: RevisionSource,
    connections: Connections,
    agent_ref: str,
    threshold: float,
    progress: Progress = lambda _line: None,
    read_file: ReadFile | None = None,
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
        elif isinstance(test, CustomEval):

            async def asked(records: list[Record], test: CustomEval = test) -> list[Output]:
                return await agent_outputs(source, connections, agent_ref, records, test)

            results += await run_custom(
                source, connections, agent_ref, name, test, threshold, read_file, progress, asked
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
            said = f"score {r.score} under the threshold {threshold}"
            if "sql_equal" in r.detail:
                said += f"; SQL results equal in {r.detail['sql_equal']} of {r.runs} runs"
                reasons = {v["reason"] for v in r.detail["sql_results"] if not v["equal"]}
                said += "".join(f"; {reason}" for reason in sorted(reasons))
            message = escape(said)
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
    read_file: ReadFile | None = None,
) -> list[TestResult]:
    from quarry.runtime.engine.journal import MemoryJournal
    from quarry.runtime.engine.runner import resolve_workflow, run_workflow

    name, config = resolve_workflow(source, workflow)
    results: list[TestResult] = []
    for index, test in enumerate(config.tests):
        label = f"{workflow}#{index} {test.type}"
        if isinstance(test, CustomEval):
            wanted_ref = test.task_ref or (config.tasks[-1].name if config.tasks else None)

            def with_vars(variables: dict[str, Any], task: str | None = wanted_ref) -> str:
                run = run_workflow(
                    source, name, variables, connections=connections, journal=MemoryJournal()
                )
                output = run.outputs.get(task) if task else None
                return "" if output is None else _text(output)

            async def ran(records: list[Record], test: CustomEval = test) -> list[Output]:
                return await asyncio.to_thread(workflow_outputs, with_vars, records, test)

            results += await run_custom(
                source, connections, workflow, label, test, threshold, read_file, progress, ran
            )
            continue
        if not isinstance(test, ConsistencyEval):
            results.append(_error(workflow, label, test.type, "not a workflow test type"))
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
