"""FleetOk: ``quarry test`` results of a branch against the default branch's.

``GET /api/v1/workspaces/{ws}/tests/compare?branch=feature&base=main``: for every
test, the base branch's latest score, the branch's, the delta, and whether it
regressed (score dropped, or pass turned fail), so a review shows what a change did
to the agents (docs/agents.md, "Agent tests"). ``base`` defaults to the workspace's
default branch (``main`` when it names none). Read from the state database by any
replica; the workspace is looked up in the caller's tenant (another tenant's is 404).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from quarry.agents.eval_compare import compare_branches, comparison_json
from quarry.api.deps import principal, services
from quarry.core.errors import BadRequest

router = APIRouter(prefix="/api/v1/workspaces", tags=["agents"])

BranchParam = Annotated[
    str | None, Query(min_length=1, max_length=255, description="The branch (required).")
]
BaseParam = Annotated[
    str | None,
    Query(min_length=1, max_length=255, description="Compared with (default: the default)."),
]


@router.get("/{workspace}/tests/compare")
async def compare_tests(
    request: Request, workspace: str, branch: BranchParam = None, base: BaseParam = None
) -> dict[str, Any]:
    """``branch`` is checked after the workspace is found: another tenant's request
    is a 404 whatever it asks."""
    svc = services(request)
    who = principal(request)

    def answer() -> dict[str, Any]:
        ws = svc.catalog.workspace(who.tenant_id, workspace)
        if branch is None:
            raise BadRequest("the query parameter 'branch' is required", parameter="branch")
        against = base or ws.default_branch or "main"
        deltas = compare_branches(svc.engine, who.tenant_id, ws.id, branch, against)
        return {"workspace": workspace, **comparison_json(branch, against, deltas)}

    return await run_in_threadpool(answer)
