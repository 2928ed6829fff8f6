"""A branch's results against the base's (regression = score dropped or pass to
fail), and Oxy's dataset records read as Oxy reads them."""

from __future__ import annotations

import pytest

from quarry.agents.eval_compare import compare
from quarry.agents.evals_custom import DatasetError, parse_dataset, recall
from quarry.store.eval_results import EvalResultRow


def _r(score: float | None, passed: bool) -> EvalResultRow:
    return EvalResultRow("t", "a", "test_case", score, passed, 1)


@pytest.mark.parametrize(
    ("base", "branch", "status", "regression"),
    [
        (_r(0.9, True), _r(0.5, False), "regressed", True),
        (_r(0.9, True), _r(0.85, True), "regressed", True),
        (_r(0.5, False), _r(0.9, True), "improved", False),
        (_r(1.0, True), _r(1.0, True), "same", False),
        (_r(None, True), _r(None, False), "regressed", True),
        (None, _r(0.1, False), "new", False),
        (_r(0.1, False), None, "removed", False),
    ],
    ids=["fails-now", "dropped", "improved", "same", "error-now", "new", "removed"],
)
def test_status_of_a_test(
    base: EvalResultRow | None, branch: EvalResultRow | None, status: str, regression: bool
) -> None:
    (delta,) = compare({"t": base} if base else {}, {"t": branch} if branch else {})
    assert (delta.status, delta.regression) == (status, regression)


def test_dataset_records_need_oxys_three_fields() -> None:
    good = b"- {query: q, response: r, relevant_contexts: [c]}\n"
    assert parse_dataset("d.yml", good)[0].relevant_contexts == ["c"]
    with pytest.raises(DatasetError, match=r"d.yml: record 1 has no 'relevant_contexts'"):
        parse_dataset("d.yml", b"- {query: q, response: r}\n")
    with pytest.raises(DatasetError, match="a dataset is a list"):
        parse_dataset("d.yml", b"query: q\n")


def test_recall_is_the_best_match_per_reference_context() -> None:
    assert recall(["docs/a.md", "docs/b.md"], ["docs/a.md"]) == 1.0
    assert recall([], ["docs/a.md"]) == 0.0
    assert recall(["x"], []) is None
