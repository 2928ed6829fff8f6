"""IdeOnly: the git API of a working copy — status, stage and unstage, diff, log,
commit, branches, pull (fast-forward only) and push.

A refused operation (diverged pull, rejected push, nothing to commit, a switch that
would overwrite edits) is a 409 with a message saying what to do, and it leaves the
working copy as it was. Commits are authored by the caller's identity. A commit or
pull on the default branch compiles and promotes at once (the response says how
that went); a branch switch requests a debounced compile (a draft on a branch).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from quarry.api.deps import AccessRole, principal
from quarry.api.ide.common import factory, require, workspace_of
from quarry.core.errors import CompileFailed
from quarry.factory.git import Identity, WorkingCopyGit
from quarry.factory.paths import check_relpath
from quarry.factory.service import Factory
from quarry.store.workspaces import WorkspaceRow

router = APIRouter(prefix="/api/v1/workspaces/{workspace}/git", tags=["ide: git"])
MAX_PATHS = 10_000  # paths per stage/unstage request (git reads them on stdin)
MAX_COMMIT_PATHS = 1_000  # commit's paths go on git's command line


class CommitBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message: str = Field(min_length=1, max_length=10000)
    paths: list[str] | None = Field(
        None,
        max_length=MAX_COMMIT_PATHS,
        description="Stage these paths and commit only them (other staged changes stay "
        "staged). Default: commit what is staged.",
    )
    everything: bool = Field(
        False, alias="all", description="Stage every change first, then commit (git add -A)."
    )


class PathsBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    paths: list[str] = Field(
        min_length=1,
        max_length=MAX_PATHS,
        description="Workspace-relative files or folders (a folder: everything under it).",
    )


class BranchBody(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(min_length=1, max_length=200)
    start: str | None = Field(None, alias="from", max_length=200)


class SwitchBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    branch: str = Field(min_length=1, max_length=200)


def _compile_json(fac: Factory, ws: WorkspaceRow) -> dict[str, Any]:
    """Compile now and describe it; a failed compile is reported, not raised: the git
    operation itself succeeded."""
    try:
        result = fac.compile_now(ws)
    except CompileFailed as exc:
        return {
            "state": "failed",
            "message": exc.message,
            "problems": [p.__dict__ for p in exc.problems],
        }
    return {
        "state": "succeeded",
        "revision_id": result.revision_id,
        "promoted": result.promoted,
        "current": fac.workspace(ws.tenant_id, ws.name).current_revision_id == result.revision_id,
    }


async def _in_thread(request: Request, workspace: str, role: AccessRole, fn: Any) -> Any:
    who = require(request, role) if role > AccessRole.VIEWER else principal(request)
    fac = factory(request)

    def run() -> Any:
        ws = workspace_of(request, workspace, who)
        return fn(fac, ws, who)

    return await run_in_threadpool(run)


def _status_json(ws: WorkspaceRow, changes: dict[str, Any]) -> dict[str, Any]:
    return {"default_branch": ws.default_branch, **changes}


async def _change_index(
    request: Request,
    workspace: str,
    change: Callable[[WorkingCopyGit, list[str]], None],
    paths: list[str],
) -> dict[str, Any]:
    """Stage and unstage differ only in the git operation: both run it under the
    workspace lock (an editor's right) and answer with the status it leaves."""

    def run(fac: Factory, ws: WorkspaceRow, _who: Any) -> dict[str, Any]:
        with fac.lock(ws):
            wc = fac.git(ws)
            change(wc, paths)
            return _status_json(ws, wc.changes())

    result: dict[str, Any] = await _in_thread(request, workspace, AccessRole.EDITOR, run)
    return result


@router.get("/status")
async def status(request: Request, workspace: str) -> dict[str, Any]:
    """Branch, head, and the changes: ``files`` (each with its ``index`` and
    ``worktree`` code) and the same split as ``staged`` and ``unstaged``."""

    def run(fac: Factory, ws: WorkspaceRow, _who: Any) -> dict[str, Any]:
        return _status_json(ws, fac.git(ws).changes())

    result: dict[str, Any] = await _in_thread(request, workspace, AccessRole.VIEWER, run)
    return result


@router.post("/stage")
async def stage(request: Request, workspace: str, body: PathsBody) -> dict[str, Any]:
    """Stage paths (``git add -A``: new, changed and deleted files); the answer is the
    new status. Every path is checked before anything is staged: one outside the
    workspace, through a symbolic link or matching nothing is a 400 naming it."""

    return await _change_index(request, workspace, WorkingCopyGit.stage, body.paths)


@router.post("/unstage")
async def unstage(request: Request, workspace: str, body: PathsBody) -> dict[str, Any]:
    """Unstage paths (``git restore --staged``): the files keep their edits, which
    show as unstaged changes again; the answer is the new status."""

    return await _change_index(request, workspace, WorkingCopyGit.unstage, body.paths)


@router.get("/diff")
async def diff(
    request: Request,
    workspace: str,
    path: Annotated[str | None, Query()] = None,
    staged: bool | None = None,
) -> Response:
    """A unified diff: without ``staged``, the working copy against HEAD (untracked
    files included); ``staged=true`` what is staged (index against HEAD);
    ``staged=false`` what is not staged yet (working copy against the index)."""
    rel = check_relpath(path) if path else None

    def run(fac: Factory, ws: WorkspaceRow, _who: Any) -> str:
        return fac.git(ws).diff(rel, staged=staged)

    text: str = await _in_thread(request, workspace, AccessRole.VIEWER, run)
    return Response(text, media_type="text/x-diff; charset=utf-8")


@router.get("/log")
async def log(
    request: Request,
    workspace: str,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    branch: Annotated[str | None, Query(max_length=200)] = None,
) -> dict[str, Any]:
    def run(fac: Factory, ws: WorkspaceRow, _who: Any) -> dict[str, Any]:
        return {"commits": fac.git(ws).log(limit, branch)}

    result: dict[str, Any] = await _in_thread(request, workspace, AccessRole.VIEWER, run)
    return result


@router.post("/commit")
async def commit(request: Request, workspace: str, body: CommitBody) -> dict[str, Any]:
    """Commit what is staged, as the caller. ``paths`` (kept from before the stage
    route): stage those and commit only them; ``all``: stage every change first.
    Nothing to commit is a 409 saying how to stage."""
    paths = [check_relpath(p) for p in body.paths] if body.paths else None

    def run(fac: Factory, ws: WorkspaceRow, who: Any) -> dict[str, Any]:
        with fac.lock(ws):
            wc = fac.git(ws)
            identity = Identity(who.name, who.email)
            sha = wc.commit(body.message, identity, paths, everything=body.everything)
            branch = wc.branch()
            return {"commit": sha, "branch": branch, "compile": _compile_json(fac, ws)}

    result: dict[str, Any] = await _in_thread(request, workspace, AccessRole.EDITOR, run)
    return result


@router.get("/branches")
async def branches(request: Request, workspace: str) -> dict[str, Any]:
    def run(fac: Factory, ws: WorkspaceRow, _who: Any) -> dict[str, Any]:
        return {"default_branch": ws.default_branch, "branches": fac.git(ws).branches()}

    result: dict[str, Any] = await _in_thread(request, workspace, AccessRole.VIEWER, run)
    return result


@router.post("/branches", status_code=201)
async def create_branch(request: Request, workspace: str, body: BranchBody) -> dict[str, Any]:
    def run(fac: Factory, ws: WorkspaceRow, _who: Any) -> dict[str, Any]:
        with fac.lock(ws):
            fac.git(ws).create_branch(body.name, body.start)
        return {"name": body.name}

    result: dict[str, Any] = await _in_thread(request, workspace, AccessRole.EDITOR, run)
    return result


@router.delete("/branches/{name:path}")
async def delete_branch(
    request: Request, workspace: str, name: str, force: bool = False
) -> dict[str, Any]:
    def run(fac: Factory, ws: WorkspaceRow, _who: Any) -> dict[str, Any]:
        protected = {ws.default_branch} if ws.default_branch else set()
        with fac.lock(ws):
            fac.git(ws).delete_branch(name, force=force, protected=protected)
        return {"name": name, "deleted": True}

    result: dict[str, Any] = await _in_thread(request, workspace, AccessRole.EDITOR, run)
    return result


@router.post("/switch")
async def switch(request: Request, workspace: str, body: SwitchBody) -> dict[str, Any]:
    def run(fac: Factory, ws: WorkspaceRow, _who: Any) -> dict[str, Any]:
        with fac.lock(ws):
            wc = fac.git(ws)
            wc.switch(body.branch)
            head = wc.head()
        fac.request_compile(ws)
        return {"branch": body.branch, "head": head, "compile": "pending"}

    result: dict[str, Any] = await _in_thread(request, workspace, AccessRole.EDITOR, run)
    return result


@router.post("/pull")
async def pull(request: Request, workspace: str) -> dict[str, Any]:
    """Fast-forward the current branch to the origin's; 409 if it cannot."""

    def run(fac: Factory, ws: WorkspaceRow, _who: Any) -> dict[str, Any]:
        with fac.lock(ws):
            before, after = fac.git(ws).pull_ff()
            body: dict[str, Any] = {"before": before, "after": after, "updated": before != after}
            body["compile"] = _compile_json(fac, ws) if before != after else None
            return body

    result: dict[str, Any] = await _in_thread(request, workspace, AccessRole.EDITOR, run)
    return result


@router.post("/push")
async def push(request: Request, workspace: str) -> dict[str, Any]:
    """Push the current branch to the origin (never forced); 409 when rejected."""

    def run(fac: Factory, ws: WorkspaceRow, _who: Any) -> dict[str, Any]:
        with fac.lock(ws):
            wc = fac.git(ws)
            sha = wc.push()
            return {"branch": wc.branch(), "commit": sha}

    result: dict[str, Any] = await _in_thread(request, workspace, AccessRole.EDITOR, run)
    return result
