"""App pages: an HTML shell whose script fetches the app's data and renders it.

The chosen control values live in the page's query string (``/apps/sales?region=North``),
so a view is shared by its address; the script sends them to the data endpoint, and
to the runs API when nothing is stored for them yet.

The page itself reads the catalog only (the app's title, and that it exists); its
script asks ``/api/v1/workspaces/{ws}/apps/{name}/data`` for the stored result,
starts an app run when none is stored yet, follows the run's events and fetches the
data again. The script, styles and vendored Vega libraries are package files served
under ``/static`` with content-hashed names (no CDN). The page's Content-Security-Policy
is the strict one plus what Vega needs (``quarry.web.layout.DASHBOARD_CSP``).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from quarry.catalog.cache import LruCache
from quarry.core.errors import BadRequest, NotFound
from quarry.runtime.apps.load import find_app_name, load_app
from quarry.runtime.apps.result import humanize
from quarry.runtime.apps.reuse import task_dependencies
from quarry.runtime.services import services_of
from quarry.runtime.source import RevisionSource
from quarry.web.assets import HashedStatic
from quarry.web.layout import DASHBOARD_CSP, render

router = APIRouter(include_in_schema=False)
# What each task of an app reads, per (workspace, revision, app): a revision never changes.
_DEPENDS: LruCache[tuple[str, str, str], dict[str, list[str] | None]] = LruCache(256)


def mount_static(app: FastAPI) -> None:
    """Serve ``quarry/web/static`` at ``/static``, hashed names cached for a year
    (``quarry.web.assets``)."""
    app.mount("/static", HashedStatic(), name="static")


def request_tenant(request: Request) -> str:
    """The tenant the authentication middleware admitted this request for (the web
    layer sits below ``quarry.api`` and reads the principal it left in the scope)."""
    tenant = getattr(request.scope.get("quarry.principal"), "tenant_id", None)
    if not isinstance(tenant, str):
        raise HTTPException(401, "authentication required")
    return tenant


def _workspace_name(request: Request, given: str | None) -> str:
    if given:
        return given
    svc = services_of(request.app.state)
    names = [ws.name for ws in svc.catalog.list_workspaces(request_tenant(request))]
    if len(names) == 1:
        return str(names[0])
    if not names:
        raise NotFound("no workspaces yet: compile one first")
    raise BadRequest(
        f"several workspaces have apps; pick one with ?workspace= (one of {sorted(names)})",
        parameter="workspace",
        workspaces=sorted(names),
    )


def _page(request: Request, workspace: str | None, name: str) -> HTMLResponse:
    svc = services_of(request.app.state)
    tenant = request_tenant(request)
    ws = svc.catalog.workspace(tenant, _workspace_name(request, workspace))
    rev = svc.catalog.resolve(ws, None)
    app_name = find_app_name(svc.catalog, ws, rev, name)
    app = load_app(svc.catalog, ws, rev, app_name)
    # Which controls each task reads: a control change dims only the blocks it re-runs.
    depends = _DEPENDS.get((ws.id, rev, app_name))
    if depends is None:
        found = task_dependencies(app, RevisionSource(svc.catalog, ws, rev))
        depends = {k: sorted(v) if v is not None else None for k, v in found.items()}
        _DEPENDS.put((ws.id, rev, app_name), depends)
    config: dict[str, Any] = {
        "workspace": ws.name,
        "app": app_name,
        "dataUrl": f"/api/v1/workspaces/{ws.name}/apps/{app_name}/data",
        "runsUrl": f"/api/v1/workspaces/{ws.name}/runs",
        "runUrl": "/api/v1/runs/",
        "dependsOn": depends,
    }
    return render(
        request,
        "app.html",
        title=app.title or humanize(app_name),
        section="dashboards",
        csp=DASHBOARD_CSP,
        description=app.description,
        workspace=ws.name,
        config=config,
    )


def _dashboards(request: Request) -> HTMLResponse:
    svc = services_of(request.app.state)
    groups = []
    for ws in svc.catalog.list_workspaces(request_tenant(request)):
        apps: list[dict[str, str]] = []
        if ws.current_revision_id is not None:
            listing = json.loads(svc.catalog.definitions(ws, ws.current_revision_id, "app").body)
            for d in listing["definitions"]:
                apps.append(
                    {
                        "name": d["name"],
                        "title": d.get("title") or humanize(d["name"]),
                        "path": d["path"],
                        "url": f"/workspaces/{quote(ws.name)}/apps/{quote(d['name'])}",
                    }
                )
        groups.append(
            {"workspace": ws.name, "compiled": ws.current_revision_id is not None, "apps": apps}
        )
    return render(
        request, "dashboards.html", title="Dashboards", section="dashboards", groups=groups
    )


@router.get("/dashboards", response_class=HTMLResponse)
async def dashboards(request: Request) -> HTMLResponse:
    """Every app of every workspace of the tenant."""
    return await run_in_threadpool(_dashboards, request)


@router.get("/apps/{name:path}", response_class=HTMLResponse)
async def app_page(request: Request, name: str, workspace: str | None = None) -> HTMLResponse:
    """Other query parameters are control values; the page script reads them."""
    return await run_in_threadpool(_page, request, workspace, name)


@router.get("/workspaces/{workspace}/apps/{name:path}", response_class=HTMLResponse)
async def workspace_app_page(request: Request, workspace: str, name: str) -> HTMLResponse:
    return await run_in_threadpool(_page, request, workspace, name)
