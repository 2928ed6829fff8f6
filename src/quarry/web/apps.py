"""App pages: an HTML shell whose script fetches the app's data and renders it.

The chosen control values live in the page's query string (``/apps/sales?region=North``),
so a view is shared by its address; the script sends them to the data endpoint, and
to the runs API when nothing is stored for them yet.

The page itself reads the catalog only (the app's title, and that it exists); its
script asks ``/api/v1/workspaces/{ws}/apps/{name}/data`` for the stored result,
starts an app run when none is stored yet, follows the run's events and fetches the
data again. The script, styles and vendored Vega libraries are package files served
under ``/static`` (no CDN).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool
from starlette.staticfiles import StaticFiles

from quarry.core.errors import BadRequest, NotFound
from quarry.runtime.apps.load import find_app_name, load_app
from quarry.runtime.apps.result import humanize

router = APIRouter(include_in_schema=False)

# The page runs only its own files: no inline script or handler, no other origin.
# Vega compiles chart expressions with ``Function`` (hence 'unsafe-eval') and sets
# inline styles on the SVG it draws.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self' 'unsafe-eval'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)

STATIC_DIR = Path(__file__).parent / "static"
_TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)


def mount_static(app: FastAPI) -> None:
    """Serve ``quarry/web/static`` (page script, styles, vendored Vega) at ``/static``."""
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")


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
    svc = request.app.state.services
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


def _page(request: Request, workspace: str | None, name: str) -> str:
    svc = request.app.state.services
    tenant = request_tenant(request)
    ws = svc.catalog.workspace(tenant, _workspace_name(request, workspace))
    rev = svc.catalog.resolve(ws, None)
    app_name = find_app_name(svc.catalog, ws, rev, name)
    app = load_app(svc.catalog, ws, rev, app_name)
    config: dict[str, Any] = {
        "workspace": ws.name,
        "app": app_name,
        "dataUrl": f"/api/v1/workspaces/{ws.name}/apps/{app_name}/data",
        "runsUrl": f"/api/v1/workspaces/{ws.name}/runs",
        "runUrl": "/api/v1/runs/",
    }
    return _TEMPLATES.get_template("app.html").render(
        title=app.title or humanize(app_name),
        description=app.description,
        workspace=ws.name,
        config=config,
    )


def _html(body: str) -> HTMLResponse:
    return HTMLResponse(body, headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY})


@router.get("/apps/{name:path}", response_class=HTMLResponse)
async def app_page(request: Request, name: str, workspace: str | None = None) -> HTMLResponse:
    """Other query parameters are control values; the page script reads them."""
    return _html(await run_in_threadpool(_page, request, workspace, name))


@router.get("/workspaces/{workspace}/apps/{name:path}", response_class=HTMLResponse)
async def workspace_app_page(request: Request, workspace: str, name: str) -> HTMLResponse:
    return _html(await run_in_threadpool(_page, request, workspace, name))
