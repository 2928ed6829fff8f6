"""``type: custom`` tests: a dataset of questions with reference answers, as Oxy runs it.

The dataset is a YAML file (``dataset``: a path from the workspace root) holding a
list of records, Oxy's ``EvalRecord``::

    - query: How many orders did the North region place in 2024?
      response: 1,204 orders.
      relevant_contexts: [docs/data_dictionary.md]   # required by Oxy, may be []

Each record's ``query`` is asked once: of an agent as its prompt, of a workflow as the
variable ``workflow_variable_name``; ``concurrency`` at a time. Each of the test's
``metrics`` (default: one ``similarity``) scores every record, and the metric's score is
the mean over the records — one result per metric, as Oxy reports one line per metric:

* ``similarity``: the judge (``model_ref``, default the first model of ``config.yml``)
  compares the output with ``response`` using ``prompt`` (default: the consistency
  prompt; names ``task_description``, ``submission_1`` = the output, ``submission_2`` =
  the reference); its choice (``Answer: X``, else its last line) is looked up in
  ``scores`` (default ``A: 1, B: 0``; an unknown choice scores 0).
* ``correctness``: the judge reads ``prompt`` (names ``prompt``, ``expected``,
  ``actual``) and ends with ``Verdict: PASS`` (1) or ``FAIL`` (0).
* ``context_recall``: for each reference context, the best ``1 - normalized Levenshtein
  distance`` to a context the turn retrieved (the ``retrieval`` tool's documents: their
  paths with ``is_context_id``, else their text); the record's score is the mean over
  its reference contexts, and it passes over ``threshold`` (default 0.5). A record with
  no reference context is left out of the mean (Oxy scores it NaN).

A turn that ends without an answer (or a workflow run that fails) is listed under
``errors`` and scores 0 on every metric.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml
from rapidfuzz.distance import Levenshtein

from quarry.agents.consistency import CONSISTENCY_PROMPT, judge_with
from quarry.agents.providers.base import ModelNotConfigured
from quarry.agents.providers.configured import make_provider
from quarry.agents.service import ask_agent
from quarry.definitions.models.evals import (
    ContextRecallMetric,
    CorrectnessMetric,
    CustomEval,
    Metric,
    SimilarityMetric,
)
from quarry.runtime.connectors.registry import Connections
from quarry.runtime.engine.templating import render_text
from quarry.runtime.source import RevisionSource

CORRECTNESS_PROMPT = """\
Grade an AI analyst's answer to a business question against the expected answer.

