"""``quarry test`` results per revision (docs/agents.md, "Agent tests").

Each run of ``quarry test`` is one ``eval_runs`` row — workspace, git commit and
branch of the working copy, the compiled revision, the threshold — with one
``eval_results`` row per test (its score, pass, runs). Reading a branch's results
takes, for each test, its most recent result on that branch, so a run of a subset
(``quarry test agents/x.agent.yml``) updates those tests and keeps the others.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    insert,
    select,
)
from sqlalchemy.engine import Connection

from quarry.core.clock import utcnow
from quarry.store.tables import ID, metadata
from quarry.store.types import UtcDateTime

eval_runs = Table(
    "eval_runs",
    metadata,
    Column("id", ID, primary_key=True),
    Column("tenant_id", ID, ForeignKey("tenants.id"), nullable=False),
    Column("workspace_id", ID, ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False),
    Column("git_commit", String(64), nullable=True),
    Column("branch", String(255), nullable=True),
    Column("revision_id", ID, nullable=False),
    Column("dirty", Boolean, nullable=False),
    Column("threshold", Float, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
)

eval_results = Table(
    "eval_results",
    metadata,
    Column("run_id", ID, ForeignKey("eval_runs.id", ondelete="CASCADE"), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("test", String(1000), nullable=False),
    Column("target", String(500), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("score", Float, nullable=True),
    Column("passed", Boolean, nullable=False),
    Column("runs", Integer, nullable=False),
)

Index(
    "ix_eval_runs_branch",
    eval_runs.c.tenant_id,
    eval_runs.c.workspace_id,
    eval_runs.c.branch,
    eval_runs.c.created_at,
)

RUNS_READ = 200
"""A branch's most recent runs read to find each test's latest result."""


@dataclass(frozen=True)
class EvalResultRow:
    test: str
    target: str
    kind: str
    score: float | None
    passed: bool
    runs: int
    git_commit: str | None = None
    run_at: datetime | None = None


def record_run(
    conn: Connection,
    *,
    tenant_id: str,
    workspace_id: str,
    revision_id: str,
    git_commit: str | None,
    branch: str | None,
    dirty: bool,
    threshold: float,
    results: Sequence[EvalResultRow],
) -> str:
    """Store one run and its results (in the caller's transaction); its id."""
    run_id = uuid.uuid4().hex
    conn.execute(
        insert(eval_runs).values(
            id=run_id,
            tenant_id=tenant_id,
            workspace_id=workspace_id,
            git_commit=git_commit,
            branch=branch,
            revision_id=revision_id,
            dirty=dirty,
            threshold=threshold,
            created_at=utcnow(),
        )
    )
    if results:
        conn.execute(
            insert(eval_results),
            [
                {
                    "run_id": run_id,
                    "seq": seq,
                    "test": r.test,
                    "target": r.target,
                    "kind": r.kind,
                    "score": r.score,
                    "passed": r.passed,
                    "runs": r.runs,
                }
                for seq, r in enumerate(results)
            ],
        )
    return run_id


def latest_results(
    conn: Connection, tenant_id: str, workspace_id: str, branch: str
) -> dict[str, EvalResultRow]:
    """Each test's most recent result on ``branch`` (of its last RUNS_READ runs)."""
    recent = (
        select(eval_runs.c.id, eval_runs.c.git_commit, eval_runs.c.created_at)
        .where(
            eval_runs.c.tenant_id == tenant_id,
            eval_runs.c.workspace_id == workspace_id,
            eval_runs.c.branch == branch,
        )
        .order_by(eval_runs.c.created_at.desc(), eval_runs.c.id)
        .limit(RUNS_READ)
        .subquery()
    )
    rows = conn.execute(
        select(
            eval_results.c.test,
            eval_results.c.target,
            eval_results.c.kind,
            eval_results.c.score,
            eval_results.c.passed,
            eval_results.c.runs,
            recent.c.git_commit,
            recent.c.created_at,
        )
        .join(recent, recent.c.id == eval_results.c.run_id)
        .order_by(recent.c.created_at.desc(), recent.c.id, eval_results.c.seq)
    ).all()
    found: dict[str, EvalResultRow] = {}
    for row in rows:
        if row.test not in found:
            found[row.test] = EvalResultRow(
                row.test,
                row.target,
                row.kind,
                row.score,
                bool(row.passed),
                row.runs,
                row.git_commit,
                row.created_at,
            )
    return found
