"""Workspaces, revisions, definitions and revision files: the compiled read model.

Definition responses carry strong ETags and ``X-Quarry-Revision``; a matching
``If-None-Match`` answers ``304`` without a body. ``?revision=`` pins any stored
revision, current or not.
"""

from __future__ import annotations

import mimetypes
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from quarry.api.deps import services, tenant_id
from quarry.api.fastpath import document_headers
from quarry.api.fleet.cursors import decode_name_cursor, encode_name_cursor
from quarry.catalog.reader import Document
from quarry.store import workspaces as wq
from quarry.store.workspaces import WorkspaceRow

router = APIRouter(prefix="/api/v1/workspaces", tags=["workspaces"])

RevisionParam = Annotated[
    str | None,
    Query(
        pattern=r"^[0-9a-f]{8,64}$",
        description="Pin a stored revision instead of the current one.",
    ),
]
KIND_PATTERN = r"^(config|workflow|app|agent|agentic|view|topic)$"
JSON = "application/json"


def _document(request: Request, doc: Document, revision_id: str) -> Response:
    headers = {k.decode(): v.decode() for k, v in document_headers(doc, revision_id)}
    if request.headers.get("if-none-match") == doc.etag:
        return Response(status_code=304, headers=headers)
    return Response(doc.body, media_type=JSON, headers=headers)


async def _workspace(request: Request, name: str) -> WorkspaceRow:
    catalog = services(request).catalog
    tenant = tenant_id(request)
    cached = catalog.peek_workspace(tenant, name)
    if cached is not None:
        return cached
    return await run_in_threadpool(catalog.workspace, tenant, name)


async def _revision(request: Request, ws: WorkspaceRow, pinned: str | None) -> str:
    catalog = services(request).catalog
    known = catalog.peek_revision(ws, pinned)
    if known is not None:
        return known
    return await run_in_threadpool(catalog.resolve, ws, pinned)


def _workspace_json(ws: WorkspaceRow) -> dict[str, Any]:
    return {
        "name": ws.name,
        "source_kind": ws.source_kind,
        "default_branch": ws.default_branch,
        "current_revision_id": ws.current_revision_id,
        "updated_at": ws.updated_at.isoformat(),
    }


LIST_LIMIT_DEFAULT = 500
LIST_LIMIT_MAX = 1000


@router.get("")
async def list_workspaces(
    request: Request,
    limit: Annotated[
        int,
        Query(
            ge=1,
            le=LIST_LIMIT_MAX,
            description=f"Workspaces per page (default {LIST_LIMIT_DEFAULT}, at most "
            f"{LIST_LIMIT_MAX}).",
        ),
    ] = LIST_LIMIT_DEFAULT,
    cursor: Annotated[
        str | None,
        Query(max_length=1000, description="The `next_cursor` of the previous page."),
    ] = None,
) -> dict[str, Any]:
    """The tenant's workspaces by name, a keyset page at a time: ``next_cursor`` is
    set when more follow (pass it as ``?cursor=``) and ``null`` on the last page. A
    client that ignores it sees the first ``LIST_LIMIT_DEFAULT`` workspaces, i.e.
    every workspace of a tenant with no more than that (docs/api.md)."""
    svc = services(request)
    after = decode_name_cursor(cursor) if cursor is not None else None
    tenant = tenant_id(request)

    def page() -> list[WorkspaceRow]:
        # A listing, polled: may lag by the read replica's replay lag
        # (QUARRY_DATABASE_READ_URL); GET /{workspace} reads the primary.
        with svc.replica_read() as conn:
            return wq.list_workspaces(conn, tenant, limit=limit + 1, after=after)

    rows = await run_in_threadpool(page)
    more = len(rows) > limit
    rows = rows[:limit]
    return {
        "workspaces": [_workspace_json(ws) for ws in rows],
        "next_cursor": encode_name_cursor(rows[-1].name) if more else None,
    }


@router.get("/{workspace}")
async def get_workspace(request: Request, workspace: str) -> dict[str, Any]:
    catalog = services(request).catalog
    ws = await run_in_threadpool(catalog.workspace, tenant_id(request), workspace, fresh=True)
    return _workspace_json(ws)


@router.get("/{workspace}/revisions")
async def list_revisions(
    request: Request, workspace: str, limit: Annotated[int, Query(ge=1, le=500)] = 50
) -> dict[str, Any]:
    catalog = services(request).catalog
    ws = await _workspace(request, workspace)
    rows = await run_in_threadpool(catalog.list_revisions, ws, limit)
    return {
        "current_revision_id": ws.current_revision_id,
        "revisions": [
            {
                "revision_id": r.revision_id,
                "git_commit": r.git_commit,
                "git_branch": r.git_branch,
                "definition_count": r.definition_count,
                "created_at": r.created_at.isoformat(),
            }
            for r in rows
        ],
    }


@router.get("/{workspace}/revision")
async def get_revision(
    request: Request, workspace: str, revision: RevisionParam = None
) -> Response:
    """The current revision (or the pinned one) with its git provenance."""
    catalog = services(request).catalog
    ws = await _workspace(request, workspace)
    rev = await _revision(request, ws, revision)
    doc = await run_in_threadpool(catalog.revision, ws, rev)
    return _document(request, doc, rev)


@router.get("/{workspace}/definitions")
async def list_definitions(
    request: Request,
    workspace: str,
    kind: Annotated[str | None, Query(pattern=KIND_PATTERN)] = None,
    revision: RevisionParam = None,
) -> Response:
    catalog = services(request).catalog
    ws = await _workspace(request, workspace)
    rev = await _revision(request, ws, revision)
    doc = await run_in_threadpool(catalog.definitions, ws, rev, kind)
    return _document(request, doc, rev)


@router.get("/{workspace}/definitions/{kind}/{name:path}")
async def get_definition(
    request: Request,
    workspace: str,
    kind: Annotated[str, Path(pattern=KIND_PATTERN)],
    name: str,
    revision: RevisionParam = None,
) -> Response:
    catalog = services(request).catalog
    ws = await _workspace(request, workspace)
    rev = await _revision(request, ws, revision)
    doc = catalog.peek_definition(ws, rev, kind, name)
    if doc is None:
        doc = await run_in_threadpool(catalog.definition, ws, rev, kind, name)
    return _document(request, doc, rev)


@router.get("/{workspace}/revision/files/{path:path}")
async def get_revision_file(
    request: Request, workspace: str, path: str, revision: RevisionParam = None
) -> Response:
    """A SQL or data file of a revision, served from the object store."""
    catalog = services(request).catalog
    ws = await _workspace(request, workspace)
    rev = await _revision(request, ws, revision)
    row, data = await run_in_threadpool(catalog.file, ws, rev, path)
    media = "text/plain; charset=utf-8" if row.role == "sql" else None
    media = media or mimetypes.guess_type(path)[0] or "application/octet-stream"
    etag = f'"{row.blob_hash[:32]}"'
    headers = {"ETag": etag, "X-Quarry-Revision": rev}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(data, media_type=media, headers=headers)
