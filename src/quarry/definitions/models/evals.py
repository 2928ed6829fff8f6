"""``tests:`` blocks of workflows and agents.

``quarry test`` runs them (``quarry.agents.evals``); typos inside them are caught
at compile time.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from quarry.definitions.models.common import Lenient, NonNegativeInt, Strict


class DistanceMethod(Lenient):
    distance: Literal["Levenshtein"]


class ContextRecallMetric(Lenient):
    type: Literal["context_recall"]
    distance: DistanceMethod | None = None
    threshold: float | None = None


class SimilarityMetric(Lenient):
    type: Literal["similarity"]
    model_ref: str | None = None
    prompt: str | None = None
    scores: dict[str, float] | None = None


class CorrectnessMetric(Lenient):
    type: Literal["correctness"]
    model_ref: str | None = None
    prompt: str | None = None


Metric = Annotated[
    ContextRecallMetric | SimilarityMetric | CorrectnessMetric, Field(discriminator="type")
]


class EvalCase(Strict):
    """One prompt and its expected answer (``TestCase`` in Oxy's schema, read with
    ``deny_unknown_fields``: an unknown key is an error)."""

    prompt: str
    expected: str
    name: str | None = None
    tags: list[str] = []
    tool: str | None = None
    expected_sql: str | None = None
    """Quarry's addition (Oxy has no such field): a query whose result the answer's
    last successful ``execute_sql`` result must equal (``quarry.agents.evals_sql``)."""


class _EvalBase(Lenient):
    concurrency: NonNegativeInt = 10
    metrics: list[Metric] | None = None
    task_ref: str | None = None


class ConsistencyEval(_EvalBase):
    type: Literal["consistency"]
    n: NonNegativeInt = 10
    task_description: str | None = None


class CustomEval(_EvalBase):
    type: Literal["custom"]
    dataset: str
    is_context_id: bool = False
    workflow_variable_name: str | None = None


class CaseEval(_EvalBase):
    type: Literal["test_case"]
    cases: list[EvalCase]
    runs: NonNegativeInt
    judge_model: str | None = None


EvalConfig = Annotated[ConsistencyEval | CustomEval | CaseEval, Field(discriminator="type")]
