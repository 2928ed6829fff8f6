"""IdeOnly: compile a workspace's working copy on the Factory now.

What the compile may promote follows the Factory's rule (``docs/factory.md``): the
default branch promotes, other branches (and, in cloud mode, uncommitted edits)
become draft revisions. 422 with every problem (file:line:col) when it does not
compile, in which case nothing is promoted; the outcome is also recorded for
``GET .../compile/status``.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from quarry.api.deps import AccessRole, services
from quarry.api.ide.common import factory, require, workspace_of

router = APIRouter(tags=["ide"])


@router.post("/api/v1/workspaces/{workspace}/compile")
async def compile_workspace(request: Request, workspace: str) -> dict[str, Any]:
    who = require(request, AccessRole.EDITOR)
    fac = factory(request)

    def run() -> dict[str, Any]:
        ws = workspace_of(request, workspace, who)
        result = fac.compile_now(ws)
        body = asdict(result)
        # A compile that returns has no errors; what remains are its warnings.
        body["warnings"] = body.pop("problems")
        current = fac.workspace(ws.tenant_id, ws.name).current_revision_id
        body["current"] = current == result.revision_id
        return body

    # A compile may outlive its request (a client that gave up): hold the Factory up
    # until it is done (docs/scale-to-zero.md).
    with services(request).holds.hold("compile"):
        result: dict[str, Any] = await run_in_threadpool(run)
    return result
