"""FleetOk: the outcome of the Factory's latest compile of each branch of a workspace.

Read from the database (``compile_status``), so any replica answers while the
Factory is busy or down: an editor sees whether their change is live, is a draft on
a branch, is still compiling, or failed — with every problem as file:line:col.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from quarry.api.deps import services, tenant_id
from quarry.catalog.compile_status import compile_status as compile_status_of

router = APIRouter(tags=["workspaces"])


@router.get("/api/v1/workspaces/{workspace}/compile/status")
async def compile_status(request: Request, workspace: str) -> dict[str, Any]:
    svc = services(request)
    tenant = tenant_id(request)
    return await run_in_threadpool(compile_status_of, svc.catalog, svc.engine, tenant, workspace)
