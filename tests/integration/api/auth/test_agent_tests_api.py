"""``GET /api/v1/workspaces/{ws}/tests/compare``: a branch's stored ``quarry test``
results against the base branch's, per test, for the workspace's tenant only (real
server on Postgres, tokens required)."""

from __future__ import annotations

from quarry.store.eval_results import EvalResultRow, record_run
from tests.support.tenancy import ACME, ACME_WS, Deployment


def _record(dep: Deployment, branch: str, commit: str, rows: list[EvalResultRow]) -> None:
    ws = dep.svc.catalog.workspace(ACME, ACME_WS)
    with dep.svc.engine.begin() as conn:
        record_run(
            conn,
            tenant_id=ACME,
            workspace_id=ws.id,
            revision_id=ws.current_revision_id or "r",
            git_commit=commit,
            branch=branch,
            dirty=False,
            threshold=0.8,
            results=rows,
        )


def test_compare_shows_scores_deltas_and_regressions_to_the_tenant_only(
    deployment: Deployment,
) -> None:
    a = "agents/analyst.agent.yml"
    _record(deployment, "main", "c1", [
        EvalResultRow("t.same", a, "test_case", 1.0, True, 3),
        EvalResultRow("t.drop", a, "test_case", 0.9, True, 3),
        EvalResultRow("t.gone", a, "consistency", 1.0, True, 3),
    ])  # fmt: skip
    _record(deployment, "feature", "c2", [
        EvalResultRow("t.same", a, "test_case", 1.0, True, 3),
        EvalResultRow("t.drop", a, "test_case", 0.5, False, 3),
        EvalResultRow("t.new", a, "custom", 0.7, False, 2),
    ])  # fmt: skip
    # a later run of one test on the branch replaces that test's result only
    _record(deployment, "feature", "c3", [EvalResultRow("t.same", a, "test_case", 1.0, True, 3)])
    path = f"/api/v1/workspaces/{ACME_WS}/tests/compare"
    with deployment.client("acme:viewer") as client:
        got = client.get(path, params={"branch": "feature", "base": "main"})
        assert got.status_code == 200, got.text
        body = got.json()
        assert (body["branch"], body["base"], body["regressions"]) == ("feature", "main", 1)
        tests = {t["test"]: t for t in body["tests"]}
        assert tests["t.drop"]["delta"] == -0.4 and tests["t.drop"]["regression"]
        assert tests["t.drop"]["status"] == "regressed"
        assert (
            tests["t.same"]["status"] == "same" and tests["t.same"]["branch"]["git_commit"] == "c3"
        )
        assert tests["t.new"]["status"] == "new" and tests["t.new"]["base"] is None
        assert tests["t.gone"]["status"] == "removed" and not tests["t.gone"]["regression"]
        default = client.get(path, params={"branch": "feature"})  # base: the default branch
        assert default.status_code == 200 and default.json()["base"] == "main"
        missing = client.get(path)  # branch is required
        assert missing.status_code == 400 and "branch" in missing.text
    with deployment.client("globex:admin") as client:
        other = client.get(path, params={"branch": "feature", "base": "main"})
        assert other.status_code == 404 and "t.drop" not in other.text
    with deployment.client(None) as client:
        assert client.get(path, params={"branch": "feature"}).status_code == 401
