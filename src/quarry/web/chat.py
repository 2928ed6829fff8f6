"""Chat: talk to an agent of a workspace — the threads list, a streaming answer, tool
calls with their SQL and results, tables and charts inline, cancel and retry.

The page is a shell: it names the tenant's compiled workspaces and their agents, and
its script (``static/chat.js``) does the rest through the threads API
(``/api/v1/workspaces/{ws}/agents/{agent}/threads``, ``.../threads/{id}/...``, see
docs/agents.md). The answer streams over server-sent events (``EventSource``); the
session cookie authenticates it like any page request, and writes carry the page's
CSRF token. So the page adds no path of its own to threads: the same tenant and
owner checks, ceilings and one-turn-at-a-time rule as the API.

The chart libraries (Vega) load only when a reply holds a chart; the page's
Content-Security-Policy is the dashboard's (Vega sets inline styles on its SVG).
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from quarry.runtime.services import services_of
from quarry.web.apps import request_tenant
from quarry.web.assets import asset_url
from quarry.web.layout import DASHBOARD_CSP, render

router = APIRouter(include_in_schema=False)

VEGA = ("vega.min.js", "vega-interpreter.min.js", "vega-lite.min.js", "vega-embed.min.js")


def _agents(request: Request) -> list[dict[str, Any]]:
    """Each compiled workspace of the tenant with the agents of its current revision."""
    svc = services_of(request.app.state)
    found: list[dict[str, Any]] = []
    for ws in svc.catalog.list_workspaces(request_tenant(request)):
        if ws.current_revision_id is None:
            continue
        listing = json.loads(svc.catalog.definitions(ws, ws.current_revision_id, "agent").body)
        names = sorted(d["name"] for d in listing["definitions"])
        if names:
            found.append({"workspace": ws.name, "agents": names})
    return found


def _page(request: Request) -> HTMLResponse:
    groups = _agents(request)
    q = request.query_params
    config = {
        "groups": groups,
        # what the address names (the script checks it against the groups)
        "workspace": q.get("workspace", ""),
        "agent": q.get("agent", ""),
        "thread": q.get("thread", ""),
        "vega": [asset_url(f"vendor/{name}") for name in VEGA],
    }
    return render(
        request,
        "chat.html",
        title="Chat",
        section="chat",
        csp=DASHBOARD_CSP,
        groups=groups,
        config=config,
    )


@router.get("/chat", response_class=HTMLResponse)
async def chat_page(request: Request) -> HTMLResponse:
    """``?workspace=&agent=&thread=`` open a thread (the address of a conversation)."""
    return await run_in_threadpool(_page, request)
