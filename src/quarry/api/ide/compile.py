"""IdeOnly: compile a workspace's working copy on the Factory and promote it."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from quarry.api.deps import services, tenant_id
from quarry.core.errors import Conflict
from quarry.factory.local import compile_local

router = APIRouter(tags=["ide"])


@router.post("/api/v1/workspaces/{workspace}/compile")
async def compile_workspace(request: Request, workspace: str) -> dict[str, Any]:
    """Compile the working copy now; 422 with every problem (file:line:col) when it
    does not compile, in which case nothing is promoted."""
    svc = services(request)
    tenant = tenant_id(request)
    ws = await run_in_threadpool(svc.catalog.workspace, tenant, workspace, fresh=True)
    if ws.source_kind != "path":
        raise Conflict(f"workspace {workspace!r} has no working copy on this Factory")
    root = Path(ws.source)
    result = await run_in_threadpool(
        compile_local,
        svc.engine,
        svc.store,
        tenant,
        root,
        ws.name,
        data_dir=svc.settings.data_dir,
    )
    svc.catalog.forget_workspace(tenant, workspace)
    body = asdict(result)
    body.pop("problems", None)
    return body
