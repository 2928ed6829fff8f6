"""A branch's ``quarry test`` results against the default branch's, per test.

Results are stored per run (:mod:`quarry.store.eval_results`); each side is every
test's most recent result on its branch. A test **regressed** when its score dropped
(by more than :data:`TOLERANCE`) or it passed on the base and fails on the branch; a
test only on one side is ``new`` or ``removed`` and is no regression.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from quarry.store import eval_results as eq
from quarry.store.db import Engine
from quarry.store.eval_results import EvalResultRow

TOLERANCE = 1e-9


@dataclass(frozen=True)
class TestDelta:
    test: str
    target: str
    base: EvalResultRow | None
    branch: EvalResultRow | None

    @property
    def delta(self) -> float | None:
        if self.base is None or self.branch is None:
            return None
        if self.base.score is None or self.branch.score is None:
            return None
        return round(self.branch.score - self.base.score, 4)

    @property
    def regression(self) -> bool:
        if self.base is None or self.branch is None:
            return False
        dropped = self.delta is not None and self.delta < -TOLERANCE
        return dropped or (self.base.passed and not self.branch.passed)

    @property
    def status(self) -> str:
        if self.base is None:
            return "new"
        if self.branch is None:
            return "removed"
        if self.regression:
            return "regressed"
        delta = self.delta
        if (delta is not None and delta > TOLERANCE) or (
            self.branch.passed and not self.base.passed
        ):
            return "improved"
        return "same"

    def to_json(self) -> dict[str, Any]:
        def side(row: EvalResultRow | None) -> dict[str, Any] | None:
            if row is None:
                return None
            return {
                "score": row.score,
                "passed": row.passed,
                "runs": row.runs,
                "git_commit": row.git_commit,
                "run_at": row.run_at.isoformat() if row.run_at else None,
            }

        return {
            "test": self.test,
            "target": self.target,
            "base": side(self.base),
            "branch": side(self.branch),
            "delta": self.delta,
            "status": self.status,
            "regression": self.regression,
        }


def compare(base: dict[str, EvalResultRow], branch: dict[str, EvalResultRow]) -> list[TestDelta]:
    names = sorted(set(base) | set(branch))
    return [
        TestDelta(
            name,
            (branch.get(name) or base[name]).target,
            base.get(name),
            branch.get(name),
        )
        for name in names
    ]


def compare_branches(
    engine: Engine, tenant_id: str, workspace_id: str, branch: str, base: str
) -> list[TestDelta]:
    with engine.connect() as conn:
        on_base = eq.latest_results(conn, tenant_id, workspace_id, base)
        on_branch = eq.latest_results(conn, tenant_id, workspace_id, branch)
    return compare(on_base, on_branch)


def comparison_json(branch: str, base: str, deltas: list[TestDelta]) -> dict[str, Any]:
    return {
        "branch": branch,
        "base": base,
        "regressions": sum(d.regression for d in deltas),
        "tests": [d.to_json() for d in deltas],
    }
