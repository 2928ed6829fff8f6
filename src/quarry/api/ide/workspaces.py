"""IdeOnly: register a cloud workspace (origin URL) and unregister one.

Registering clones the origin into the Factory's workspaces folder and compiles it.
Only origins can be registered over HTTP: a local folder is registered with the CLI
on the Factory's own machine (``quarry workspace add NAME --path DIR``), since
letting a request name a server path would expose the server's disk. Listing is the
FleetOk ``GET /api/v1/workspaces``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from quarry.api.deps import AccessRole
from quarry.api.ide.common import factory, require, workspace_of
from quarry.core.errors import CompileFailed, Conflict, NotFound, QuarryError
from quarry.factory import workspaces as fw

router = APIRouter(tags=["ide: workspaces"])


class WorkspaceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    origin: str = Field(min_length=1, max_length=2000)
    branch: str | None = Field(None, max_length=200, description="Default: the origin's HEAD.")


@router.post("/api/v1/workspaces", status_code=201)
async def register(request: Request, body: WorkspaceCreate) -> dict[str, Any]:
    who = require(request, AccessRole.ADMIN)
    fac = factory(request)

    def run() -> dict[str, Any]:
        try:
            fac.workspace(who.tenant_id, body.name)
        except NotFound:
            pass
        else:
            raise Conflict(f"workspace {body.name!r} already exists; remove it first")
        row = fw.register_origin(
            fac.engine,
            who.tenant_id,
            body.name,
            body.origin,
            branch=body.branch,
            allow_local=fac.settings.git_allow_local_origins,
        )
        compile_body: dict[str, Any]
        try:
            result = fac.compile_now(row)
            compile_body = {"state": "succeeded", "revision_id": result.revision_id}
        except CompileFailed as exc:
            compile_body = {"state": "failed", "message": exc.message}
        except QuarryError as exc:  # the clone failed: keep nothing half-registered
            fw.unregister(fac.engine, row, fac.workspaces_dir)
            raise exc
        ws = fac.workspace(who.tenant_id, body.name)
        return {
            "name": ws.name,
            "source_kind": ws.source_kind,
            "default_branch": ws.default_branch,
            "current_revision_id": ws.current_revision_id,
            "compile": compile_body,
        }

    result: dict[str, Any] = await run_in_threadpool(run)
    return result


@router.delete("/api/v1/workspaces/{workspace}", status_code=204)
async def unregister(request: Request, workspace: str) -> Response:
    who = require(request, AccessRole.ADMIN)
    fac = factory(request)

    def run() -> None:
        ws = workspace_of(request, workspace, who)
        with fac.lock(ws):
            fw.unregister(fac.engine, ws, fac.workspaces_dir)
        fac.catalog.forget_workspace(who.tenant_id, workspace)

    await run_in_threadpool(run)
    return Response(status_code=204)
