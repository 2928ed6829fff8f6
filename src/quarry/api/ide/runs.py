"""IdeOnly: draft runs — run the working copy as it is, uncommitted edits included.

The Factory compiles the working copy to a draft revision (stored, never promoted)
and executes the run itself, on a background thread. Files broken elsewhere in the
workspace do not stop a draft run whose target and what it references compile:
they are left out of the draft revision and listed as ``warnings``. Follow it like any run
(``GET /api/v1/runs/{id}/events``, FleetOk: events and results are in the database
and the object store, so any replica can stream them).
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from quarry.api.deps import AccessRole
from quarry.api.ide.common import factory, require, workspace_of
from quarry.core.errors import Problem

router = APIRouter(tags=["ide: runs"])


class DraftRunCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["workflow", "app"] = "workflow"
    name: str = Field(min_length=1, max_length=500)
    variables: dict[str, Any] = Field(default_factory=dict)


@router.post("/api/v1/workspaces/{workspace}/draft-runs", status_code=202)
async def create_draft_run(
    request: Request, workspace: str, body: DraftRunCreate
) -> dict[str, Any]:
    who = require(request, AccessRole.EDITOR)
    fac = factory(request)
    request_id = request.headers.get("x-request-id")

    def run() -> dict[str, Any]:
        ws = workspace_of(request, workspace, who)
        elsewhere: list[Problem] = []  # broken files the target does not need
        row = fac.start_draft_run(
            ws, body.kind, body.name, body.variables, request_id, warnings=elsewhere
        )
        return {
            "id": row.id,
            "state": row.state,
            "kind": row.target_kind,
            "name": row.target_name,
            "revision_id": row.revision_id,
            "draft": True,
            "origin": row.origin,
            "events_url": f"/api/v1/runs/{row.id}/events",
            "warnings": [{**p.__dict__, "text": str(p)} for p in elsewhere],
        }

    result: dict[str, Any] = await run_in_threadpool(run)
    return result
