"""The semantic explorer: pick a topic, measures, dimensions, a time grain and a
filter; see the SQL and the rows. The page script (``static/explore.js``) reads the
catalog and asks the semantic query API (``/api/v1/workspaces/{ws}/semantic/...``),
so the page adds no query path of its own: the same compile, row filters and cache.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from quarry.runtime.services import services_of
from quarry.web.apps import request_tenant
from quarry.web.layout import render

router = APIRouter(include_in_schema=False)


def _page(request: Request) -> HTMLResponse:
    svc = services_of(request.app.state)
    names = [
        ws.name
        for ws in svc.catalog.list_workspaces(request_tenant(request))
        if ws.current_revision_id is not None
    ]
    return render(request, "explore.html", title="Explore", section="explore", workspaces=names)


@router.get("/explore", response_class=HTMLResponse)
async def explore_page(request: Request) -> HTMLResponse:
    return await run_in_threadpool(_page, request)
