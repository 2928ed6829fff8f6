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
from quarry.store import factory_tables as ft

router = APIRouter(tags=["workspaces"])


@router.get("/api/v1/workspaces/{workspace}/compile/status")
async def compile_status(request: Request, workspace: str) -> dict[str, Any]:
    svc = services(request)
    tenant = tenant_id(request)

    def load() -> dict[str, Any]:
        ws = svc.catalog.workspace(tenant, workspace, fresh=True)
        with svc.engine.connect() as conn:
            rows = ft.statuses(conn, ws.id)
        return {
            "workspace": ws.name,
            "default_branch": ws.default_branch,
            "current_revision_id": ws.current_revision_id,
            "branches": [r.to_json() for r in rows],
        }

    return await run_in_threadpool(load)
