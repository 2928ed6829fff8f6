"""Schedules and monitors: next and last fire, the last run's state, and pause,
resume and trigger as form posts (editor role, CSRF-checked by the middleware).

Pausing is operator state in the database (``quarry.scheduling.admin``), never an
edit of the definition files, so any replica serves these pages and actions.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from quarry.core.errors import BadRequest, NotFound
from quarry.runtime.services import services_of
from quarry.scheduling import admin
from quarry.store import runs as runq
from quarry.web.apps import request_tenant
from quarry.web.layout import notice, render

router = APIRouter(include_in_schema=False)
ACTIONS = ("pause", "resume", "trigger")
HISTORY = 50


def _page(request: Request) -> HTMLResponse:
    svc = services_of(request.app.state)
    tenant = request_tenant(request)
    groups: list[dict[str, Any]] = []
    for ws in svc.catalog.list_workspaces(tenant):
        items = []
        with svc.engine.connect() as conn:
            for view in admin.list_schedules(conn, tenant, ws.id):
                last_state = None
                if view.last_run_id:
                    try:
                        last_state = runq.get_run(conn, tenant, view.last_run_id).state
                    except NotFound:
                        last_state = None
                items.append({"view": view, "last_state": last_state})
            alerts = admin.list_alerts(conn, tenant, ws.id)
        groups.append({"workspace": ws.name, "rows": items, "alerts": alerts})
    return render(
        request,
        "schedules.html",
        title="Schedules",
        section="schedules",
        groups=groups,
        notice=notice(request),
    )


@router.get("/schedules", response_class=HTMLResponse)
async def schedules_page(request: Request) -> HTMLResponse:
    return await run_in_threadpool(_page, request)


def _history(request: Request, workspace: str, name: str, kind: str) -> HTMLResponse:
    svc = services_of(request.app.state)
    tenant = request_tenant(request)
    ws = svc.catalog.workspace(tenant, workspace)
    with svc.engine.connect() as conn:
        view = admin.get_schedule(conn, tenant, ws.id, name, kind)
        fires = admin.list_fires(conn, tenant, ws.id, name, kind=kind, limit=HISTORY)
        alerts: list[dict[str, Any]] = []
        if kind == "monitor":
            try:
                alerts = admin.alert_history(conn, tenant, ws.id, name, limit=HISTORY)
            except NotFound:
                alerts = []  # never checked yet
    return render(
        request,
        "schedule.html",
        title=f"{name} · Schedules",
        section="schedules",
        workspace=ws.name,
        s=view,
        fires=fires,
        alerts=alerts,
    )


@router.get("/schedules/{workspace}/history", response_class=HTMLResponse)
async def schedule_history(
    request: Request, workspace: str, name: str = "", kind: str = "schedule"
) -> HTMLResponse:
    """One schedule's or monitor's fire log (and a monitor's alert history)."""
    if kind not in ("schedule", "monitor"):
        raise BadRequest("kind must be schedule or monitor", parameter="kind")
    return await run_in_threadpool(_history, request, workspace, name, kind)


@router.post("/schedules/{workspace}/{action}")
async def schedule_action(request: Request, workspace: str, action: str) -> Response:
    """``name`` and ``kind`` come from the form (names contain slashes)."""
    if action not in ACTIONS:
        raise NotFound(f"no schedule action {action!r}; one of {list(ACTIONS)}")
    raw = await request.body()
    form = {k: v[0] for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}
    name, kind = form.get("name", ""), form.get("kind", "schedule")
    if not name:
        raise BadRequest("which schedule? the form names none", parameter="name")
    if kind not in ("schedule", "monitor"):
        raise BadRequest("kind must be schedule or monitor", parameter="kind")
    svc = services_of(request.app.state)
    tenant = request_tenant(request)

    def act() -> dict[str, str]:
        ws = svc.catalog.workspace(tenant, workspace)
        if action == "trigger":
            fire = admin.trigger(svc, tenant, ws.id, name, kind=kind)
            run = str(fire.run_id or "")[:8]
            return {"done": "triggered", "name": name, "run": run, "outcome": fire.outcome}
        admin.set_paused(svc.engine, tenant, ws.id, name, action == "pause", kind=kind)
        return {"done": "paused" if action == "pause" else "resumed", "name": name}

    done = await run_in_threadpool(act)
    return RedirectResponse(f"/schedules?{urlencode(done)}", status_code=303)