[Question]: {{ prompt }}
[Expected Answer]: {{ expected }}
[Agent's Answer]: {{ actual }}

Find the key facts of the expected answer and check that the agent's answer states
them without contradiction. Wording, formatting and extra correct detail do not
matter; a missing or contradicted key fact does.

Give your reasoning, then end with exactly one line:
Verdict: PASS   (the answer holds the expected facts)
Verdict: FAIL   (it does not)"""

DEFAULT_SCORES = {"A": 1.0, "B": 0.0}
DEFAULT_RECALL_THRESHOLD = 0.5
_ANSWER = re.compile(r"Answer:\s*\**\s*([A-Za-z0-9]+)\b")
_VERDICT = re.compile(r"Verdict:\s*\**\s*(PASS|FAIL)\b", re.IGNORECASE)


class DatasetError(Exception):
    """The dataset cannot be read as Oxy reads it; the message names file and record."""


@dataclass(frozen=True)
class Record:
    query: str
    response: str
    relevant_contexts: list[str]


@dataclass
class Output:
    text: str
    contexts: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass(frozen=True)
class MetricScore:
    kind: str
    score: float
    records: list[dict[str, Any]]


def parse_dataset(path: str, data: bytes) -> list[Record]:
    """The records of a dataset file; DatasetError naming the first bad record."""
    try:
        loaded = yaml.safe_load(data)
    except yaml.YAMLError as exc:
        raise DatasetError(f"{path}: not YAML: {exc}") from None
    if not isinstance(loaded, list):
        raise DatasetError(f"{path}: a dataset is a list of records (query, response, ...)")
    records = []
    for index, item in enumerate(loaded):
        where = f"{path}: record {index + 1}"
        if not isinstance(item, dict):
            raise DatasetError(f"{where} is not a mapping")
        for key in ("query", "response", "relevant_contexts"):
            if key not in item:
                raise DatasetError(f"{where} has no {key!r}")
        contexts = item["relevant_contexts"]
        if not isinstance(contexts, list) or not all(isinstance(c, str) for c in contexts):
            raise DatasetError(f"{where}: relevant_contexts must be a list of strings")
        if not isinstance(item["query"], str) or not isinstance(item["response"], str):
            raise DatasetError(f"{where}: query and response must be strings")
        records.append(Record(item["query"], item["response"], list(contexts)))
    return records


def _retrieved(source: RevisionSource, events: Sequence[dict[str, Any]], as_ids: bool) -> list[str]:
    """The documents the turn's retrieval calls returned: paths, or their text."""
    paths: list[str] = []
    for event in events:
        if event.get("type") == "tool_result" and isinstance(event.get("documents"), list):
            paths += [p for p in event["documents"] if isinstance(p, str) and p not in paths]
    if as_ids:
        return paths
    return [source.file_bytes(p).decode("utf-8", "replace") for p in paths]


async def agent_outputs(
    source: RevisionSource,
    connections: Connections,
    agent: str,
    records: Sequence[Record],
    test: CustomEval,
) -> list[Output]:
    gate = asyncio.Semaphore(max(1, test.concurrency))

    async def one(record: Record) -> Output:
        events: list[dict[str, Any]] = []
        async with gate:
            result = await ask_agent(
                source, connections, agent, record.query, stream=False, on_event=events.append
            )
        contexts = await asyncio.to_thread(_retrieved, source, events, test.is_context_id)
        if result.status != "answered":
            return Output("", contexts, f"{record.query!r}: {result.answer}")
        return Output(result.answer, contexts)

    return list(await asyncio.gather(*(one(r) for r in records)))


def workflow_outputs(
    run_once: Callable[[dict[str, Any]], str], records: Sequence[Record], test: CustomEval
) -> list[Output]:
    outputs = []
    for record in records:
        try:
            text = run_once({test.workflow_variable_name or "": record.query})
        except Exception as exc:  # a failed run is this record's error, not the test's
            outputs.append(Output("", [], f"{record.query!r}: {exc}"))
        else:
            outputs.append(Output(text))
    return outputs


def _choice(text: str) -> str:
    found = _ANSWER.findall(text)
    if found:
        return str(found[-1])
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def recall(retrieved: Sequence[str], reference: Sequence[str]) -> float | None:
    """Mean over the reference contexts of the best similarity to a retrieved one."""
    if not reference:
        return None
    best = [
        max((1.0 - Levenshtein.normalized_distance(r, ref) for r in retrieved), default=0.0)
        for ref in reference
    ]
    return sum(best) / len(best)


async def score_metric(
    source: RevisionSource,
    connections: Connections,
    metric: Metric,
    records: Sequence[Record],
    outputs: Sequence[Output],
    concurrency: int,
) -> MetricScore:
    if isinstance(metric, ContextRecallMetric):
        threshold = (
            DEFAULT_RECALL_THRESHOLD if metric.threshold is None else float(metric.threshold)
        )
        rows: list[dict[str, Any]] = []
        scored: list[float] = []
        for record, output in zip(records, outputs, strict=True):
            value = recall(output.contexts, record.relevant_contexts)
            if value is not None:
                scored.append(value)
            rows.append(
                {
                    "query": record.query,
                    "score": value,
                    "passed": value is not None and value > threshold,
                    "retrieved_contexts": output.contexts,
                    "reference_contexts": record.relevant_contexts,
                }
            )
        return MetricScore(metric.type, sum(scored) / len(scored) if scored else 0.0, rows)
    model = metric.model_ref or (source.config.models[0].name if source.config.models else None)
    if model is None:
        raise ModelNotConfigured(
            f"a {metric.type} metric needs a judge: config.yml defines no models"
        )
    provider = make_provider(source.config, model, connections.secrets)
    judge = judge_with(provider)
    gate = asyncio.Semaphore(max(1, concurrency))

    async def one(record: Record, output: Output) -> dict[str, Any]:
        row: dict[str, Any] = {"query": record.query, "output": output.text}
        if output.error is not None:
            return {**row, "score": 0.0, "error": output.error}
        if isinstance(metric, SimilarityMetric):
            text = render_text(
                metric.prompt or CONSISTENCY_PROMPT,
                {
                    "task_description": record.query,
                    "submission_1": output.text,
                    "submission_2": record.response,
                },
            )
            async with gate:
                verdict = await judge(text)
            choice = _choice(verdict)
            scores = metric.scores if metric.scores is not None else DEFAULT_SCORES
            return {**row, "choice": choice, "score": float(scores.get(choice, 0.0))}
        assert isinstance(metric, CorrectnessMetric)
        text = render_text(
            metric.prompt or CORRECTNESS_PROMPT,
            {"prompt": record.query, "expected": record.response, "actual": output.text},
        )
        async with gate:
            verdict = await judge(text)
        found = _VERDICT.findall(verdict)
        passed = bool(found) and found[-1].upper() == "PASS"
        return {**row, "verdict": "PASS" if passed else "FAIL", "score": float(passed)}

    try:
        rows = list(
            await asyncio.gather(*(one(r, o) for r, o in zip(records, outputs, strict=True)))
        )
    finally:
        await provider.close()
    mean = sum(float(r["score"]) for r in rows) / len(rows) if rows else 0.0
    return MetricScore(metric.type, mean, rows)


def metrics_of(test: CustomEval) -> list[Metric]:
    return list(test.metrics) if test.metrics else [SimilarityMetric(type="similarity")]
